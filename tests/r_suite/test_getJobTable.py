"""R batchtools tests/testthat/test_getJobTable.R, ported (5 of 5 blocks)."""

import numpy as np
import pandas as pd
import pytest

import batchtools as bt

from .helper import check_tables, differs, make_test_experiment_registry, make_test_registry, s_chunk, submit_and_wait

# R's getJobTable columns (with our names); ours has more, see the migration guide's differences
R_COLUMNS = ["job_id", "submitted", "started", "done", "error", "mem_used", "batch_id", "log_file", "job_hash",
             "job_name", "time_queued", "time_running", "resources", "tags"]


def check_times(tab):
    for c in ("submitted", "started", "done"):
        assert isinstance(tab[c].dtype, pd.DatetimeTZDtype), c  # R: POSIXct
    for c in ("time_queued", "time_running"):
        assert pd.api.types.is_timedelta64_dtype(tab[c]), c  # R: difftime
        assert (tab[c].dropna() >= pd.Timedelta(0)).all()


@differs("`get_job_table` has more columns")
def test_getJobTable_Registry():
    """R: test_that("getJobTable.Registry")"""
    reg = make_test_registry()
    ids = bt.batch_map(lambda i, j: i + j, i=[1, 2, 3, 4], j=[1.0] * 4, reg=reg)

    tab = bt.get_job_table(reg=reg)
    assert len(tab) == 4 and set(R_COLUMNS + ["job_pars"]) <= set(tab.columns)
    assert tab["job_pars"][0] == {"i": 1, "j": 1.0}

    tab = bt.unwrap(tab)
    assert len(tab) == 4 and "job_pars" not in tab.columns
    assert tab["i"].tolist() == [1, 2, 3, 4]
    assert tab["j"].tolist() == [1.0] * 4
    check_times(tab)
    assert tab["tags"].isna().all()

    tab = bt.unwrap(bt.get_job_table(reg=reg), sep=".")
    assert "job_pars" not in tab.columns
    assert tab["job_pars.i"].tolist() == [1, 2, 3, 4]
    assert tab["job_pars.j"].tolist() == [1.0] * 4

    # be sure that the original tables are untouched
    check_tables(reg)

    submit_and_wait(reg, s_chunk(ids), resources={"my_walltime": 42})
    bt.add_job_tags([2, 3], "my_tag", reg=reg)

    tab = bt.get_job_table(reg=reg)
    assert tab["job_id"].tolist() == [1, 2, 3, 4]
    assert tab is not reg.status
    check_times(tab)
    assert tab["tags"].notna().sum() >= 1

    tab = bt.get_job_resources(reg=reg)
    assert tab.shape == (4, 2)
    assert all(r["my_walltime"] == 42 for r in tab["resources"])

    tab = bt.unwrap(bt.get_job_resources(reg=reg))
    assert "resources" not in tab.columns
    assert tab["my_walltime"].tolist() == [42] * 4


def test_getJobPars():
    """R: test_that("getJobPars")"""
    reg = make_test_registry()
    bt.batch_map(lambda i, j: i + j, i=[1, 2, 3, 4], j=[1.0] * 4, reg=reg)
    tab = bt.get_job_pars(reg=reg)
    assert tab.shape == (4, 2)
    tab = bt.unwrap(tab)
    assert "job_pars" not in tab.columns
    assert tab["i"].tolist() == [1, 2, 3, 4]
    assert tab["j"].tolist() == [1.0] * 4
    tab = bt.unwrap(bt.get_job_pars(reg=reg, ids=[1, 2]))
    assert tab.shape == (2, 3)
    tab = bt.unwrap(bt.get_job_pars(reg=reg), sep=".")
    assert tab.shape == (4, 3)
    assert tab["job_pars.i"].tolist() == [1, 2, 3, 4]
    assert tab["job_pars.j"].tolist() == [1.0] * 4


def test_getJobPars_with_repls():
    """R: test_that("getJobPars with repls")"""
    reg = make_test_experiment_registry()
    bt.add_problem("prob", data=pd.DataFrame({"a": range(150)}), fun=lambda data, job: len(data), reg=reg)
    bt.add_algorithm("algo", fun=lambda job, data, instance, i, **kw: instance, reg=reg)
    ids = bt.add_experiments({"prob": pd.DataFrame()}, {"algo": pd.DataFrame({"i": [1, 2]})}, repls=3, reg=reg)
    assert bt.wait_for_jobs(reg=reg, sleep=1)
    ids["chunk"] = bt.chunk(ids["job_id"], chunk_size=2)
    submit_and_wait(reg, ids)
    assert len(bt.get_job_pars(reg=reg)) == len(ids)


@differs("`add_experiments` refuses a design parameter", "`get_job_table` has more columns",
         "`get_job_pars` of an experiment registry has a `repl` column")
def test_getJobTable_ExperimentRegistry():
    """R: test_that("getJobTable.ExperimentRegistry")"""
    reg = make_test_experiment_registry()
    iris = pd.DataFrame({"a": range(150)})
    bt.add_problem(reg=reg, name="p1", data=iris, fun=lambda job, data: len(data), seed=42)
    bt.add_algorithm(reg=reg, name="a1", fun=lambda job, data, instance, sq: instance**sq)
    designs = ({"p1": pd.DataFrame({"k": [1]})}, {"a1": pd.DataFrame({"sq": [1, 2, 3]})})
    # R adds the design and fails when a job runs (p1's function does not take k); here it is refused
    with pytest.raises(ValueError, match="does not accept \\['k'\\]"):
        bt.add_experiments(*designs, reg=reg)
    bt.add_problem(reg=reg, name="p1", data=iris, fun=lambda job, data, **kw: len(data), seed=42)
    bt.add_experiments(*designs, reg=reg)

    tab = bt.get_job_table(reg=reg)
    assert len(tab) == 3 and set(R_COLUMNS + ["problem", "prob_pars", "algorithm", "algo_pars", "repl"]) <= set(
        tab.columns)
    assert tab is not reg.status
    assert "job_pars" not in tab.columns
    for i in range(3):
        assert tab["prob_pars"][i] == {"k": 1}
        assert tab["algo_pars"][i] == {"sq": i + 1}
    assert tab["problem"][0] == "p1"
    assert tab["algorithm"][0] == "a1"

    tab = bt.unwrap(bt.get_job_table(ids=[1, 2, 3], reg=reg), ["prob_pars", "algo_pars"])
    assert len(tab) == 3 and "job_pars" not in tab.columns
    assert set(tab["k"]) == {1}
    assert set(tab["sq"]) == {1, 2, 3}

    tab = bt.unwrap(bt.get_job_pars(reg=reg), sep=".")
    assert "job_pars" not in tab.columns
    assert set(tab["prob_pars.k"]) == {1}
    assert set(tab["algo_pars.sq"]) == {1, 2, 3}


@differs("`get_job_pars` of an experiment registry has a `repl` column")
def test_experiment_registry_with_vector_parameters():
    """R: test_that("experiment registry with vector parameters")"""
    tmp = make_test_experiment_registry()
    bt.add_problem("rnorm", fun=lambda job, data, n, mean, sd, **kw: job.rng.normal(mean, sd, int(np.sum(n))),
                   reg=tmp)
    bt.add_algorithm("deviation", fun=lambda instance, **kw: float(np.std(instance, ddof=1)), reg=tmp)
    # R: data.table(expand.grid(n = list(100, 1:4), mean = 0, sd = 1:2))
    design = pd.DataFrame({"n": pd.Series([100, [1, 2, 3, 4], 100, [1, 2, 3, 4]], dtype=object),
                           "mean": [0] * 4, "sd": [1, 1, 2, 2]})
    bt.add_experiments({"rnorm": design}, {"deviation": pd.DataFrame()}, reg=tmp)
    submit_and_wait(tmp)

    res = bt.get_job_pars(reg=tmp)
    assert list(res.columns) == ["job_id", "problem", "prob_pars", "algorithm", "algo_pars", "repl"]  # R: no repl
    assert len(res["prob_pars"]) == 4
    res = bt.unwrap(res)
    assert res.shape == (4, 7) and res.columns.is_unique  # R: 6 columns (no repl)
    assert res["n"].tolist() == [100, [1, 2, 3, 4], 100, [1, 2, 3, 4]]
    assert res["mean"].notna().all() and res["sd"].notna().all()

    res = bt.unwrap(res)
    assert res.shape == (4, 10) and res.columns.is_unique  # R: 9 columns
    assert res["n.1"].tolist() == [100, 1, 100, 1]
    assert res["n.4"].isna().tolist() == [True, False, True, False]
