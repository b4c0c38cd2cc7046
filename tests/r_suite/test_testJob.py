"""R batchtools tests/testthat/test_testJob.R, ported (3 of 3 blocks)."""

import pandas as pd
import pytest

import batchtools as bt

from .helper import assert_ids, make_test_experiment_registry, make_test_registry, none


def test_testJob():
    """R: test_that("testJob")"""
    def f(x):
        if x % 2 == 0:
            raise ValueError("foo")
        return x**2

    reg = make_test_registry()
    bt.batch_map(f, [1, 2, 3], reg=reg)
    assert bt.test_job(reg=reg, id=1) == 1
    assert bt.test_job(reg=reg, id=3) == 9
    with pytest.raises(ValueError, match="foo"):
        bt.test_job(reg=reg, id=2)

    assert bt.test_job(reg=reg, id=1, external=True) == 1
    with pytest.raises(RuntimeError, match="re-run"):
        bt.test_job(reg=reg, id=2, external=True)

    assert_ids(bt.find_submitted(reg=reg), none())
    assert_ids(bt.find_done(reg=reg), none())
    assert_ids(bt.find_errors(reg=reg), none())


def test_testJob_ExperimentRegistry():
    """R: test_that("testJob.ExperimentRegistry")"""
    reg = make_test_experiment_registry()
    bt.add_problem(reg=reg, name="p1", data=pd.DataFrame({"a": range(150)}), fun=lambda job, data, **kw: len(data),
                   seed=42)
    bt.add_algorithm(reg=reg, name="a1", fun=lambda job, data, instance, sq, **kw: instance**sq)
    bt.add_experiments(prob_designs={"p1": pd.DataFrame()}, algo_designs={"a1": pd.DataFrame({"sq": [1, 2, 3]})},
                       reg=reg)
    assert bt.test_job(id=1, reg=reg) == 150
    assert bt.test_job(id=2, reg=reg, external=True) == 150**2


def test_traceback_works_in_external_session(capfd):
    """R: test_that("traceback works in external session")"""
    def f(x):
        def g(x):
            return findme(x)

        def findme(x):
            return h(x)

        def h(x):
            raise RuntimeError("Error in h")

        return g(x)

    reg = make_test_registry()
    bt.batch_map(f, [1], reg=reg)
    with pytest.raises(RuntimeError, match="external=False"):
        bt.test_job(1, external=True, reg=reg)
    out = capfd.readouterr()
    assert "findme" in out.out + out.err  # the traceback, on the console (standard error here)
