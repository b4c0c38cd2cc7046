"""R batchtools tests/testthat/test_Job.R, ported (3 of 3 blocks)."""

import pickle

import pandas as pd

import batchtools as bt
from batchtools.node.runners import make_job as job_of_collection  # R's internal getJob(jc, i)

from .helper import differs, make_test_experiment_registry, make_test_registry, submit_and_wait


def test_Job():
    """R: test_that("Job")"""
    reg = make_test_registry()

    def fun(**kw):
        return kw

    bt.batch_map(fun, i=[1, 2, 3], reg=reg, more_args={"x": 1})
    submit_and_wait(reg, [1], resources={"foo": "bar"})

    job = bt.make_job(reg=reg, id=1)
    assert isinstance(job, bt.Job)
    assert job.id == 1
    assert job.pars == {"i": 1, "x": 1}
    assert isinstance(job.seed, int) and job.seed >= 0
    assert isinstance(job.resources, dict)
    assert job.resources["foo"] == "bar"  # the resources of the job's submission
    assert callable(job.fun)

    jc = bt.make_job_collection(reg=reg, resources={"foo": "bar"})
    job = job_of_collection(jc, jc.jobs[0])
    assert isinstance(job, bt.Job)
    assert job.id == 1
    assert job.pars == {"i": 1, "x": 1}
    assert isinstance(job.seed, int) and job.seed >= 0
    assert job.resources["foo"] == "bar"
    assert callable(job.fun)


@differs("`job.problem` / `job.algorithm` are the names")
def test_Experiment():
    """R: test_that("Experiment")"""
    reg = make_test_experiment_registry()
    bt.add_problem(reg=reg, name="p1", fun=lambda job, data, **kw: {"data": data, **kw})
    bt.add_algorithm(reg=reg, name="a1", fun=lambda job, data, instance, **kw: len(instance))
    bt.add_experiments({"p1": pd.DataFrame({"i": [1, 2, 3]})}, {"a1": pd.DataFrame()}, reg=reg)

    for job in (bt.make_job(1, reg=reg), None):
        if job is None:  # R: jc = makeJobCollection(reg = reg); job = getJob(jc, i = 1L)
            jc = bt.make_job_collection(reg=reg)
            job = job_of_collection(jc, jc.jobs[0])
        assert isinstance(job, bt.ExperimentJob)
        assert job.id == 1
        assert job.pars == {"prob_pars": {"i": 1}, "algo_pars": {}}
        assert isinstance(job.repl, int) and job.repl >= 1
        assert isinstance(job.seed, int)
        assert isinstance(job.resources, dict)
        # R: job$problem / job$algorithm are the objects, job$prob.name / job$algo.name their names
        assert (job.problem, job.algorithm) == ("p1", "a1")
        assert (job.prob_name, job.algo_name) == ("p1", "a1")
        assert job.instance == {"data": None, "i": 1}


def test_External_directory_is_created():
    """R: test_that("External directory is created")"""
    reg = make_test_registry()

    def fun(job, **kw):
        return job.external_dir

    bt.batch_map(fun, i=[1, 2, 3], reg=reg, more_args={"x": 1})
    submit_and_wait(reg)
    for path in bt.unwrap(bt.reduce_results_dataframe([1, 2, 3], reg=reg)).iloc[:, 1]:
        assert path.is_dir()

    reg = make_test_experiment_registry()
    bt.add_problem(reg=reg, name="p1", fun=lambda job, data, **kw: {"data": data, **kw})

    def a1(job, data, instance, **kw):
        (job.external_dir / f"{job.id}.pkl").write_bytes(pickle.dumps(job.id))
        return job.external_dir

    bt.add_algorithm(reg=reg, name="a1", fun=a1)
    bt.add_experiments({"p1": pd.DataFrame({"i": [1, 2, 3]})}, {"a1": pd.DataFrame()}, reg=reg)
    submit_and_wait(reg, [1, 3])
    paths = bt.reduce_results_list([1, 2, 3], missing_val=None, reg=reg)
    ext = reg.file_dir / "external"
    assert paths[0].is_dir()
    assert (ext / "1" / "1.pkl").is_file()
    assert paths[1] is None
    assert not (ext / "2").exists()
    assert paths[2].is_dir()
    assert (ext / "3" / "3.pkl").is_file()
    assert bt.reduce_results_list([1, 2, 3], fun=lambda res, job: job.external_dir, reg=reg, missing_val=None) == paths
    bt.reset_jobs([3], reg=reg)
    assert not (ext / "3").exists()
    assert (ext / "1").is_dir()

    # directory is persistent between submits?
    bt.add_algorithm(reg=reg, name="a1", fun=lambda job, data, instance, **kw: sorted(
        p.name for p in job.external_dir.iterdir()))
    submit_and_wait(reg, [1])
    bt.sweep_registry(reg=reg)
    assert (ext / "1" / "1.pkl").is_file()
    assert bt.load_result(1, reg=reg) == ["1.pkl"]
