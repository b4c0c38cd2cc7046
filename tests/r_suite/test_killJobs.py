"""R batchtools tests/testthat/test_killJobs.R, ported (1 of 1 block).

R skips it for cluster functions that cannot kill (Interactive, its default); Multicore can.
"""

import time

import batchtools as bt

from .helper import assert_ids, make_test_registry


def test_killJobs():
    """R: test_that("killJobs")"""
    reg = make_test_registry()
    assert reg.cluster_functions.kill_job is None
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(time.sleep, [60], reg=reg)
    bt.submit_jobs([1], reg=reg)
    assert_ids(bt.find_on_system([1], reg=reg), bt.find_jobs(reg=reg))

    batch_id = reg.status["batch_id"][0]
    res = bt.kill_jobs([1], reg=reg)
    assert res["job_id"].tolist() == [1]
    assert res["batch_id"].tolist() == [batch_id]
    assert res["killed"].tolist() == [True]
