"""R batchtools tests/testthat/test_JobCollection.R, ported (4 of 4 blocks)."""

import os
import re

import pandas as pd

import batchtools as bt

from .helper import differs, make_test_experiment_registry, make_test_registry


def test_makeJobCollection():
    """R: test_that("makeJobCollection")"""
    reg = make_test_registry()
    bt.batch_map(lambda **kw: kw, i=[1, 2, 3], reg=reg, more_args={"x": 1})
    jc = bt.make_job_collection(bt.find_jobs(reg=reg), resources={"foo": 42}, reg=reg)
    for name in ("file_dir", "job_hash", "jobs", "log_file", "packages", "resources", "uri", "work_dir"):
        assert hasattr(jc, name), name
    assert os.path.isdir(jc.file_dir)
    assert re.fullmatch(r"job[0-9a-zA-Z]{32}", jc.job_hash)
    assert jc.job_ids == [1, 2, 3]
    assert isinstance(jc.log_file, str)
    assert all(isinstance(p, str) for p in jc.packages)
    assert jc.resources == {"foo": 42}
    assert isinstance(jc.uri, str) and jc.uri.endswith(f"jobs/{jc.job_hash}.pkl")
    assert os.path.isdir(jc.work_dir)
    assert all(isinstance(j["pars"], dict) for j in jc.jobs)
    assert jc.array_var is None or isinstance(jc.array_var, str)
    assert isinstance(jc.array_jobs, bool)
    assert "Collection" in repr(jc)


@differs("A leading `~` in a path is expanded")
def test_makeJobCollection_does_not_expand_relative_paths(tmp_path, monkeypatch):
    """R: test_that("makeJobCollection does not expand relative paths")"""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "bar").mkdir()
    reg = make_test_registry(file_dir="~/foo", work_dir="~/bar")
    bt.batch_map(lambda x: x, [1], reg=reg)
    # R keeps "~/foo" as it is (for a home folder that differs on the nodes); here it is expanded when
    # the path is taken, so every path of the collection is absolute
    jc = bt.make_job_collection([1], reg=reg)
    assert jc.file_dir == str(tmp_path / "foo")
    assert jc.uri.startswith(str(tmp_path / "foo" / "jobs") + "/")
    assert jc.log_file.startswith(str(tmp_path / "foo" / "logs"))
    assert jc.work_dir == str(tmp_path / "bar")
    assert not (tmp_path / "~").exists()


def test_makeJobCollection_ExperimentCollection():
    """R: test_that("makeJobCollection.ExperimentCollection")"""
    reg = make_test_experiment_registry()
    bt.add_problem(reg=reg, name="p1", fun=lambda job, data, **kw: {"data": data, **kw})
    bt.add_algorithm(reg=reg, name="a1", fun=lambda job, data, instance, **kw: len(instance))
    ids = bt.add_experiments({"p1": pd.DataFrame({"i": [1, 2, 3]})}, {"a1": pd.DataFrame()}, reg=reg)
    jc = bt.make_job_collection(ids, resources={"foo": 42}, reg=reg)
    assert os.path.isdir(jc.file_dir)
    assert re.fullmatch(r"job[0-9a-zA-Z]{32}", jc.job_hash)
    assert jc.job_ids == [1, 2, 3]
    assert isinstance(jc.log_file, str)
    assert jc.resources == {"foo": 42}
    assert isinstance(jc.uri, str)
    assert os.path.isdir(jc.work_dir)
    assert all(isinstance(j["prob_pars"], dict) and isinstance(j["algo_pars"], dict) for j in jc.jobs)
    assert [j["problem"] for j in jc.jobs] == ["p1"] * 3
    assert [j["algorithm"] for j in jc.jobs] == ["a1"] * 3
    assert isinstance(jc.array_jobs, bool)
    assert jc.kind == "experiment"  # R: class "ExperimentCollection"


def test_chunks_as_arrayjobs_is_stored():
    """R: test_that("chunks.as.arrayjobs is stored")"""
    reg = make_test_registry()
    ids = bt.batch_map(lambda x: x, [1, 2], reg=reg)
    jc = bt.make_job_collection(ids, resources={"chunks_as_arrayjobs": True}, reg=reg)
    assert jc.array_jobs is True
