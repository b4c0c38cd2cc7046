"""The study on a capped cluster (issue 25, scheduling): start-up kept out of job run times, the
pool under a cap on jobs per user, submit_jobs saying why it waits, the timeline across sessions,
the command line's hints, and the whole study (4 data sets x 3 learners x 3 folds) on the pool
under an emulated cap of 3 (Slurm's own refusal), on the fake scheduler and on the real Slurm."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pandas as pd
import pytest

import batchtools as bt
from conftest import wait_until

sklearn = pytest.importorskip("sklearn")
from sklearn.dummy import DummyClassifier  # noqa: E402

LOAD_SECONDS = 1.0  # what loading a task takes in these tests (start-up, never a job's run time)


def slow_iris():
    """A task whose loading takes LOAD_SECONDS on the node (as reading a big data set does)."""
    import time

    from sklearn.datasets import load_iris

    time.sleep(1.0)
    return load_iris(return_X_y=True)


class Sleepy(DummyClassifier):
    """A learner whose fit takes 0.3 s."""

    def fit(self, X, y, sample_weight=None):
        time.sleep(0.3)
        return super().fit(X, y, sample_weight)


def study_registry(path, cf):
    reg = bt.make_experiment_registry(file_dir=path, seed=1, conf_file=None)
    reg.cluster_functions = cf
    design = bt.benchmark_grid({"iris": slow_iris}, {"featureless": DummyClassifier(), "slow": Sleepy()}, 3)
    bt.batchmark(design, scoring=["accuracy"])
    return reg


# ------------------------------------------------------------------------------------ start-up
@pytest.mark.parametrize("how", ["chunk", "pool"])
def test_first_job_run_time_excludes_the_start_up(tmp_path, monkeypatch, how):
    """One chunk and one pool worker, each in a fresh interpreter, run a task that takes 1 s to
    load: the first job's run time holds none of it (nor the imports), its time_startup does,
    and estimate_runtimes does not call the featureless learner slow."""
    monkeypatch.setenv("BATCHTOOLS_WARM", "0")  # a fresh interpreter per collection, as on a cluster
    study_registry(tmp_path / "r", bt.make_cluster_functions_multicore(2))
    if how == "chunk":
        bt.submit_jobs(bt.find_jobs().assign(chunk=1))
    else:
        bt.submit_workers(1)
    assert bt.wait_for_jobs(timeout=120), bt.get_error_messages().to_string()
    st = bt.get_job_table().sort_values("started")
    first = st.iloc[0]
    assert first["time_startup"].total_seconds() >= LOAD_SECONDS
    assert first["time_running"].total_seconds() < LOAD_SECONDS
    assert (st["time_startup"].iloc[1:].dt.total_seconds() < LOAD_SECONDS).all()  # loaded once per process
    featureless = st["algorithm"] == "featureless"
    assert (st.loc[featureless, "time_running"].dt.total_seconds() < 0.3).all()
    assert (st.loc[~featureless, "time_running"].dt.total_seconds() >= 0.3).all()
    est = bt.estimate_runtimes(bt.unwrap(bt.get_job_pars()))
    slowest = est.merge(st[["job_id", "algorithm"]]).sort_values("runtime")["algorithm"].iloc[-1]
    assert slowest == "slow"
    if how == "pool":
        w = bt.get_workers()
        assert w["time_startup"][0].total_seconds() >= LOAD_SECONDS
        for col in ("claimed", "done", "error"):
            assert w[col].dtype == np.int64
        assert w[["claimed", "done", "error"]].values.tolist() == [[6, 6, 0]]


def test_get_workers_counts_are_integers_while_workers_run(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(lambda s: time.sleep(s), s=[0.0, 3.0])
    bt.submit_workers(1)
    wait_until(lambda: len(bt.find_done()) == 1, what="the first job to finish")
    w = bt.get_workers()
    assert w["state"].tolist() == ["running"]
    assert w[["claimed", "done", "error"]].values.tolist() == [[2, 1, 0]]
    assert all(w[c].dtype == np.int64 for c in ("claimed", "done", "error"))
    assert bt.wait_for_jobs(timeout=60)


def test_rows_of_an_older_node_without_start_up_are_read(tmp_path):
    """An update file written by a node from before start-up was reported (11 fields) still counts."""
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)

    def submit(r, jc):  # an older node: it ran the job and wrote a row without the startup field
        now = time.time()
        row = [jc.jobs[0]["job_id"], now - 1.0, now, None, float("nan"), None, float("nan"), 12.0, 0.5, 0.0, now]
        r.layout.update(jc.job_hash, "old-0").write_bytes(pickle.dumps([row]))
        return bt.make_submit_job_result(0, "old-1")

    reg.cluster_functions = bt.make_cluster_functions("OldNode", submit, list_jobs_running=lambda r: [])
    bt.batch_map(lambda x: x, x=[1])
    bt.submit_jobs()
    got = bt.get_job_status()
    assert got["time_running"][0].total_seconds() == pytest.approx(1.0)
    assert got["max_rss"][0] == 12.0 and pd.isna(got["time_startup"][0])
