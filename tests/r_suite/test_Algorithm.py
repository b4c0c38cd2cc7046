"""R batchtools tests/testthat/test_Algorithm.R, ported (2 of 2 blocks)."""

import pandas as pd

import batchtools as bt

from .helper import check_tables, make_test_experiment_registry


def test_addAlgorithm():
    """R: test_that("addAlgorithm")"""
    reg = make_test_experiment_registry()
    algo = bt.add_algorithm(reg=reg, name="a1", fun=lambda job, data, instance, **kw: None)
    assert isinstance(algo, bt.Algorithm)
    assert algo.name == "a1"
    assert callable(algo.fun)
    assert reg.layout.algorithm(algo.name).is_file()

    iris = pd.DataFrame({"x": range(150)})
    bt.add_problem(reg=reg, name="p1", data=iris, fun=lambda job, data: len(data))
    bt.add_algorithm(reg=reg, name="a2", fun=lambda *args, **kw: None)
    ids = bt.add_experiments({"p1": pd.DataFrame()}, algo_designs={"a1": pd.DataFrame(), "a2": pd.DataFrame()},
                             repls=2, reg=reg)
    assert len(ids) == 4

    bt.remove_algorithms(reg=reg, name="a1")
    assert len(reg.status) == 2
    assert set(reg.algorithms) == {"a2"}
    assert not reg.layout.algorithm("a1").exists()
    assert reg.layout.algorithm("a2").exists()
    assert set(bt.get_job_pars(reg=reg)["algorithm"]) == {"a2"}
    check_tables(reg)


def test_addAlgorithm_overwrites_old_algo():
    """R: test_that("addAlgorithm overwrites old algo")"""
    reg = make_test_experiment_registry()
    iris = pd.DataFrame({"x": range(150)})
    bt.add_problem(reg=reg, name="p1", data=iris, fun=lambda job, data: 2)
    bt.add_algorithm(reg=reg, name="a1", fun=lambda job, data, instance, **kw: instance * 2)
    bt.add_experiments({"p1": pd.DataFrame()}, {"a1": pd.DataFrame()}, reg=reg)

    def run(id):
        return bt.exec_job(bt.make_job(id, reg=reg), reg=reg)

    assert run(1) == 4
    bt.add_problem(reg=reg, name="p1", data=iris, fun=lambda job, data: 4)
    assert run(1) == 8
    bt.add_algorithm(reg=reg, name="a1", fun=lambda job, data, instance, **kw: instance * 8)
    assert run(1) == 32
