"""R batchtools tests/testthat/test_resetJobs.R, ported (2 of 2 blocks)."""

import pytest

import batchtools as bt

from .helper import make_test_registry, submit_and_wait

# R's status columns (ours has more: attempts and the evidence of how a run ended)
R_STATUS = ["job_id", "def_id", "submitted", "started", "done", "error", "mem_used", "resource_id", "batch_id",
            "log_file", "job_hash", "job_name"]


def f(x, job):
    if x == 2:
        raise ValueError(2)
    return job.external_dir


def test_resetJobs():
    """R: test_that("resetJobs")"""
    reg = make_test_registry()
    bt.batch_map(f, [1, 2, 3], reg=reg)
    before = reg.status.copy()
    submit_and_wait(reg, [1, 2, 3])
    ext = reg.file_dir / "external"

    def log_file(id):
        return reg.layout.log_named(reg.status["log_file"][id - 1])

    log3 = log_file(3)
    assert log3.is_file()
    assert not reg.status["submitted"].equals(before["submitted"])
    assert reg.store.exists(1)
    assert [(ext / str(i)).is_dir() for i in (1, 2, 3)] == [True, False, True]

    bt.reset_jobs([1], reg=reg)
    assert reg.status[R_STATUS].iloc[[0]].equals(before[R_STATUS].iloc[[0]])
    assert not reg.store.exists(1)
    assert reg.store.exists(3)
    assert log3.is_file()
    assert [(ext / str(i)).is_dir() for i in (1, 2, 3)] == [False, False, True]

    bt.reset_jobs([2, 3], reg=reg)
    assert reg.status["job_id"].is_monotonic_increasing
    assert reg.status[R_STATUS].equals(before[R_STATUS])
    assert not log3.exists()
    assert not reg.store.exists(3)
    assert [(ext / str(i)).is_dir() for i in (1, 2, 3)] == [False, False, False]


def test_functions_produce_error_after_resetting_jobs():
    """R: test_that("functions produce error after resetting jobs")"""
    reg = make_test_registry()
    bt.batch_map(f, [1, 2, 3], reg=reg)
    submit_and_wait(reg, [1, 2, 3])
    bt.reset_jobs([1], reg=reg)
    with pytest.raises(FileNotFoundError, match="no log"):  # R: "not available"
        bt.get_log(1, reg=reg)
    with pytest.raises(bt.ResultNotFoundError, match="not done"):  # R: "not terminated"
        bt.load_result(1, reg=reg)
