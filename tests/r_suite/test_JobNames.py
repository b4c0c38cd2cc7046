"""R batchtools tests/testthat/test_JobNames.R, ported (1 of 1 block)."""

import batchtools as bt

from .helper import make_test_registry


def test_setJobNames():
    """R: test_that("setJobNames")"""
    reg = make_test_registry()
    ids = bt.batch_map(lambda **kw: kw, i=[1, 2, 3], reg=reg)

    assert bt.set_job_names(ids, ["a", "b", "c"], reg=reg) is None

    x = bt.get_job_names(reg=reg)
    assert list(x.columns) == ["job_id", "job_name"] and len(x) == 3
    assert x["job_name"].tolist() == ["a", "b", "c"]
    assert reg.status["job_name"].tolist() == ["a", "b", "c"]

    both = bt.ijoin(bt.get_job_names([1, 2], reg=reg), bt.get_job_pars(reg=reg))
    assert both.shape == (2, 3) and both["job_id"].tolist() == [1, 2]

    jc = bt.make_job_collection([1], reg=reg)
    assert jc.job_name == "a"
    jc = bt.make_job_collection([1, 2, 3], reg=reg)
    assert jc.job_name == "a"
    assert jc.job_names == ["a", "b", "c"]

    assert bt.set_job_names(ids, [None] * 3, reg=reg) is None
    x = bt.get_job_names(reg=reg)
    assert x.shape == (3, 2)
    assert x["job_name"].tolist() == [None] * 3

    jc = bt.make_job_collection([1, 2, 3], reg=reg)
    assert jc.job_name == jc.job_hash
