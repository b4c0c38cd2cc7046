"""R batchtools tests/testthat/test_waitForJobs.R, ported (3 of 3 blocks)."""

import logging
import time

import batchtools as bt

from .helper import differs, make_test_registry


def test_waitForJobs():
    """R: test_that("waitForJobs")"""
    def fun(x):
        if x == 2:
            raise ValueError(x)
        return x

    reg = make_test_registry()
    ids = bt.batch_map(fun, [1, 2], reg=reg)
    bt.submit_jobs(ids, reg=reg)
    assert bt.wait_for_jobs(ids=ids[:1], reg=reg, sleep=1) is True
    assert bt.wait_for_jobs(ids=ids, stop_on_error=True, sleep=1, expire_after=3, reg=reg) is False


@differs("Warnings (e.g. \"cannot wait for unsubmitted jobs\", expired jobs, timeouts) go to the")
def test_waitForJobs_detection_of_expired_jobs(caplog):
    """R: test_that("waitForJobs: detection of expired jobs")"""
    reg = make_test_registry()
    # R skips it for cluster functions that cannot kill (Interactive, its default); Multicore can
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    ids = bt.batch_map(time.sleep, [20, 20], reg=reg)
    ids["chunk"] = 1
    bt.submit_jobs(ids, reg=reg)
    batch_ids = reg.status["batch_id"].tolist()
    reg.cluster_functions.kill_job(reg, batch_ids[0])
    with caplog.at_level(logging.WARNING, logger="batchtools"):
        assert bt.wait_for_jobs(ids, reg=reg, sleep=1, stop_on_expire=True) is False
    assert "expired" in caplog.text  # R: a warning "disappeared from the system"


@differs("Warnings (e.g. \"cannot wait for unsubmitted jobs\", expired jobs, timeouts) go to the")
def test_waitForJobs_filter_out_unsubmitted_jobs(caplog):
    """R: test_that("waitForJobs: filter out unsubmitted jobs")"""
    reg = make_test_registry()
    ids = bt.batch_map(lambda x: x, [1, 2], reg=reg)
    bt.submit_jobs(ids=[1], reg=reg)
    with caplog.at_level(logging.WARNING, logger="batchtools"):
        res = bt.wait_for_jobs(ids=ids, reg=reg, sleep=1)
    assert "unsubmitted" in caplog.text
    assert res is True
