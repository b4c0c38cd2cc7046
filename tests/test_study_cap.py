"""The study on a capped cluster (issue 25, scheduling): start-up kept out of job run times, the
pool under a cap on jobs per user, submit_jobs saying why it waits, the timeline across sessions,
the command line's hints, and the whole study (4 data sets x 3 learners x 3 folds) on the pool
under an emulated cap of 3 (Slurm's own refusal), on the fake scheduler and on the real Slurm."""

from __future__ import annotations

import json
import logging
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import batchtools as bt
from conftest import cancel_own_jobs, require_daemon, wait_until
from test_slurm import slurm_problem

sklearn = pytest.importorskip("sklearn")
from sklearn.dummy import DummyClassifier  # noqa: E402

FAKES = Path(__file__).parent / "fakes"
FAKE_COMMANDS = ["sbatch", "squeue", "scancel", "scontrol", "sacct"]
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


# ------------------------------------------------------------------------------------ the cap
def nap(s):
    import time

    time.sleep(s)
    return s


@pytest.fixture
def capped(tmp_path, monkeypatch):
    """Slurm's commands on the fake scheduler, jobs running in the background, behind an
    ``sbatch`` that refuses a 4th live job with Slurm's own words (tests/fakes/capped_sbatch.py)."""
    fakebin, capbin, state, cap = (tmp_path / d for d in ("fakebin", "capbin", "sched", "cap"))
    for d in (fakebin, capbin, state, cap):
        d.mkdir()
    for c in FAKE_COMMANDS:
        (fakebin / c).symlink_to(FAKES / "fake_scheduler.py")
    (capbin / "sbatch").symlink_to(FAKES / "capped_sbatch.py")
    monkeypatch.setenv("PATH", os.pathsep.join([str(capbin), str(fakebin), os.environ["PATH"]]))
    monkeypatch.setenv("FAKE_SCHED_DIR", str(state))
    monkeypatch.setenv("FAKE_SCHED_BACKGROUND", "1")
    monkeypatch.setenv("FAKE_CAP", "3")
    monkeypatch.setenv("FAKE_CAP_DIR", str(cap))
    regs = []

    class Capped:
        def registry(self, name="r", make=bt.make_registry, **kw):
            cf = bt.make_cluster_functions_slurm(scheduler_latency=0, fs_latency=2)
            cf.poll, cf.poll_max = 0.2, 1.0
            reg = make(file_dir=tmp_path / name, seed=1, conf_file=None, **kw)
            reg.cluster_functions = cf
            regs.append(reg)
            return reg

        def calls(self) -> list[dict]:
            path = cap / "sbatch.log"
            return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []

    yield Capped()
    for reg in regs:  # whatever a failed test left running
        cancel_own_jobs(reg)


def test_submit_workers_never_blocks_on_a_cap_and_tops_up_later(capped, caplog):
    """Two jobs of another registry hold 2 of the 3 slots: submit_workers(3) gets one worker,
    returns at once saying what the scheduler refused, and wait_for_jobs submits the others as
    the slots free up, each of them finding work; no job runs twice."""
    other = capped.registry("other")
    bt.batch_map(nap, s=[4.0, 4.0], reg=other)
    bt.submit_jobs(reg=other)
    reg = capped.registry()
    bt.batch_map(nap, s=[0.5] * 16, reg=reg)
    t0 = time.time()
    with caplog.at_level(logging.INFO, logger="batchtools"):
        bt.submit_workers(3, reg=reg)
    took = time.time() - t0
    during = [c["outcome"] for c in capped.calls()[2:]]
    assert during == ["accepted", "refused"]  # asked once more after the cap, then returned
    assert took < 4.0 and len(bt.find_done(reg=reg)) == 0  # it did not wait for a slot
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1 and "accepted 1 of 3 worker(s)" in said[0]
    assert "QOSMaxSubmitJobPerUserLimit" in said[0] and "Job violates accounting/QOS policy" in said[0]
    assert bt.wait_for_jobs(timeout=120, reg=reg) and bt.wait_for_jobs(timeout=60, reg=other)
    workers = bt.get_workers(reg=reg)
    assert len(workers) == 3 and (workers["claimed"] >= 1).all()  # topped up; every worker found work
    assert all(c["live"] < 3 for c in capped.calls() if c["outcome"] == "accepted")
    assert bt.reduce_results_list(reg=reg) == [0.5] * 16
    assert (bt.get_job_table(reg=reg)["attempt"] == 1).all()


def test_a_pool_the_scheduler_refuses_entirely_waits_queued_not_expired(capped, caplog):
    other = capped.registry("other")
    bt.batch_map(nap, s=[3.0] * 3, reg=other)
    bt.submit_jobs(reg=other)  # the cap is full
    reg = capped.registry()
    bt.batch_map(nap, s=[0.2] * 4, reg=reg)
    with caplog.at_level(logging.WARNING, logger="batchtools"):
        out = bt.submit_workers(2, reg=reg)
    assert out["job_id"].tolist() == [1, 2, 3, 4]
    assert "accepted 0 of 2 worker(s)" in caplog.text and "wait_for_jobs() and sync_registry() submit" in caplog.text
    assert len(bt.get_workers(reg=reg)) == 0
    seen = bt.load_registry(reg.file_dir, make_default=False)  # another session (batchtools status) sees
    seen.cluster_functions = reg.cluster_functions
    status = bt.get_status(reg=seen)
    assert status.queued == 4 and status.expired == 0  # waiting for workers, not lost
    assert bt.wait_for_jobs(timeout=120, reg=reg)
    assert 1 <= len(bt.get_workers(reg=reg)) <= 2 and bt.reduce_results_list(reg=reg) == [0.2] * 4


def test_a_permanent_error_while_topping_up_stops_it_and_the_jobs_expire(capped, monkeypatch, caplog):
    """Workers owed after a refusal, then sbatch fails for good (a wrong partition): the pool stops
    asking, says so, and the queued jobs no worker can take are reported expired, not waited for."""
    other = capped.registry("other")
    bt.batch_map(nap, s=[2.0] * 3, reg=other)
    bt.submit_jobs(reg=other)  # the cap is full
    reg = capped.registry()
    bt.batch_map(nap, s=[0.1] * 4, reg=reg)
    bt.submit_workers(2, reg=reg)
    assert len(bt.get_workers(reg=reg)) == 0
    monkeypatch.setenv("FAKE_SCHED_FAIL", "1:sbatch: error: invalid partition specified: gpu")
    monkeypatch.setenv("FAKE_SCHED_FAIL_TIMES", "100")
    with caplog.at_level(logging.WARNING, logger="batchtools"):
        assert bt.wait_for_jobs(timeout=60, reg=reg) is False
    assert "could not submit a new worker" in caplog.text and "invalid partition" in caplog.text
    assert bt.find_expired(reg=reg)["job_id"].tolist() == [1, 2, 3, 4]
    assert bt.wait_for_jobs(timeout=60, reg=other)


def test_a_healing_pool_of_an_older_registry_keeps_healing(tmp_path):
    """pool/state.pkl written before plans held a ``heal`` dict: it is read as a healing plan."""
    from batchtools.core.persistence.files import write_pickle
    from batchtools.core.workerpool.pool import PoolState

    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.layout.make_pool_dirs()
    heal = {"n": 2, "resources": {}, "heartbeat": 10.0, "idle_timeout": 0.0, "max_claim": None, "max_attempts": 3}
    write_pickle(reg.layout.pool_state, {"workers": {}, "queues": {}, "heal": heal})
    pool = PoolState(reg)
    assert pool.plan["heal"] and pool.plan["n"] == 2 and pool.owes_workers() and not pool.awaits_workers()


def test_a_worker_still_queued_when_nothing_is_left_is_cancelled(capped, monkeypatch):
    """The scheduler starts a second worker only late (held in its queue): once the first took
    every job, the master cancels it instead of letting it start to find nothing."""
    reg = capped.registry()
    bt.batch_map(nap, s=[0.4] * 8, reg=reg)
    bt.submit_workers(1, reg=reg)
    wait_until(lambda: len(bt.find_running(reg=reg)), what="the first worker to run a job")
    monkeypatch.setenv("FAKE_SCHED_HOLD", "1")  # the next worker waits in the scheduler's queue
    bt.submit_workers(1, reg=reg)
    assert bt.wait_for_jobs(timeout=60, reg=reg)
    workers = bt.get_workers(reg=reg).sort_values("submitted")
    assert workers["state"].tolist() == ["exited", "cancelled"] and workers["claimed"].tolist() == [8, 0]
    fake = [json.loads(x) for x in (Path(os.environ["FAKE_SCHED_DIR"]) / "calls.log").read_text().splitlines()]
    assert ["scancel", workers["batch_id"].iloc[1]] in fake


def test_no_more_workers_than_jobs_none_for_nothing_and_max_workers(tmp_path, caplog):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(nap, s=[0.3, 0.3])
    bt.submit_workers(5)
    assert bt.wait_for_jobs(timeout=60)
    assert len(bt.get_workers()) == 2  # two jobs: two workers, not five
    with caplog.at_level(logging.WARNING, logger="batchtools"):
        assert len(bt.submit_workers(3)) == 0
    assert "no job to claim" in caplog.text and "no worker was submitted" in caplog.text
    assert len(bt.get_workers()) == 2
    reg = bt.make_registry(file_dir=tmp_path / "r2", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(nap, s=[0.3] * 6)
    reg.max_concurrent_jobs = 1  # the default of max_workers: never more than one worker at once
    bt.submit_workers(3)
    assert bt.wait_for_jobs(timeout=60)
    assert len(bt.get_workers()) == 1  # the others were owed, then not needed: nothing was left
    with pytest.raises(ValueError, match="max_workers"):
        bt.submit_workers(1, max_workers=0)


def test_submit_jobs_under_a_cap_says_why_it_waits_once(capped, caplog):
    """submit_jobs retries the cap's refusals until slots free up: one warning, in Slurm's words,
    with where it stands and what to do; the jobs run once each."""
    reg = capped.registry()
    bt.batch_map(nap, s=[3.0] * 5, reg=reg)
    with caplog.at_level(logging.INFO, logger="batchtools"):
        bt.submit_jobs(sleep=0.2, reg=reg)
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    outcomes = [c["outcome"] for c in capped.calls()]
    assert outcomes.count("refused") >= 2  # it waited, asking again
    assert len(said) == 1, said
    before = outcomes.index("refused")  # 3, unless a job ended while the first ones were submitted
    assert "QOSMaxSubmitJobPerUserLimit" in said[0] and f"{before} of 5 jobs are submitted" in said[0]
    assert "submit_workers(n)" in said[0] and "max_concurrent_jobs" in said[0]
    assert "accepts jobs again" in caplog.text
    assert bt.wait_for_jobs(timeout=60, reg=reg) and bt.reduce_results_list(reg=reg) == [3.0] * 5


def test_scheduler_job_names_say_registry_and_job_chunk_or_worker(capped):
    reg = capped.registry("my study")
    bt.batch_map(nap, s=[0.1] * 6, reg=reg)
    bt.submit_jobs([1], reg=reg)
    bt.submit_jobs(bt.find_jobs(ids=[2, 3, 4], reg=reg).assign(chunk=5), reg=reg)
    assert bt.wait_for_jobs(timeout=60, reg=reg)
    bt.set_job_names([6], ["mine"], reg=reg)
    bt.submit_jobs([6], reg=reg)
    bt.submit_workers(1, ids=[5], reg=reg)
    assert bt.wait_for_jobs(timeout=60, reg=reg)
    names = sorted(line.split("=", 1)[1] for p in reg.layout.dir("jobs").glob("*.sh")
                   for line in p.read_text().splitlines() if line.startswith("#SBATCH --job-name="))
    assert names == ["mine", "my_study-1", "my_study-chunk5", "my_study-worker1"]
    long = bt.make_registry(file_dir=reg.file_dir.parent / ("x" * 80), conf_file=None, make_default=False)
    bt.batch_map(nap, s=[0.1], reg=long)
    from batchtools.backends.templates import job_name

    name = job_name(bt.make_job_collection([1], reg=long))
    assert len(name) == 64 and name.endswith("-1")


# ------------------------------------------------------------------------------------ the timeline
def ran(reg, runs):
    """Pretend jobs ran: ``runs`` maps job id -> (start, seconds, start-up seconds); odd and even
    jobs ran in two scheduler jobs (rows)."""
    st = reg.status
    for job_id, (start, seconds, startup) in runs.items():
        i = job_id - 1
        st.loc[i, ["submitted", "started", "done", "startup"]] = [start - startup - 1, start, start + seconds, startup]
        st.loc[i, "batch_id"] = f"b{job_id % 2}"
        st.loc[i, "job_hash"] = f"h{job_id % 2}"


def labels(fig):
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_timeline_cuts_idle_gaps_between_sessions_and_counts_what_it_shows(tmp_path):
    pytest.importorskip("matplotlib")
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    bt.batch_map(lambda x: x, x=range(1, 9))
    # two sessions 6 minutes apart, ~40 s of work; job 3 lasts 2 ms right before job 5 (same row)
    ran(reg, {1: (1000.0, 20.0, 2.0), 2: (1000.0, 18.0, 2.5), 3: (1020.0, 0.002, 0.0), 4: (1018.0, 2.0, 0.0),
              5: (1020.002, 5.0, 0.0), 6: (1400.0, 0.001, 2.1), 7: (1400.0, 8.0, 2.2), 8: (1400.001, 10.0, 0.0)})
    fig = bt.plot_timeline()
    ax = fig.axes[0]
    assert ax.get_xlabel() == "seconds from the first start (idle gaps cut)"
    assert ax.get_xlim()[1] < 60  # ~40 s of work and a narrow band, not 6.9 minutes
    assert "6.2 min idle cut out" in ax.get_title()
    assert [t.get_text() for t in ax.texts] == ["6.2 min idle"]
    ticks = [float(t.get_text()) for t in ax.get_xticklabels()]
    assert ticks[0] == 0 and max(ticks) >= 400  # the real time from the first start
    fig.canvas.draw()
    for c in ax.collections:  # every bar at least a pixel wide
        for p in c.get_paths():
            x = ax.transData.transform(p.vertices)[:, 0]
            assert x.max() - x.min() >= 1.0 or c.get_gid() == "startup"
    # job 3 (2 ms) is covered by job 5 starting 2 ms later, and job 6 (1 ms) by job 8: counted as unseen
    assert labels(fig) == ["done (6)", "error (0)", "start-up (4)"]
    assert "(2 too short to see)" in ax.get_title()
    kept = bt.plot_timeline(gaps="keep").axes[0]
    assert kept.get_xlim()[1] > 400 and kept.get_xlabel() == "seconds from the first start"
    with pytest.raises(ValueError, match="gaps: one of"):
        bt.plot_timeline(gaps="squeeze")


def test_timeline_draws_start_up_bars_and_the_cli_takes_ids(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import subprocess
    import sys

    monkeypatch.setenv("BATCHTOOLS_WARM", "0")
    reg = study_registry(tmp_path / "r", bt.make_cluster_functions_multicore(2))
    bt.submit_workers(1)
    assert bt.wait_for_jobs(timeout=120)
    ax = bt.plot_timeline().axes[0]
    startup = [c for c in ax.collections if c.get_gid() == "startup"]
    assert len(startup) == 1 and len(startup[0].get_paths()) >= 1
    bar = startup[0].get_paths()[0].vertices[:, 0]
    assert bar.max() - bar.min() >= LOAD_SECONDS  # the worker's start-up, before its first job
    assert labels(ax.figure)[-1].startswith("start-up (")
    out = tmp_path / "t.png"
    cli = [sys.executable, "-m", "batchtools.cli", "timeline", str(reg.file_dir), "-o", str(out)]
    proc = subprocess.run([*cli, "--ids", "1-3"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:4] == b"\x89PNG"
    proc = subprocess.run([*cli, "--ids", "99"], capture_output=True, text=True)
    assert proc.returncode == 1 and "99" in proc.stderr


# ------------------------------------------------------------------------------------ smaller things
def test_an_eta_known_to_be_wrong_is_not_shown():
    """A 150-s job runs after jobs of 0.13 s: no 'ETA 0s', and no ETA counted down to nothing."""
    import io

    from batchtools.core.presentation import progress as pg

    nan = float("nan")
    started = np.array([0.0, 0.2, 0.4, 0.6])
    ended = np.array([0.13, 0.33, 0.53, nan])
    left, running = np.isnan(ended), np.isnan(ended)
    assert pg.eta_from_runtimes(started, ended, left, running, now=0.7) == pytest.approx(0.03)
    assert pg.eta_from_runtimes(started, ended, left, running, now=150.0) is None
    out = io.StringIO()
    bar = pg.Progress(4, "Waiting", mode="lines", interval=3600, file=out)
    bar.set(3, {"running": 1, "eta": None})
    assert "ETA" not in bar.line() and "1 running" in bar.line()
    bar._detail_at -= pg.Progress.REFRESH  # details are taken at most once a second
    bar.set(3, {"running": 1, "eta": 2.0})
    assert "ETA 2s" in bar.line()
    bar._detail_at -= 10  # ten seconds later, the job still runs: the estimate ran out
    assert "ETA" not in bar.line()
    bar.close()


def test_cli_suggests_the_nearest_command_or_option_and_log_says_what_is_missing(tmp_path):
    import subprocess
    import sys

    from batchtools import cli

    reg = bt.make_registry(file_dir=tmp_path / "reg", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(lambda x: print("hello", x), x=[1])
    bt.submit_jobs()
    del reg

    def run(*args):
        return subprocess.run([sys.executable, "-m", "batchtools.cli", *map(str, args)], capture_output=True,
                              text=True, cwd=tmp_path)

    proc = run("stauts", "reg")
    assert proc.returncode == cli.USAGE and "did you mean 'status'?" in proc.stderr
    proc = run("reset", "reg", "--erors")
    assert proc.returncode == cli.USAGE and "unrecognized arguments: --erors; did you mean --errors?" in proc.stderr
    proc = run("log", "reg")
    assert proc.returncode == cli.USAGE and "which job?" in proc.stderr and "batchtools log reg JOB_ID" in proc.stderr
    proc = run("log", "reg", "one")
    assert proc.returncode == cli.USAGE and "JOB_ID must be a job id" in proc.stderr
    proc = run("log", "1")  # a job id of ./registry: the default registry is named
    assert proc.returncode == cli.FAILED and "no registry at ./registry" in proc.stderr
    proc = run("log", "reg", "1")
    assert proc.returncode == cli.OK and "hello 1" in proc.stdout


# ------------------------------------------------------------------------------------ the study
STUDY = """
\"\"\"The study of issue 25: 4 data sets x 3 learners x 3 folds on a Slurm cluster that caps jobs per
user, run on the worker pool. ``python study.py REGISTRY REPORT.json``; run it again after a fix and
it replaces the fixed learner's jobs, run it once more and it adds and submits nothing.\"\"\"
import json
import os
import sys
import time

from sklearn.datasets import load_breast_cancer, load_digits, load_iris, load_wine
from sklearn.dummy import DummyClassifier
from sklearn.tree import DecisionTreeClassifier

import batchtools as bt


def iris():
    time.sleep(1.0)  # a data set that takes a second to load on the node: start-up, no job's run time
    return load_iris(return_X_y=True)


class Slow(DummyClassifier):
    \"\"\"A learner whose fit takes 0.3 s.\"\"\"

    def fit(self, X, y, sample_weight=None):
        time.sleep(0.3)
        raise RuntimeError("a bug in Slow.fit")  # BUG
        return super().fit(X, y, sample_weight)


def design():
    return bt.benchmark_grid(
        {"iris": iris, "wine": load_wine(return_X_y=True), "cancer": load_breast_cancer(return_X_y=True),
         "digits": load_digits(return_X_y=True)},
        {"featureless": DummyClassifier(), "tree": DecisionTreeClassifier(random_state=1), "slow": Slow()}, 3)


def main(path, report):
    reg = bt.make_experiment_registry(path, seed=1, exist_ok=True)
    cf = bt.make_cluster_functions_slurm(scheduler_latency=0, fs_latency=5)
    cf.poll, cf.poll_max = 0.5, 2.0
    reg.cluster_functions = cf
    new = bt.batchmark(design(), scoring=["accuracy", "balanced_accuracy"], replace=True)
    began = time.time()
    queued = bt.submit_workers(5, resources={"walltime": 900, "memory": 1024})
    returned = time.time()
    ok = bt.wait_for_jobs(timeout=900)
    agg = bt.reduce_results_batchmark().aggregate()
    print(agg.to_string())
    bt.plot_timeline(color_by="learner").savefig(os.path.join(os.path.dirname(report), "timeline.png"))
    with open(report, "w") as fh:
        json.dump({"new": new["job_id"].tolist(), "queued": len(queued), "began": began, "returned": returned,
                   "ok": ok, "errors": bt.find_errors()["job_id"].tolist(), "aggregate": agg.to_dict("records")}, fh)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
"""
BUG = '        raise RuntimeError("a bug in Slow.fit")  # BUG\n'


def log_starts(registry: Path) -> dict[str, list[int]]:
    """The jobs each log file of ``registry`` says were started, in order."""
    return {p.name: [int(line.split("job.id=")[1].rstrip("]")) for line in p.read_text().splitlines()
                     if "### [bt]: Starting job [batchtools" in line]
            for p in (registry / "logs").glob("*.log")}


def run_study(tmp_path, env) -> list[dict]:
    """The study script run as a user runs it: with a bug in a learner, again once it is fixed, and
    once more unchanged. Per run: its report, what it printed, the jobs started in it (the
    log lines it added), the job table after it and the pool's workers it submitted (as
    get_workers showed them after it)."""
    import subprocess
    import sys

    script, registry = tmp_path / "study.py", tmp_path / "registry"
    script.write_text(STUDY)
    runs, seen = [], {}
    for k in (1, 2, 3):
        if k == 2:  # the user fixes the learner's code; batchmark(replace=True) replaces its jobs
            script.write_text(STUDY.replace(BUG, ""))
        report = tmp_path / f"run{k}.json"
        proc = subprocess.run([sys.executable, str(script), str(registry), str(report)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, proc.stderr[-3000:]
        now = log_starts(registry)
        started = [i for name, ids in now.items() for i in ids[len(seen.get(name, [])):]]
        seen = now
        reg = bt.load_registry(registry, make_default=False)
        workers = bt.get_workers(reg=reg)
        workers = workers[~workers["batch_id"].isin([b for run in runs for b in run["workers"]["batch_id"]])]
        runs.append({**json.loads(report.read_text()), "stdout": proc.stdout, "stderr": proc.stderr,
                     "started": started, "table": bt.get_job_table(reg=reg), "workers": workers})
    return runs


def check_study(tmp_path, runs, calls):
    """What the acceptance asks of the study under a cap of 3: a learner broken, fixed with
    replace=True, and the script run once more."""
    import importlib.util

    first, second, third = runs
    reg = bt.load_registry(tmp_path / "registry", make_default=False)
    slow = bt.find_experiments(learner="slow", reg=reg)["job_id"].tolist()
    assert len(slow) == 12
    # 1: 36 jobs added and queued, the slow learner's 12 fail; 2: the fix replaces those 12 (same
    # ids), the other 24 results are kept; 3: nothing added, nothing submitted, and it says so
    assert first["new"] == list(range(1, 37)) and first["queued"] == 36
    assert first["ok"] is False and first["errors"] == slow
    assert second["new"] == slow and second["queued"] == 12 and second["ok"] and second["errors"] == []
    assert ("learner 'slow' has other settings (replace=True): its 12 jobs will run again; 0 results and 12 "
            "errors discarded") in second["stderr"]
    assert third["new"] == [] and third["queued"] == 0 and third["ok"] and third["errors"] == []
    assert "no job to claim" in third["stderr"] and "no worker was submitted" in third["stderr"]
    assert not [c for c in calls if c["time"] >= third["began"]]
    # the session never blocked on the cap: submit_workers asked for workers until the first
    # refusal and returned at once (before any job could have finished), saying so
    for run in (first, second):
        during = [c["outcome"] for c in calls if run["began"] <= c["time"] <= run["returned"]]
        assert during == ["accepted"] * 3 + ["refused"], during
        assert run["returned"] - run["began"] < 10
        assert "the scheduler accepted 3 of 5 worker(s) and refused the next" in run["stderr"]
        assert "QOSMaxSubmitJobPerUserLimit" in run["stderr"]
    assert all(c["live"] < 3 for c in calls if c["outcome"] == "accepted")  # the cap held
    # no job ran twice: each run started the jobs it had to run once each, in one attempt
    assert sorted(first["started"]) == list(range(1, 37))
    assert sorted(second["started"]) == slow and third["started"] == []
    assert (third["table"]["attempt"] == 1).all()
    kept = ["job_id", "submitted", "started", "done", "batch_id", "job_hash"]
    others = ~third["table"]["job_id"].isin(slow)
    pd.testing.assert_frame_equal(third["table"].loc[others, kept], first["table"].loc[others, kept])
    pd.testing.assert_frame_equal(third["table"][kept], second["table"][kept])
    # no worker ran without work: every worker claimed jobs, but one the master cancelled while it
    # still waited in the scheduler's queue (the node's CPUs were busy) with nothing left for it
    # (on a busy Slurm one worker may have run them all)
    for run, n_jobs in ((first, 36), (second, 12), (third, 0)):
        workers = run["workers"]
        assert len(workers) == (3 if n_jobs else 0), workers
        assert ((workers["claimed"] >= 1) | (workers["state"] == "cancelled")).all(), workers
        assert workers["claimed"].sum() == n_jobs, workers
    # a job's time is the job's: each worker's first job (a task loaded in 1 s, the interpreter and
    # scikit-learn imported) holds none of its start-up, and no job holds a task's loading
    for run, ids in ((first, list(range(1, 37))), (second, slow)):
        table = run["table"][run["table"]["job_id"].isin(ids)]
        assert (table["time_running"].dt.total_seconds() < LOAD_SECONDS).all()
        for batch, jobs in table.groupby("batch_id"):
            first_job = jobs.sort_values("started").iloc[0]
            assert first_job["time_startup"].total_seconds() >= LOAD_SECONDS, (batch, first_job["job_id"])
    # the aggregate: every task x learner over 3 folds, the scores those computed here give (the
    # broken learner left out of the first run's), every scorer shown; the same when run again
    spec = importlib.util.spec_from_file_location("study_here", tmp_path / "study.py")  # the fixed script
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    here = bt.make_experiment_registry(file_dir=tmp_path / "here", seed=1, conf_file=None, make_default=False)
    here.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batchmark(study.design(), scoring=["accuracy", "balanced_accuracy"], reg=here)
    bt.submit_jobs(reg=here)
    expected = bt.reduce_results_batchmark(reg=here).aggregate()
    cols = ["task", "learner", "accuracy_mean", "accuracy_sd", "balanced_accuracy_mean", "balanced_accuracy_sd", "n"]
    for run, learners in ((first, ["featureless", "tree"]), (second, ["featureless", "tree", "slow"])):
        agg = pd.DataFrame(run["aggregate"])
        want = expected[expected["learner"].isin(learners)]
        assert len(agg) == len(want) == 4 * len(learners) and (agg["n"] == 3).all()
        pd.testing.assert_frame_equal(agg[cols].reset_index(drop=True), want[cols].reset_index(drop=True),
                                      check_dtype=False)
        for scorer in ("accuracy", "balanced_accuracy"):  # printed in full
            assert f"{scorer}_mean" in run["stdout"] and f"{scorer}_sd" in run["stdout"]
    assert third["aggregate"] == second["aggregate"]
    assert (tmp_path / "timeline.png").read_bytes()[:4] == b"\x89PNG"


def test_the_study_on_the_pool_under_a_cap_of_3_fake_scheduler(capped, tmp_path):
    """Acceptance (issue 25): the whole study on the pool under an emulated cap of 3, on the fake
    scheduler (Slurm's commands and words; jobs run in the background)."""
    runs = run_study(tmp_path, dict(os.environ, BATCHTOOLS_PROGRESS="0"))
    check_study(tmp_path, runs, capped.calls())


@pytest.mark.slurm
def test_the_study_on_the_pool_under_a_cap_of_3_real_slurm(tmp_path):
    """Acceptance (issue 25) on the real Slurm of this machine: the cap of 3 is emulated by
    tests/fakes/capped_sbatch.py in front of the real sbatch (this Slurm has no accounting
    database, so a QOS with MaxSubmitJobsPerUser cannot be set up here); it counts only the jobs
    it passed on, so other users of the Slurm change nothing."""
    require_daemon(slurm_problem(), "BATCHTOOLS_TEST_SLURM")
    capbin, cap = tmp_path / "capbin", tmp_path / "cap"
    capbin.mkdir()
    cap.mkdir()
    (capbin / "sbatch").symlink_to(FAKES / "capped_sbatch.py")
    env = dict(os.environ, BATCHTOOLS_PROGRESS="0", FAKE_CAP="3", FAKE_CAP_DIR=str(cap),
               PATH=os.pathsep.join([str(capbin), os.environ["PATH"]]))
    try:
        runs = run_study(tmp_path, env)
    finally:
        if (tmp_path / "registry").exists():
            leftover = bt.load_registry(tmp_path / "registry", make_default=False)
            leftover.cluster_functions = bt.make_cluster_functions_slurm()
            cancel_own_jobs(leftover)
    calls = [json.loads(x) for x in (cap / "sbatch.log").read_text().splitlines()]
    check_study(tmp_path, runs, calls)
