"""R batchtools tests/testthat/test_joins.R, ported (2 of 2 blocks)."""

import pandas as pd
import pytest

import batchtools as bt

from .helper import make_test_registry


def check(res, x, ids, ncol, any_missing=None):
    """R: expect_data_table(res, key = "job.id", ncol = ncol, ...); expect_identical(res$job.id, ids);
    expect_copied(res, x)."""
    assert res.shape[1] == ncol
    assert res["job_id"].tolist() == ids
    assert res["job_id"].is_monotonic_increasing
    assert res is not x
    if any_missing is not None:
        assert res.isna().any().any() == any_missing


def test_joins():
    """R: test_that("joins")"""
    reg = make_test_registry()
    bt.batch_map(lambda x: x, x=[1, 2, 3, 4, 5, 6], reg=reg)
    x = bt.unwrap(bt.get_job_pars(reg=reg)[:5])
    y = bt.find_jobs("x >= 2 & x <= 5", reg=reg)
    y["extra_col"] = ["a", "b", "c", "d"][: len(y)]

    check(bt.ijoin(x, y), x, [2, 3, 4, 5], 3, any_missing=False)
    res = bt.ljoin(pd.DataFrame(x), y)
    check(res, x, [1, 2, 3, 4, 5], 3)
    assert res["extra_col"].isna().any()
    check(bt.rjoin(pd.DataFrame(x), y), x, [2, 3, 4, 5], 3, any_missing=False)
    res = bt.rjoin(y, x)
    check(res, x, [1, 2, 3, 4, 5], 3)
    assert res["extra_col"].isna().any()
    res = bt.ojoin(x, y)
    check(res, x, [1, 2, 3, 4, 5], 3)
    assert res["extra_col"].isna().any()
    check(bt.sjoin(x, y), x, [2, 3, 4, 5], 2, any_missing=False)
    check(bt.sjoin(y, x), x, [2, 3, 4, 5], 2, any_missing=False)
    check(bt.ajoin(x, y), x, [1], 2, any_missing=False)
    check(bt.ijoin(x, pd.DataFrame({"job_id": [2, 3, 4]})), x, [2, 3, 4], 2, any_missing=False)
    check(bt.ijoin(pd.DataFrame({"job_id": [2, 3, 4]}), x), x, [2, 3, 4], 2, any_missing=False)
    check(bt.ajoin(pd.DataFrame(x), y), x, [1], 2, any_missing=False)

    res = bt.ujoin(x, y)
    pd.testing.assert_frame_equal(res, x)
    assert res is not x

    yy = y.copy()
    yy["x"] = [10, 11, 12, 13]
    res = bt.ujoin(x, yy)
    check(res, x, [1, 2, 3, 4, 5], x.shape[1], any_missing=False)
    assert res["x"].tolist() == [1, 10, 11, 12, 13]

    res = bt.ujoin(x, yy, all_y=True)
    check(res, x, [1, 2, 3, 4, 5], 3)
    assert res["x"].tolist() == [1, 10, 11, 12, 13]
    assert res["extra_col"].tolist()[1:] == ["a", "b", "c", "d"] and pd.isna(res["extra_col"][0])


def test_guessBy():
    """R: test_that("guessBy") (R's internal guessBy is the joins' by=None)"""
    x = pd.DataFrame({"id": [1, 2, 3], "x": [1, 2, 3]})
    y = pd.DataFrame({"jid": [1, 2, 3], "y": [3, 2, 1]})

    with pytest.raises(ValueError, match="no column in common"):  # R: "explicitly"
        bt.ijoin(x, y, by=None)
    with pytest.raises(ValueError, match="has no column"):  # R: "subset of"
        bt.ijoin(x, y, by="id")

    res = bt.ijoin(x, y, by={"id": "jid"})
    assert res.columns.tolist() == ["id", "x", "y"] and res["y"].tolist() == [3, 2, 1]

    y["id"] = y["jid"]
    res = bt.ijoin(x, y, by="id")
    assert res["id"].tolist() == [1, 2, 3]
