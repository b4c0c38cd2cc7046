"""R batchtools tests/testthat/test_sweepRegistry.R, ported (2 of 2 blocks)."""

import os

import pandas as pd

import batchtools as bt
from batchtools.core.persistence.files import write_pickle

from .helper import check_tables, differs, make_test_experiment_registry, make_test_registry, submit_and_wait


@differs("Interactive appends the output of one session's jobs to one log")
def test_sweepRegistry():
    """R: test_that("sweepRegistry")"""
    reg = make_test_registry()
    bt.batch_map(lambda x: x, [1], reg=reg)
    submit_and_wait(reg, [1], resources={"foo": 1})
    submit_and_wait(reg, [1], resources={"foo": 2})
    write_pickle(reg.file_dir / "jobs" / "test.pkl", bt.make_job_collection([1], reg=reg))

    assert len(reg.tables["resources"]) == 2
    # R: one log per submission (2); Interactive appends a session's submissions to one log
    assert len(os.listdir(reg.file_dir / "logs")) == 1
    assert [p for p in os.listdir(reg.file_dir / "jobs") if p.endswith(".pkl")] == ["test.pkl"]

    assert bt.sweep_registry(reg=reg)

    assert len(reg.tables["resources"]) == 1
    assert len(os.listdir(reg.file_dir / "logs")) == 1
    assert os.listdir(reg.file_dir / "jobs") == []
    check_tables(reg)

    reg = make_test_experiment_registry()
    bt.add_problem(reg=reg, name="p1", data=pd.DataFrame({"a": range(150)}), fun=lambda job, data, **kw: len(data))
    bt.add_algorithm(reg=reg, name="a1", fun=lambda job, data, instance, **kw: None)
    bt.add_experiments(prob_designs={"p1": pd.DataFrame({"i": range(1, 11)})}, reg=reg)
    bt.add_job_tags(range(6, 11), "foo", reg=reg)
    assert len(reg.tables["tags"]) == 5 and reg.tables["tags"].notna().all().all()
    bt.remove_experiments(ids=range(6, 11), reg=reg)
    assert len(reg.tables["tags"]) == 0
    check_tables(reg)


def test_relative_paths_work_113(tmp_path, monkeypatch):
    """R: test_that("relative paths work (#113)")"""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    fd = "~/batchtools-test-113"
    reg = make_test_experiment_registry(file_dir=fd)
    assert reg.file_dir == tmp_path / "home" / "batchtools-test-113"
    assert not (tmp_path / "~").exists()

    pdes = {}
    for p in ("a", "b"):
        bt.add_problem(name=p, data=p, fun=lambda **kw: kw, reg=reg)
        pdes[p] = pd.DataFrame({"fold": [1, 2, 3]})

    def algo_rep(job, data, instance, x):
        return [f"{data} {x}"] * instance["fold"]

    bt.add_algorithm(name="rep1", fun=algo_rep, reg=reg)
    bt.add_algorithm(name="rep2", fun=algo_rep, reg=reg)
    ades = {"rep1": pd.DataFrame({"x": ["A", "B", "C"]}), "rep2": pd.DataFrame({"x": ["a", "b", "c"]})}
    bt.add_experiments(pdes, ades, reg=reg)
    submit_and_wait(reg)

    ids_rep1 = bt.find_experiments(algo_name="rep1", reg=reg)
    ids_rep2 = bt.find_experiments(algo_name="rep2", reg=reg)
    bt.remove_experiments(ids_rep2, reg=reg)

    assert len(bt.get_log(int(ids_rep1["job_id"][0]), reg=reg)) >= 1
    assert len(bt.reduce_results_list(ids=ids_rep1, reg=reg)) == 18
    check_tables(reg)
