"""The load-balanced worker pool (submit_workers): claims, heartbeats, order, timeline."""

import collections
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import batchtools as bt
from batchtools.core.workerpool.claims import ClaimLog, Fenced
from conftest import running_jobs, snapshot, wait_until


def counted(x, log_dir, sleep=0.0):
    """A job that records each completed execution in a shared append-only file."""
    import os
    import time

    if sleep:
        time.sleep(sleep)
    with open(os.path.join(log_dir, "runs.txt"), "a") as fh:
        fh.write(f"{x} {os.getpid()}\n")
    return x * x


def executions(tmp_path) -> collections.Counter:
    path = tmp_path / "runs.txt"
    lines = path.read_text().split("\n") if path.exists() else []
    return collections.Counter(int(line.split()[0]) for line in lines if line)


@pytest.fixture
def preg(tmp_path):
    def make(ncpus=2, name="preg"):
        r = bt.make_registry(file_dir=tmp_path / name, seed=1, conf_file=None)
        r.cluster_functions = bt.make_cluster_functions_multicore(ncpus)
        return r
    return make


# ------------------------------------------------------------------ claim log
def test_claim_log_hands_out_each_job_once_and_fences(tmp_path):
    log = ClaimLog(tmp_path)
    log.enqueue("qa", 5)
    log.enqueue("qb", 2)
    got = [log.claim("w1", lambda r: 2), log.claim("w2", lambda r: 10), log.claim("w1", lambda r: 1)]
    assert [(c.queue, c.start, c.count) for c in got] == [("qa", 0, 2), ("qa", 2, 3), ("qb", 0, 1)]
    other = ClaimLog(tmp_path)  # a second reader replays the same log
    other.refresh()
    assert [(c.queue, c.start, c.count, c.worker) for c in other.take_claims()] == [
        ("qa", 0, 2, "w1"), ("qa", 2, 3, "w2"), ("qb", 0, 1, "w1")]
    other.fence(["w2"])
    with pytest.raises(Fenced):
        log.claim("w2", lambda r: 1)
    assert log.claim("w1", lambda r: 1).start == 1
    assert log.claim("w1", lambda r: 1) is None


def test_claim_log_cuts_off_a_torn_line(tmp_path):
    log = ClaimLog(tmp_path)
    log.enqueue("q", 3)
    with open(tmp_path / "claims.log", "a") as fh:  # a writer killed in the middle of its line
        fh.write("C q 0 3 wde")
    assert log.claim("w1", lambda r: 1).start == 0
    fresh = ClaimLog(tmp_path)
    fresh.refresh()
    assert fresh.queues["q"].cursor == 1
    assert (tmp_path / "claims.log").read_text().splitlines() == ["Q q 3", "C q 0 1 w1"]


# --------------------------------------------------------------------- basics
def test_pool_runs_jobs_like_normal_jobs(reg):
    bt.batch_map(lambda x, job: (x, job.seed, float(job.rng.random())), x=[1, 2, 3])
    out = bt.submit_workers(1)
    assert out["job_id"].tolist() == [1, 2, 3] and out["order"].tolist() == [1, 2, 3]
    res = bt.reduce_results_list()
    ref = bt.make_registry(file_dir=None, seed=1, conf_file=None, make_default=False)
    ref.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(lambda x, job: (x, job.seed, float(job.rng.random())), x=[1, 2, 3], reg=ref)
    bt.submit_jobs(reg=ref)
    assert res == bt.reduce_results_list(reg=ref)  # same seeds, same results as ordinary jobs
    st = bt.get_status(reg=reg)
    assert st.done == 3 and st.expired == 0
    workers = bt.get_workers(reg=reg)
    assert workers["state"].tolist() == ["exited"] and workers["done"].tolist() == [3]
    table = bt.get_job_table(reg=reg)
    assert set(table["batch_id"]) == set(workers["batch_id"])  # batch_id records the worker
    assert "Setting seed to 3" in "\n".join(bt.get_log(2, reg=reg))
    bt.sweep_registry(reg=reg)  # the worker's log is every pooled job's log: it stays
    assert "Setting seed to 3" in "\n".join(bt.get_log(2, reg=reg))


def test_pool_claims_in_the_given_order(reg):
    bt.batch_map(lambda x: x, x=range(1, 7))
    bt.submit_workers(1, ids=[4, 6, 1, 5, 3, 2])
    started = bt.get_job_table()[["job_id", "started"]].sort_values("started")
    assert started["job_id"].tolist() == [4, 6, 1, 5, 3, 2]


def test_pool_errors_and_resources(reg):
    def f(x):
        import os

        if x == 2:
            raise ValueError("two is bad")
        return os.environ.get("OMP_NUM_THREADS")

    bt.batch_map(f, x=[1, 2, 3])
    bt.submit_workers(1, resources={"omp_threads": 3})
    assert bt.find_errors()["job_id"].tolist() == [2]
    assert bt.get_error_messages()["message"].tolist() == ["ValueError: two is bad"]
    assert bt.load_result(1) == "3" and bt.load_result(3) == "3"


# ------------------------------------------------------------- exactly once
def test_eight_workers_run_5000_jobs_exactly_once(preg, tmp_path):
    reg = preg(ncpus=8)
    bt.batch_map(counted, x=range(5000), more_args={"log_dir": str(tmp_path)})
    bt.submit_workers(8, max_claim=1, idle_timeout=0.5)  # one lock per job: the hardest case
    assert bt.wait_for_jobs(timeout=300)
    runs = executions(tmp_path)
    assert len(runs) == 5000 and set(runs.values()) == {1}
    assert sorted(bt.reduce_results_list()) == sorted(x * x for x in range(5000))
    table = bt.get_job_table()
    assert table["batch_id"].nunique() >= 2  # the work was shared
    claims = ClaimLog(reg.layout.dir("pool"))
    claims.refresh()
    assert sum(c.count for c in claims.take_claims()) == 5000


def test_adaptive_claims_take_cheap_jobs_in_bulk(preg, tmp_path):
    preg(ncpus=2)
    bt.batch_map(counted, x=range(2000), more_args={"log_dir": str(tmp_path)})
    bt.submit_workers(2, idle_timeout=0.2)
    assert bt.wait_for_jobs(timeout=120)
    assert set(executions(tmp_path).values()) == {1} and len(executions(tmp_path)) == 2000
    claims = ClaimLog(bt.get_default_registry().layout.dir("pool"))
    claims.refresh()
    n_claims = len(claims.take_claims())
    assert n_claims < 500, f"{n_claims} claims for 2000 trivial jobs"


# ------------------------------------------------------------------- failures
def test_sigkilled_worker_leaves_its_job_expired(preg, tmp_path):
    preg(ncpus=2)
    bt.batch_map(counted, x=range(12), more_args={"log_dir": str(tmp_path), "sleep": 0.4})
    bt.submit_workers(2, idle_timeout=0.5)
    running = running_jobs()
    victim_job = running[0]
    victim = bt.get_job_table(victim_job)["batch_id"].iloc[0]
    os.kill(int(victim), signal.SIGKILL)
    assert bt.wait_for_jobs(timeout=60) is False
    expired = bt.find_expired()["job_id"].tolist()
    assert expired == [victim_job]
    assert len(bt.find_done()) == 11
    wait_until(lambda: set(bt.get_workers()["state"]) == {"exited", "gone"}, what="the survivor to leave")
    bt.submit_workers(1, ids=expired, idle_timeout=0)
    assert bt.wait_for_jobs(timeout=60)
    runs = executions(tmp_path)
    assert sorted(runs) == list(range(12)) and set(runs.values()) == {1}  # each completed once


def test_worker_that_stops_beating_is_fenced(preg, tmp_path):
    preg(ncpus=2)
    bt.batch_map(counted, x=range(8), more_args={"log_dir": str(tmp_path), "sleep": 0.3})
    bt.submit_workers(2, heartbeat=0.2, idle_timeout=0)
    stalled_job = running_jobs()[0]
    stalled = bt.get_job_table(stalled_job)["batch_id"].iloc[0]
    os.kill(int(stalled), signal.SIGSTOP)  # a hung node: still "running" for the scheduler, no heartbeats
    try:
        assert bt.wait_for_jobs(timeout=60) is False  # the other worker does the rest
        assert bt.find_expired()["job_id"].tolist() == [stalled_job]
        wait_until(lambda: set(bt.get_workers()["state"]) == {"stale", "exited"}, what="the other worker to leave")
        assert bt.get_workers().set_index("batch_id")["state"][stalled] == "stale"
        bt.submit_workers(1, ids=[stalled_job], idle_timeout=0)
        assert bt.wait_for_jobs(timeout=60)
    finally:
        os.kill(int(stalled), signal.SIGCONT)
    # woken up, the fenced worker finishes the job it was in (not merged: that job was resubmitted)
    # but claims nothing more
    workers_dir = bt.get_default_registry().layout.dir("pool") / "workers"
    wait_until(lambda: len(list(workers_dir.glob("*.exit"))) == 3, what="all workers to end")
    runs = executions(tmp_path)
    assert sorted(runs) == list(range(8))
    assert all(n == 1 for x, n in runs.items() if x != stalled_job - 1)
    wid = bt.get_workers().set_index("batch_id")["worker_id"][stalled]
    assert "declared dead by the master" in bt.get_default_registry().layout.log(wid).read_text()
    assert len(bt.find_done()) == 8
    assert bt.get_job_table(stalled_job)["batch_id"].iloc[0] != stalled


# ------------------------------------------------------------- adding, killing
def test_idle_workers_pick_up_jobs_added_later(tmp_path):
    reg = bt.make_experiment_registry(file_dir=tmp_path / "ereg", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.add_problem("p", data=3)
    bt.add_algorithm("a", fun=lambda data, job, instance, k: (data * k, job.repl))
    first = bt.add_experiments(algo_designs={"a": pd.DataFrame({"k": [1, 2]})}, repls=2)
    bt.submit_workers(2, idle_timeout=20)
    assert bt.wait_for_jobs(ids=first, timeout=60)
    workers = set(bt.get_workers()["batch_id"])
    more = bt.add_experiments(algo_designs={"a": pd.DataFrame({"k": [1, 2]})}, repls=4)  # repls 3 and 4
    assert len(more) == 4
    bt.submit_workers(0, ids=more)
    assert bt.wait_for_jobs(timeout=60)
    assert set(bt.get_job_table(more)["batch_id"]) <= workers  # no new worker was needed
    assert len(bt.get_workers()) == 2
    assert sorted(bt.reduce_results_list(more)) == [(3, 3), (3, 4), (6, 3), (6, 4)]
    bt.kill_jobs()  # nothing on the system: returns an empty frame


def test_kill_jobs_cancels_waiting_jobs_and_stops_running_ones(preg, tmp_path):
    preg(ncpus=1)
    bt.batch_map(counted, x=range(8), more_args={"log_dir": str(tmp_path), "sleep": 0.5})
    bt.submit_workers(1, idle_timeout=0)
    running_jobs()
    out = bt.kill_jobs(kill_timeout=30)
    assert out["killed"].all() and len(out) == 8 - len(bt.find_done())
    assert len(bt.find_on_system()) == 0
    assert bt.find_not_submitted()["job_id"].tolist() == out["job_id"].tolist()
    time.sleep(1.0)
    assert len(executions(tmp_path)) <= 2  # the cancelled jobs never started
    bt.submit_workers(1, idle_timeout=0)
    assert bt.wait_for_jobs(timeout=60)
    assert len(bt.find_done()) == 8


# ---------------------------------------------------------------- bad input
def test_submit_workers_rejects_bad_input(reg):
    bt.batch_map(lambda x: x, x=[1, 2, 3])
    before = snapshot(reg.file_dir)
    for kwargs, exc, text in [
        ({"n_workers": -1}, ValueError, "n_workers"),
        ({"n_workers": True}, ValueError, "n_workers"),
        ({"n_workers": 1.5}, ValueError, "n_workers"),
        ({"n_workers": 1, "heartbeat": 0}, ValueError, "heartbeat"),
        ({"n_workers": 1, "max_claim": 0}, ValueError, "max_claim"),
        ({"n_workers": 1, "idle_timeout": -1}, ValueError, "idle_timeout"),
        ({"n_workers": 1, "ids": [1, 1]}, ValueError, "duplicate"),
        ({"n_workers": 1, "ids": [7]}, ValueError, "7"),
        ({"n_workers": 0}, ValueError, "none is"),
        ({"n_workers": 1, "resources": {"ncpus": "many"}}, (TypeError, ValueError), "ncpus"),
    ]:
        with pytest.raises(exc, match=text):
            bt.submit_workers(**kwargs)
    assert snapshot(reg.file_dir) == before
    ro = bt.load_registry(reg.file_dir, make_default=False)
    with pytest.raises(PermissionError):
        bt.submit_workers(1, reg=ro)


# ------------------------------------------------------------------ timeline
def test_plot_timeline_and_cli(preg, tmp_path):
    pytest.importorskip("matplotlib")
    reg = preg(ncpus=2)
    bt.batch_map(counted, x=range(10), more_args={"log_dir": str(tmp_path), "sleep": 0.05})
    bt.submit_workers(2, idle_timeout=0)
    assert bt.wait_for_jobs(timeout=60)
    wait_until(lambda: set(bt.get_workers()["state"]) == {"exited"}, what="the workers to leave")
    fig = bt.plot_timeline()
    ax = fig.axes[0]
    assert ax.get_xlabel() == "seconds from the first start"
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert 1 <= len(rows) <= 2 and all(r.startswith("worker ") for r in rows)
    bars = sum(len(c.get_paths()) for c in ax.collections if c.get_gid().startswith("jobs"))
    assert bars == 10
    out = tmp_path / "t.png"
    proc = subprocess.run([sys.executable, "-m", "batchtools.cli", "timeline", str(reg.file_dir), "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:4] == b"\x89PNG"
    proc = subprocess.run([sys.executable, "-m", "batchtools.cli", "workers", str(reg.file_dir)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "exited" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "batchtools.cli", "status", str(reg.file_dir)],
                          capture_output=True, text=True)
    assert "Done    : 10" in proc.stdout


def test_timeline_rows_are_processes_for_ordinary_jobs(mreg):
    pytest.importorskip("matplotlib")
    bt.batch_map(lambda x: x, x=range(6))
    ids = bt.find_jobs()
    ids["chunk"] = bt.chunk(ids["job_id"], n_chunks=2)
    bt.submit_jobs(ids)
    assert bt.wait_for_jobs()
    ax = bt.plot_timeline(rows="batch").axes[0]
    assert len(ax.get_yticklabels()) == 2  # one row per scheduler job (here: per process)
    assert np.isfinite(ax.get_xlim()).all()
    slots = [t.get_text() for t in bt.plot_timeline().axes[0].get_yticklabels()]
    assert slots in (["slot 1"], ["slot 1", "slot 2"])  # packed: never more rows than ran at once
