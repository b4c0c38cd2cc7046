"""R batchtools tests/testthat/test_getStatus.R, ported (1 of 1 block)."""

import batchtools as bt

from .helper import make_test_registry, submit_and_wait


def test_getStatus():
    """R: test_that("getStatus")"""
    def fun(i):
        if i == 4:
            raise ValueError("4!")
        return i

    reg = make_test_registry()
    bt.batch_map(fun, i=list(range(1, 11)), reg=reg)
    submit_and_wait(reg, [1, 2, 3, 4, 5])

    stat = bt.get_status(reg=reg)
    counts = {"defined": 10, "submitted": 5, "started": 5, "done": 4, "error": 1, "queued": 0, "running": 0,
              "system": 0, "expired": 0}
    for name, value in counts.items():
        assert getattr(stat, name) == value, name
        assert isinstance(getattr(stat, name), int)
    assert "Status for 10 jobs" in str(stat)
