"""R batchtools tests/testthat/test_getErrorMessages.R, ported (1 of 1 block)."""

import batchtools as bt

from .helper import make_test_registry, submit_and_wait


def test_getErrorMessages():
    """R: test_that("getErrorMessages")"""
    def fun(i):
        if i == 3:
            raise ValueError("foobar")
        return i

    reg = make_test_registry()
    ids = bt.batch_map(fun, i=[1, 2, 3, 4, 5], reg=reg)
    submit_and_wait(reg, [1, 2, 3, 4])

    tab = bt.get_error_messages(ids, reg=reg)
    assert tab.shape == (5, 4)
    assert set(tab.columns) == {"job_id", "terminated", "error", "message"}
    assert tab["job_id"].tolist() == [1, 2, 3, 4, 5]
    assert tab["terminated"].tolist() == [True] * 4 + [False]
    assert tab["error"].tolist() == [False, False, True, False, False]
    assert tab["message"].isna().tolist() == [True, True, False, True, True]
    assert "foobar" in tab["message"][2]

    tab = bt.get_error_messages(ids, missing_as_error=True, reg=reg)
    assert tab.shape == (5, 4)
    assert tab["job_id"].tolist() == [1, 2, 3, 4, 5]
    assert tab["terminated"].tolist() == [True] * 4 + [False]
    assert tab["error"].tolist() == [False, False, True, False, True]
    assert tab["message"].isna().tolist() == [True, True, False, True, False]
    assert "foobar" in tab["message"][2]
    assert "[not terminated]" in tab["message"][4]
