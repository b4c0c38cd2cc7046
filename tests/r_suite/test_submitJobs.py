"""R batchtools tests/testthat/test_submitJobs.R, ported (2 of 2 blocks)."""

import pytest

import batchtools as bt

from .helper import check_tables, make_test_registry, submit_and_wait


def test_submitJobs():
    """R: test_that("submitJobs")"""
    reg = make_test_registry()
    bt.batch_map(lambda **kw: kw, i=[1, 2, 3], reg=reg)

    submit_and_wait(reg, [1, 2], resources={"foo": "bar"})
    check_tables(reg)
    st = reg.status
    assert st["resource_id"][:2].notna().all()
    assert all(isinstance(b, str) for b in st["batch_id"][:2])
    assert st["submitted"][:2].notna().all()
    assert st["submitted"].isna()[2]
    x = reg.tables["resources"]["resources"][0]
    assert x == {**reg.default_resources, "foo": "bar"}

    submit_and_wait(reg, [3], resources={"walltime": 100, "memory": 500})
    res = reg.tables["resources"]["resources"][1]
    assert res["walltime"] == 100
    assert res["memory"] == 500

    # should be 2 chunks?
    assert reg.status["job_hash"].nunique() == 2


def test_per_job_resources():
    """R: test_that("per job resources")"""
    reg = make_test_registry()
    ids = bt.batch_map(lambda **kw: kw, i=[1, 2, 3], reg=reg)
    ids["walltime"] = [180, 120, 180]
    ids["chunk"] = [1, 2, 3]
    submit_and_wait(reg, ids=ids)

    res = reg.tables["resources"]
    assert len(res) == 2
    assert res["resource_hash"].nunique() == 2
    assert {r["walltime"] for r in res["resources"]} == {120, 180}

    ids["chunk"] = 1
    with pytest.raises(ValueError, match="per-job"):
        bt.submit_jobs(ids, reg=reg)
