"""R batchtools tests/testthat/test_Problem.R, ported (2 of 2 blocks)."""

import random

import pandas as pd

import batchtools as bt

from .helper import check_tables, make_test_experiment_registry, submit_and_wait

IRIS = pd.DataFrame({"x": range(150)})


def cache_dir(reg, name):
    """R: ``getProblemCacheDir(reg, name)``."""
    return reg.layout.problem_cache(name)


def test_addProblem_removeProblem():
    """R: test_that("addProblem / removeProblem")"""
    reg = make_test_experiment_registry()
    prob = bt.add_problem(reg=reg, name="p1", data=IRIS, fun=lambda job, data, **kw: len(data))
    assert isinstance(prob, bt.Problem)
    assert prob.data.equals(IRIS)
    assert prob.name == "p1"
    assert callable(prob.fun)
    assert prob.seed is None
    assert reg.layout.problem(prob.name).is_file()
    assert prob.cache is False
    assert not cache_dir(reg, "p1").exists()

    prob = bt.add_problem(reg=reg, name="p2", fun=lambda **kw: None, seed=42, cache=True)
    assert isinstance(prob, bt.Problem)
    assert prob.data is None
    assert prob.name == "p2"
    assert callable(prob.fun)
    assert prob.seed == 42
    assert reg.layout.problem(prob.name).is_file()
    assert prob.cache is True
    assert cache_dir(reg, "p2").is_dir()

    bt.add_algorithm(reg=reg, name="a1", fun=lambda job, data, instance, **kw: None)
    ids = bt.add_experiments({"p1": pd.DataFrame(), "p2": pd.DataFrame()}, {"a1": pd.DataFrame()}, repls=2,
                             reg=reg)
    assert len(ids) == 4

    bt.remove_problems(reg=reg, name="p1")
    assert cache_dir(reg, "p2").is_dir()
    assert len(reg.status) == 2
    assert reg.problems == ["p2"]
    assert not reg.layout.problem("p1").exists()
    assert reg.layout.problem("p2").exists()
    assert set(bt.get_job_pars(reg=reg)["problem"]) == {"p2"}
    check_tables(reg)

    bt.remove_problems(reg=reg, name="p2")
    assert not cache_dir(reg, "p2").exists()


def test_instance_caching():
    """R: test_that("instance caching")"""
    reg = make_test_experiment_registry()
    prob = bt.add_problem(reg=reg, name="p1", data=IRIS, fun=lambda job, data, param: param * 10 + random.random(),
                          seed=1, cache=True)
    bt.add_algorithm(reg=reg, name="a1", fun=lambda job, data, instance, **kw: {"result": instance})
    bt.add_algorithm(reg=reg, name="a2", fun=lambda job, data, instance, **kw: {"result": instance})
    bt.add_experiments(prob_designs={"p1": pd.DataFrame({"param": [1, 2]})}, repls=2, reg=reg)

    j = bt.make_job(1, reg=reg)
    foo = j.instance  # noqa: F841 (R: foo = j$instance)
    # R: getProblemCacheURI(j); each definition of a problem caches under its own version
    assert reg.layout.instance_cache("p1", j.prob_pars, j.repl, prob.version).is_file()

    submit_and_wait(reg)
    tab = bt.unwrap(bt.ljoin(bt.get_job_table(reg=reg)[["job_id", "repl", "problem", "prob_pars", "algorithm"]],
                             bt.reduce_results_dataframe(reg=reg)))
    v = tab.groupby(["param", "problem", "repl"])["result"].var()
    assert v.tolist() == [0, 0, 0, 0]
