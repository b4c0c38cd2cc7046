"""R batchtools tests/testthat/test_ClusterFunctionsSocket.R, ported (1 of 1 block)."""

import time

import batchtools as bt

from .helper import assert_ids, make_test_registry, none


def test_cf_socket():
    """R: test_that("cf socket")"""
    reg = make_test_registry()
    reg.cluster_functions = bt.make_cluster_functions_socket(2)
    try:
        bt.batch_map(time.sleep, [5, 5], reg=reg)
        bt.submit_jobs([1, 2], reg=reg)
        assert_ids(bt.find_on_system(reg=reg), bt.find_jobs(reg=reg))
        assert bt.wait_for_jobs(sleep=0.5, reg=reg)
        assert_ids(bt.find_on_system(reg=reg), none())
        assert_ids(bt.find_done(reg=reg), bt.find_jobs(reg=reg))
    finally:
        reg.cluster_functions.close()
