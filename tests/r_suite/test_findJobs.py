"""R batchtools tests/testthat/test_findJobs.R, ported (5 of 5 blocks)."""

import time

import pandas as pd
import pytest

import batchtools as bt

from .helper import (
    assert_ids,
    differs,
    make_test_experiment_registry,
    make_test_registry,
    none,
    s_chunk,
    submit_and_wait,
)

FINDERS = ("find_jobs", "find_submitted", "find_not_submitted", "find_started", "find_not_started", "find_done",
           "find_not_done", "find_errors", "find_on_system", "find_running", "find_queued", "find_expired")


def fun(i):
    if i == 3:
        raise ValueError(i)
    return i


def test_find_Status():
    """R: test_that("find[Status]")"""
    reg = make_test_registry()
    for name in FINDERS:
        assert_ids(getattr(bt, name)(reg=reg), none())

    bt.batch_map(fun, i=[1, 2, 3, 4, 5], reg=reg)
    all_ids = [1, 2, 3, 4, 5]
    expected = {"find_jobs": all_ids, "find_submitted": [], "find_started": [], "find_not_started": all_ids,
                "find_done": [], "find_not_done": all_ids, "find_errors": [], "find_on_system": [],
                "find_running": [], "find_queued": [], "find_expired": []}
    for name, ids in expected.items():
        assert_ids(getattr(bt, name)(reg=reg), ids)

    submit_and_wait(reg)
    expected = {"find_jobs": all_ids, "find_submitted": all_ids, "find_not_submitted": [], "find_started": all_ids,
                "find_not_started": [], "find_done": [1, 2, 4, 5], "find_not_done": [3], "find_errors": [3],
                "find_on_system": [], "find_running": [], "find_queued": [], "find_expired": []}
    for name, ids in expected.items():
        assert_ids(getattr(bt, name)(reg=reg), ids)


@differs("Unknown job ids raise `ValueError` naming them")
def test_Subsetting():
    """R: test_that("Subsetting")"""
    reg = make_test_registry()
    bt.batch_map(fun, i=[1, 2, 3, 4, 5], reg=reg)
    submit_and_wait(reg)
    assert_ids(bt.find_jobs(ids=[1, 2, 3], reg=reg), [1, 2, 3])
    assert_ids(bt.find_done(ids=[3], reg=reg), [])
    assert_ids(bt.find_errors(ids=[1, 2], reg=reg), [])
    assert_ids(bt.find_submitted([1, 2, 3, 4, 5], reg=reg), [1, 2, 3, 4, 5])
    # R: an id that does not exist gives no row; here an error naming it
    with pytest.raises(ValueError, match="6"):
        bt.find_submitted([6], reg=reg)


def test_findJobs():
    """R: test_that("findJobs")"""
    reg = make_test_registry()
    bt.batch_map(lambda i, j: i + j, i=[1, 2, 3, 4, 5], j=[2, 2, 3, 4, 4], reg=reg)
    assert_ids(bt.find_jobs("i == 1", reg=reg), [1])
    assert_ids(bt.find_jobs("i >= 3", reg=reg), [3, 4, 5])
    assert_ids(bt.find_jobs("i >= 3 & j > 3", reg=reg), [4, 5])
    xi = 2
    assert_ids(bt.find_jobs("i == @xi", reg=reg), [2])  # R: findJobs(i == xi): the caller's variable
    assert_ids(reg.find_jobs("i == @xi"), [2])
    assert_ids(bt.find_jobs(lambda p: p["i"] == xi, reg=reg), [2])


def test_findOnSystem():
    """R: test_that("findOnSystem")"""
    reg = make_test_registry()
    # R skips it for cluster functions that cannot list jobs (Interactive); Multicore can
    assert reg.cluster_functions.list_jobs_running is None
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    assert reg.cluster_functions.list_jobs_running is not None
    ids = bt.batch_map(time.sleep, [2, 2], reg=reg)
    bt.submit_jobs(s_chunk(ids), reg=reg)
    assert_ids(bt.find_on_system(reg=reg), bt.find_jobs(reg=reg))
    assert_ids(bt.find_expired(reg=reg), none())
    # ensure that the registry is not removed before jobs have finished
    assert bt.wait_for_jobs(reg=reg, sleep=1)


@differs("`find_experiments(prob_name=...)` and `algo_name` take a list of names too")
def test_findExperiments():
    """R: test_that("findExperiments")"""
    reg = make_test_experiment_registry()
    bt.add_problem(reg=reg, name="p1", fun=lambda job, data, n, **kw: sum(job.rng.random(n)) / n, seed=42)
    bt.add_problem(reg=reg, name="p2", data=pd.DataFrame({"a": range(150)}), fun=lambda job, data: len(data))
    bt.add_algorithm(reg=reg, name="a1", fun=lambda job, data, instance, sq: instance**sq)
    prob_designs = {"p1": pd.DataFrame({"n": [10, 20]}), "p2": pd.DataFrame()}
    algo_designs = {"a1": pd.DataFrame({"sq": [1, 2, 3]})}
    bt.add_experiments(prob_designs, algo_designs, repls=10, reg=reg)

    def n(**kw):
        tab = bt.find_experiments(reg=reg, **kw)
        assert list(tab.columns) == ["job_id"] and tab["job_id"].is_monotonic_increasing
        return len(tab)

    assert n() == 90
    assert n(prob_name="p1") == 60
    # R: prob.name must have length 1; here a list selects the experiments of any of the names
    assert n(prob_name=["p1", "p2"]) == 90
    assert n(prob_pattern="p.") == 90
    assert n(prob_pattern="2$") == 30
    assert n(prob_pattern="p1", algo_pattern="a1", repls=[3, 4]) == 12
    assert n(prob_pattern="^p") == 90
    assert n(prob_name="p2") == 30
    assert n(ids=range(1, 11), prob_name="p1") == 10
    assert n(algo_name="a1") == 90
    assert n(prob_name="p1", prob_pars="n == 10") == 30
    assert n(algo_pars="sq == 2") == 30
    assert n(algo_pattern="a.") == 90
    assert n(prob_name="p") == 0
    assert n(algo_name="a") == 0
    assert n(prob_name="xxx") == 0
    assert n(algo_name="xxx") == 0
    assert n(repls=[1, 2]) == 18
