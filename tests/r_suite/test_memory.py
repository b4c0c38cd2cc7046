"""R batchtools tests/testthat/test_memory.R, ported (1 of 1 block).

R runs it on an SSH ``Worker`` for localhost; here a worker of the real sshd on 127.0.0.1
(``ci/start-sshd.sh``); ``BATCHTOOLS_TEST_SSH=1`` makes a missing sshd a failure.
"""

import numpy as np
import pytest

import batchtools as bt
from conftest import require_daemon
from test_ssh import sshd_ok

from .helper import make_test_registry, submit_and_wait


@pytest.fixture(scope="module")
def sshd():
    problem = sshd_ok()
    require_daemon(problem and f"sshd is not usable: {problem}", "BATCHTOOLS_TEST_SSH")


def product(n):
    rng = np.random.default_rng(1)
    m = rng.random(n).reshape(10, -1)
    return float((m @ m.T).sum())


@pytest.mark.ssh
def test_memory_measurements_work(sshd):
    """R: test_that("memory measurements work")"""
    reg = make_test_registry()
    workers = [bt.Worker("bt-node-a")]
    reg.cluster_functions = bt.make_cluster_functions_ssh(workers)
    try:
        bt.batch_map(product, n=[100, 10**7], reg=reg)
        submit_and_wait(reg, [1, 2], resources={"measure_memory": True})
        assert any("Memory measurement enabled" in line for line in bt.get_log(1, reg=reg))
        mem = reg.status["mem_used"]
        assert mem.notna().all()
        assert mem[1] > mem[0]
    finally:
        for w in workers:
            w.close()
