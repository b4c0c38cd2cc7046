"""R batchtools tests/testthat/test_convertIds.R, ported (1 of 1 block).

R's internal ``convertIds`` is what every ``ids`` argument goes through; here it is tested
through ``find_jobs(ids)`` (sorted) and ``reduce_results_list(ids)`` / ``submit_jobs(ids)``
(order and extra columns kept).
"""

import pandas as pd
import pytest

import batchtools as bt

from .helper import assert_ids, differs, make_test_registry


@differs("Unknown job ids raise `ValueError` naming them")
def test_convertIds():
    """R: test_that("convertIds")"""
    reg = make_test_registry()
    bt.batch_map(lambda x: x, list(range(1, 11)), reg=reg)
    # R deletes job 3's row from the status table by hand; here job 3 is left out of the ids
    all_ids = [i for i in range(1, 11) if i != 3]

    assert_ids(bt.find_jobs(None, reg=reg), range(1, 11))  # NULL: all jobs
    assert_ids(bt.find_jobs(ids=all_ids, reg=reg), all_ids)
    assert_ids(bt.find_jobs(ids=bt.find_jobs(ids=all_ids, reg=reg), reg=reg), all_ids)
    assert_ids(bt.find_jobs(ids=pd.DataFrame({"job_id": [4]}), reg=reg), [4])
    assert_ids(bt.find_jobs(ids=[10, 9, 8], reg=reg), [8, 9, 10])  # sorted
    # keep.order = TRUE: the functions that keep the order of ids
    assert bt.reduce_results_list(ids=[10, 9, 8], missing_val=None, reg=reg) == [None] * 3

    ids = bt.find_jobs(ids=all_ids, reg=reg)
    ids["chunk"] = list(range(9, 0, -1))
    out = bt.submit_jobs(ids.sort_values("chunk"), reg=reg)  # keep.extra = "chunk"
    assert out.columns.tolist()[:2] == ["job_id", "chunk"] and len(out) == 9

    with pytest.raises(ValueError, match="[Dd]uplicate"):
        bt.find_jobs(ids=[2, 2], reg=reg)
    with pytest.raises(TypeError):
        bt.find_jobs(ids=["1", "2", "3"], reg=reg)
    # R ignores ids that do not exist (data.table(job.id = 3:4) gives 4 once 3 is removed); here they raise
    with pytest.raises(ValueError, match="11"):
        bt.find_jobs(ids=[4, 11], reg=reg)

    # issue #40
    ids = ids[ids["job_id"] >= 5].copy()
    ids["chunk"] = bt.chunk(ids["job_id"], chunk_size=3)
    assert not bt.find_jobs(ids=ids, reg=reg).isna().any().any()
