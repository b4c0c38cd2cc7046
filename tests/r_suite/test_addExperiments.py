"""R batchtools tests/testthat/test_addExperiments.R, ported (3 of 3 blocks)."""

import numpy as np
import pandas as pd
import pytest

import batchtools as bt

from .helper import make_test_experiment_registry, submit_and_wait

IRIS = pd.DataFrame({"a": range(150), "b": range(150)})
CARS = pd.DataFrame({"speed": range(50), "dist": range(50)})


def test_addExperiments_handles_parameters_correctly():
    """R: test_that("addExperiments handles parameters correctly")"""
    reg = make_test_experiment_registry()

    def p1(job, data, x, y, **kw):
        assert isinstance(x, (int, np.integer)) and isinstance(y, str)

    def a1(job, data, instance, a, b, **kw):
        assert isinstance(a, dict) and len(a) == 1
        assert isinstance(b, pd.DataFrame)

    bt.add_problem(reg=reg, name="p1", data=IRIS, fun=p1, seed=42)
    bt.add_algorithm(reg=reg, name="a1", fun=a1)
    prob_designs = {"p1": pd.DataFrame({"x": [1, 2], "y": ["a", "b"]})}
    algo_designs = {"a1": pd.DataFrame({"a": [{"x": 1}], "b": [IRIS]})}
    ids = bt.add_experiments(prob_designs, algo_designs, repls=2, reg=reg)
    assert len(ids) == 4 and ids["job_id"].is_monotonic_increasing
    ids = bt.add_experiments(prob_designs, algo_designs, repls=2, reg=reg)
    assert len(ids) == 0
    ids = bt.add_experiments(prob_designs, algo_designs, repls=3, reg=reg)
    assert len(ids) == 2

    submit_and_wait(reg, ids)
    assert len(bt.find_errors(reg=reg)) == 0


def test_addExperiments_creates_default_designs():
    """R: test_that("addExperiments creates default designs")"""
    reg = make_test_experiment_registry()
    bt.add_problem(reg=reg, name="p1", data=IRIS)
    bt.add_problem(reg=reg, name="p2", data=CARS)
    bt.add_algorithm(reg=reg, name="a1", fun=lambda job, data, instance: len(data))
    bt.add_algorithm(reg=reg, name="a2", fun=lambda job, data, instance: data.shape[1])
    bt.add_experiments(reg=reg)
    assert bt.find_experiments(reg=reg)["job_id"].tolist() == [1, 2, 3, 4]
    assert reg.defs["problem"].tolist() == ["p1", "p1", "p2", "p2"]
    assert reg.defs["algorithm"].tolist() == ["a1", "a2", "a1", "a2"]


def test_addExperiments_user_provided_designs():
    """R: test_that("addExperiments / user provided designs")"""
    reg = make_test_experiment_registry()
    bt.add_problem(reg=reg, name="p1", data=IRIS, fun=lambda **kw: kw)
    bt.add_problem(reg=reg, name="p2", data=CARS, fun=lambda **kw: kw)
    bt.add_algorithm(reg=reg, name="a1", fun=lambda **kw: kw)
    bt.add_algorithm(reg=reg, name="a2", fun=lambda data, **kw: data.shape[1])
    prob_designs = {"p1": pd.DataFrame({"a": 1, "b": [2, 3, 4]})}
    algo_designs = {"a1": pd.DataFrame({"c": range(3, 9)}), "a2": pd.DataFrame()}
    ids = bt.add_experiments(reg=reg, prob_designs=prob_designs, algo_designs=algo_designs, combine="bind")
    assert len(ids) == 9
    pars = bt.unwrap(bt.get_job_pars(reg=reg))
    assert set(pars["problem"]) == {"p1"}
    assert set(pars["algorithm"]) == {"a1", "a2"}
    assert pars["a"].tolist() == [1] * 9
    assert pars["b"].tolist() == [2, 3, 4] * 3
    assert pars["c"].tolist()[:6] == [3, 4, 5, 6, 7, 8] and pars["c"].isna().tolist()[6:] == [True] * 3
    with pytest.raises(ValueError, match="reserved names \\['job'\\]"):
        bt.add_experiments(reg=reg, prob_designs={"p1": pd.DataFrame({"job": [2]})})
    with pytest.raises(ValueError, match="reserved names \\['instance'\\]"):
        bt.add_experiments(reg=reg, algo_designs={"a2": pd.DataFrame({"instance": ["foo"]})})

    prob_designs = {**prob_designs, "p2": pd.DataFrame()}
    ids = bt.add_experiments(reg=reg, prob_designs=prob_designs, algo_designs=algo_designs, combine="bind")
    assert len(ids) == 7
    assert len(bt.unwrap(bt.get_job_pars(reg=reg))) == 16

    ids = bt.add_experiments(reg=reg, prob_designs=prob_designs, algo_designs=algo_designs, combine="crossprod")
    assert len(ids) == 12
    assert len(bt.unwrap(bt.get_job_pars(reg=reg))) == 28
