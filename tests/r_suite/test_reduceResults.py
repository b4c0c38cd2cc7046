"""R batchtools tests/testthat/test_reduceResults.R, ported (12 of 12 blocks).

R builds two registries at the top of the file (a map and an experiment registry) that the
blocks share; here they are module fixtures.
"""

import pandas as pd
import pytest

import batchtools as bt

from .helper import differs, make_test_experiment_registry, make_test_registry, submit_and_wait


def fun(**kw):
    return kw


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    reg = make_test_registry(file_dir=tmp_path_factory.mktemp("reduce") / "reg")
    bt.batch_map(fun, a=[1, 2, 3, 4], b=[4, 3, 2, 1], reg=reg)
    submit_and_wait(reg, [1, 2, 3])
    return reg


@pytest.fixture(scope="module")
def ereg(tmp_path_factory):
    reg = make_test_experiment_registry(file_dir=tmp_path_factory.mktemp("reduce") / "ereg")
    bt.add_problem(reg=reg, name="p1", fun=lambda job, data, **kw: 2, seed=42)
    bt.add_algorithm(reg=reg, name="a1", fun=lambda job, data, instance, sq: instance**sq)
    bt.add_experiments({"p1": pd.DataFrame()}, {"a1": pd.DataFrame({"sq": [1, 2, 3]})}, reg=reg)
    submit_and_wait(reg)
    return reg


def test_loadResult(reg):
    """R: test_that("loadResult")"""
    assert bt.load_result(reg=reg, id=1) == {"a": 1, "b": 4}
    assert bt.load_result(reg=reg, id=2) == {"a": 2, "b": 3}
    with pytest.raises(bt.ResultNotFoundError, match="not done"):  # R: "not terminated"
        bt.load_result(reg=reg, id=4)


def test_batchMapResults(reg):
    """R: test_that("batchMapResults")"""
    target = make_test_registry()
    x = bt.batch_map_results(lambda x, c, d: x["a"] + x["b"] + c + d, None, target=target, c=[11, 12, 13], reg=reg,
                             more_args={"d": 2})
    assert x["job_id"].tolist() == [1, 2, 3]
    assert len(target.status) == 3
    submit_and_wait(target)
    res = bt.unwrap(bt.reduce_results_dataframe(reg=target))
    assert res.iloc[:, 1].tolist() == [11 + 5 + 2, 12 + 5 + 2, 13 + 5 + 2]


def test_reduceResults(reg):
    """R: test_that("reduceResults")"""
    assert bt.reduce_results(fun=lambda aggr, res, **kw: aggr + [res["a"]], init=[], reg=reg) == [1, 2, 3]
    assert bt.reduce_results(ids=[1], fun=lambda a, b: {**a, **b}, reg=reg) == {"a": 1, "b": 4}
    assert bt.reduce_results(lambda a, b: {**a, **b}, [1], {"c": 1}, reg=reg)["c"] == 1
    assert bt.reduce_results(fun=lambda aggr, res, extra_arg, **kw: aggr + res["a"] + extra_arg, init=0, extra_arg=1,
                             reg=reg) == sum(i + 1 for i in (1, 2, 3))
    # job matched by name wherever it stands, as R
    assert bt.reduce_results(fun=lambda job, aggr, res: aggr + [job.id], init=[], ids=[2, 3], reg=reg) == [2, 3]
    jobs = bt.reduce_results(fun=lambda job, aggr, res: aggr + [job], init=[], ids=[2, 3], reg=reg)
    assert len(jobs) == 2 and all(isinstance(j, bt.Job) for j in jobs)

    def collect(ids):
        return bt.reduce_results(fun=lambda aggr, res, **kw: aggr + [res["a"]], ids=ids, init=[], reg=reg)

    assert collect([3, 2, 1]) == collect([1, 2, 3])[::-1]
    with pytest.raises(ValueError, match="no result"):  # R: "successfully computed"
        collect([1, 2, 3, 4])


def test_reduceResultsList(reg):
    """R: test_that("reduceResultsList")"""
    assert bt.reduce_results_list(reg=reg) == [fun(a=a, b=b) for a, b in zip([1, 2, 3], [4, 3, 2])]
    assert bt.reduce_results_list(reg=reg, fun=lambda x: x["a"]) == [1, 2, 3]
    assert bt.reduce_results_list(reg=reg, fun=lambda x, y: x["a"] + y, y=1) == [2, 3, 4]
    jobs = bt.reduce_results_list(reg=reg, fun=lambda job, *args: job)  # R: function(job, ...) job
    assert len(jobs) == 3 and all(isinstance(j, bt.Job) for j in jobs)
    assert bt.reduce_results_list(ids=[2, 1], reg=reg) == bt.reduce_results_list(ids=[1, 2], reg=reg)[::-1]


@differs("`unwrap` expands the columns that hold dicts")
def test_reduceResultsDataTable(reg):
    """R: test_that("reduceResultsDataTable")"""
    tab = bt.unwrap(bt.reduce_results_dataframe(reg=reg))
    assert tab.shape == (3, 3) and "result" not in tab.columns
    assert tab["a"].tolist() == [1, 2, 3]

    tab = bt.unwrap(bt.reduce_results_dataframe(reg=reg, fun=lambda x: {"a": x["a"]}))
    assert tab.shape == (3, 2)
    assert tab["a"].tolist() == [1, 2, 3]

    tab = bt.unwrap(bt.reduce_results_dataframe(reg=reg, ids=[3, 2], fun=lambda x: {"a": x["a"]}))
    assert tab.shape == (2, 2)
    assert tab["a"].tolist() == [2, 3]

    # R: unwrap() expands the list column of the scalar results into result.1; a column of plain
    # values is expanded when it is named
    tab = bt.reduce_results_dataframe(reg=reg, fun=lambda x: x["a"])
    assert bt.unwrap(tab).equals(tab)
    tab = bt.unwrap(tab, "result")
    assert tab.shape == (3, 2)
    assert tab["result.1"].tolist() == [1, 2, 3]

    tab = bt.unwrap(bt.reduce_results_dataframe(reg=reg, fun=lambda x, y: x["a"] + y, y=1), "result")
    assert tab.shape == (3, 2)
    assert tab["result.1"].tolist() == [2, 3, 4]


@differs("`reduce_results_dataframe` makes a column of each key of dict results")
def test_reduceResultsDataTable_unwrap_simple(reg):
    """R: test_that("reduceResultsDataTable/unwrap simple")"""
    tab = bt.reduce_results_dataframe(reg=reg)
    # R: job.id and a list column result (unwrap() expands it); here the dicts' keys are columns at once
    assert tab.columns.tolist() == ["job_id", "a", "b"]
    tab = bt.unwrap(tab)
    assert tab.shape[1] == 3
    assert tab["job_id"].tolist() == [1, 2, 3]
    assert tab["a"].tolist() == [1, 2, 3]
    assert tab["b"].tolist() == [4, 3, 2]


def test_reduceResults_BatchExperiments(ereg):
    """R: test_that("reduceResults/BatchExperiments")"""
    assert bt.reduce_results(fun=lambda aggr, res, **kw: aggr + [res], init=[], reg=ereg) == [2, 4, 8]
    assert bt.reduce_results(ids=[2, 3], fun=lambda aggr, job, res, **kw: aggr + [job.id], init=[], reg=ereg) == [2, 3]
    jobs = bt.reduce_results(fun=lambda job, aggr, res: aggr + [job], init=[], ids=[2, 3], reg=ereg)
    assert len(jobs) == 2 and all(isinstance(j, bt.ExperimentJob) for j in jobs)


def test_reduceResultsList_BatchExperiments(ereg):
    """R: test_that("reduceResultsList/BatchExperiments")"""
    assert bt.reduce_results_list(reg=ereg) == [2, 4, 8]
    assert bt.reduce_results_list(fun=lambda job, *args: job.prob_name, reg=ereg) == ["p1"] * 3
    assert bt.reduce_results_list(fun=lambda job, *args: job.algo_name, reg=ereg) == ["a1"] * 3
    assert bt.reduce_results_list(fun=lambda job, *args: job.instance, reg=ereg) == [2] * 3


def test_reduceResults_with_no_results_reg():
    """R: test_that("reduceResults with no results reg")"""
    reg = make_test_registry()

    def c(*args):
        return args

    assert bt.reduce_results(fun=c, reg=reg) is None
    assert bt.reduce_results(fun=c, reg=reg, init=42) == 42
    assert bt.reduce_results_list(reg=reg) == []

    bt.batch_map(fun, a=[1, 2, 3], b=[3, 2, 1], reg=reg)
    assert bt.reduce_results(fun=c, reg=reg) is None
    assert bt.reduce_results(fun=c, reg=reg, init=42) == 42
    assert bt.reduce_results_list(reg=reg) == []


def test_reduceResultsList_NULL():
    """R: test_that("reduceResultsList/NULL")"""
    reg = make_test_registry()
    ids = bt.batch_map(lambda *args: None, [1, 2, 3], reg=reg)
    submit_and_wait(reg, ids)
    assert bt.reduce_results_list(ids=ids, reg=reg) == [None, None, None]


@differs("`reduce_results_dataframe` makes a column of each key of dict results")
def test_reduceResultsDataTable_multiRowResults():
    """R: test_that("reduceResultsDataTable/multiRowResults")"""
    reg = make_test_registry()
    ids = bt.batch_map(lambda a: pd.DataFrame({"y1": [a] * 3, "y2": [a / 2] * 3}), a=[10, 100], reg=reg)
    submit_and_wait(reg, ids)
    res = bt.reduce_results_dataframe(reg=reg)
    # R: two rows, each with a data frame in the result column; here the frames are stacked
    assert res.shape == (6, 3)
    assert res["job_id"].tolist() == [1, 1, 1, 2, 2, 2]
    assert res["y1"].tolist() == [10] * 3 + [100] * 3


@differs("`reduce_results_dataframe` makes a column of each key of dict results")
def test_reduceResultsDataTable_unwrap_objects():
    """R: test_that("reduceResultsDataTable/unwrap objects")"""
    reg = make_test_registry()
    iris = pd.DataFrame({"a": range(150), "b": range(150)})
    bt.batch_map(lambda **kw: iris, i=[1, 2], reg=reg)
    submit_and_wait(reg, [1, 2])
    tab = bt.reduce_results_dataframe(reg=reg)
    assert tab.shape == (300, 3)
    assert tab.columns.tolist() == ["job_id", "a", "b"]
    # R's shape (one row per job with the object), for results that should stay whole: a list
    tab = pd.DataFrame({"job_id": [1, 2], "result": bt.reduce_results_list(reg=reg)})
    assert all(isinstance(r, pd.DataFrame) for r in tab["result"])
