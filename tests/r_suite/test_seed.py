"""R batchtools tests/testthat/test_seed.R, ported (2 of 3 blocks).

Skipped: "with_seed": it tests ``withr::with_seed``, R's helper that restores ``.Random.seed``
(R's global RNG state); test_job and exec_job restoring the caller's random state are tested in
tests/test_r_parity.py.
"""

import random

import pandas as pd

import batchtools as bt

from .helper import differs, make_test_experiment_registry, make_test_registry, submit_and_wait


def runif(seed):
    """R: ``set.seed(seed); runif(1)``: a job seeded with ``seed`` draws this first."""
    return random.Random(seed).random()


@differs("Same seeds do not give the same random numbers as R")
def test_Problem_and_Algorithm_seed():
    """R: test_that("Problem and Algorithm seed")"""
    reg = make_test_experiment_registry(seed=42)
    iris = pd.DataFrame({"a": range(150)})
    bt.add_problem(reg=reg, name="p1", data=iris, fun=lambda job, data, **kw: random.random(), seed=1)
    bt.add_problem(reg=reg, name="p2", data=iris, fun=lambda job, data, **kw: random.random())
    bt.add_algorithm(reg=reg, name="a1", fun=lambda job, data, instance, **kw: {"instance": instance,
                                                                                "res": random.random()})
    bt.add_algorithm(reg=reg, name="a2", fun=lambda job, data, instance, **kw: {"instance": instance,
                                                                                "res": random.random()})
    ids = bt.add_experiments({"p1": pd.DataFrame(), "p2": pd.DataFrame()}, {"a1": pd.DataFrame(),
                             "a2": pd.DataFrame()}, repls=3, reg=reg)
    submit_and_wait(reg, ids)

    # the rule R has: replication r's instance from the problem seed + r - 1, the algorithm from the
    # registry seed + job id (the numbers are Python's, not R's)
    p1, p2, p3 = runif(1), runif(2), runif(3)
    a1, a2, a3 = runif(43), runif(44), runif(45)
    ids = bt.find_experiments(algo_name="a1", prob_name="p1", reg=reg)
    results = pd.DataFrame(bt.reduce_results_list(ids, reg=reg))
    assert results["instance"].tolist() == [p1, p2, p3]
    assert results["res"].tolist() == [a1, a2, a3]

    ids = bt.find_experiments(prob_name="p1", repls=2, reg=reg)
    results = pd.DataFrame(bt.reduce_results_list(ids, reg=reg))
    assert (results["instance"] == p2).all()

    ids = bt.find_experiments(prob_name="p2", reg=reg)
    results = pd.DataFrame(bt.reduce_results_list(ids, reg=reg))
    assert results["instance"].is_unique
    assert results["res"].is_unique


def test_Seed_is_correctly_reported_203():
    """R: test_that("Seed is correctly reported (#203)")"""
    reg = make_test_registry(seed=1)
    bt.batch_map(lambda x, job: {"seed": job.seed}, x=[1, 2, 3], reg=reg)
    submit_and_wait(reg)
    res = bt.unwrap(bt.reduce_results_dataframe(reg=reg))
    assert res.shape == (3, 2)
    assert res["seed"].tolist() == [2, 3, 4]
    for i in (1, 2, 3):
        assert any(f"Setting seed to {i + 1}" in line for line in bt.get_log(i, reg=reg))

    reg = make_test_experiment_registry(seed=1)
    bt.add_problem(reg=reg, name="p1", fun=lambda job, **kw: job.seed, seed=100)
    bt.add_algorithm(reg=reg, name="a1", fun=lambda job, instance, **kw: {"instance": instance, "seed": job.seed})
    bt.add_experiments(repls=2, reg=reg)
    bt.get_status(reg=reg)
    submit_and_wait(reg)

    res = bt.unwrap(bt.reduce_results_dataframe(reg=reg))
    assert res.shape == (2, 3)
    assert res["instance"].tolist() == [2, 3]
    assert res["seed"].tolist() == [2, 3]
    assert any("seed = 2" in line for line in bt.get_log(1, reg=reg))
    assert any("seed = 3" in line for line in bt.get_log(2, reg=reg))
