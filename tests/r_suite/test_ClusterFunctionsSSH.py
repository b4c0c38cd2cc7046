"""R batchtools tests/testthat/test_ClusterFunctionsSSH.R, ported (1 of 1 block).

R runs it on a ``Worker`` for localhost; here two workers of the real sshd on 127.0.0.1
(``ci/start-sshd.sh``), as tests/test_ssh.py: ``BATCHTOOLS_TEST_SSH=1`` makes a missing sshd a failure.
"""

import time

import pytest

import batchtools as bt
from conftest import require_daemon
from test_ssh import sshd_ok

from .helper import assert_ids, make_test_registry


@pytest.fixture(scope="module")
def sshd():
    problem = sshd_ok()
    require_daemon(problem and f"sshd is not usable: {problem}", "BATCHTOOLS_TEST_SSH")


@pytest.mark.ssh
def test_cf_ssh(sshd):
    """R: test_that("cf ssh")"""
    reg = make_test_registry()
    workers = [bt.Worker("bt-node-a", ncpus=2, max_load=9999)]
    reg.cluster_functions = bt.make_cluster_functions_ssh(workers)
    try:
        bt.save_registry(reg=reg)

        def fun(x):
            time.sleep(x)
            return isinstance(x, (int, float))

        bt.batch_map(fun, x=[5, 5], reg=reg)
        bt.submit_jobs([1, 2], reg=reg)
        assert_ids(bt.find_on_system(reg=reg), bt.find_jobs(reg=reg))
        assert bt.kill_jobs([2], reg=reg)["killed"].all()
        assert bt.wait_for_jobs([1], sleep=0.5, reg=reg)
        assert_ids(bt.find_done(reg=reg), bt.find_jobs(ids=[1], reg=reg))
        assert_ids(bt.find_not_done(reg=reg), bt.find_jobs(ids=[2], reg=reg))
        assert bt.load_result(1, reg=reg) is True
    finally:
        for w in workers:
            w.close()
