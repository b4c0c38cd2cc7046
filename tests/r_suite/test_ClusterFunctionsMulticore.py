"""R batchtools tests/testthat/test_ClusterFunctionsMulticore.R, ported (1 of 1 block)."""

import time

import batchtools as bt

from .helper import assert_ids, make_test_registry, none, submit_and_wait


def test_cf_multicore():
    """R: test_that("cf multicore")"""
    reg = make_test_registry()
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(time.sleep, [2, 2], reg=reg)
    bt.submit_jobs([1, 2], reg=reg)
    assert_ids(bt.find_on_system(reg=reg), bt.find_jobs(reg=reg))
    assert bt.wait_for_jobs(sleep=0.2, expire_after=1, reg=reg)
    assert_ids(bt.find_on_system(reg=reg), none())
    assert_ids(bt.find_done(reg=reg), bt.find_jobs(reg=reg))

    # check that max_concurrent_jobs works
    reg = make_test_registry()
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    reg.max_concurrent_jobs = 1
    bt.batch_map(time.sleep, [2, 0], reg=reg)
    submit_and_wait(reg, [1, 2])
    tab = bt.get_job_status(reg=reg)
    assert (tab["started"][1] - tab["started"][0]).total_seconds() > 1
