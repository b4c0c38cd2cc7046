"""Retries, checkpoints and the self-healing pool on the real single-node Slurm
(``ci/start-slurm.sh``; its accounting is off, so reasons come from ``scontrol`` and the nodes).

These tests take minutes each (Slurm enforces a walltime on its 30-second timer, and 100 jobs of
5-25 s on two CPUs take minutes whatever runs them), so each is as short as its claim allows.
With ``BATCHTOOLS_TEST_SLURM=1`` (as CI sets it) a missing Slurm is a failure, not a skip.
"""

import logging
import os
import signal
import time

import numpy as np
import pandas as pd
import pytest

import batchtools as bt
from conftest import require_daemon, running_jobs, scheduler_registry, wait_until
from test_slurm import slurm_problem

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def slurm():
    require_daemon(slurm_problem(), "BATCHTOOLS_TEST_SLURM")


@pytest.fixture
def sreg(tmp_path, slurm):
    cf = bt.make_cluster_functions_slurm(scheduler_latency=0, fs_latency=5)
    yield from scheduler_registry(tmp_path / "slurmreg", cf)


def show(df: pd.DataFrame) -> str:
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.max_colwidth", 60):
        return str(df)


def test_a_job_past_its_walltime_is_retried_with_doubled_walltime(sreg, caplog):
    caplog.set_level(logging.INFO, logger="batchtools")
    bt.batch_map(lambda s: (__import__("time").sleep(s), s)[1], s=[95])
    t0 = time.time()
    bt.submit_jobs(resources={"walltime": 60}, retry=bt.RetryPolicy(max_attempts=3, walltime_factor=2))
    assert bt.wait_for_jobs(timeout=420)
    took = time.time() - t0
    assert bt.load_result(1) == 95
    trace = bt.get_job_attempts()
    print(f"\ntimeout retry on Slurm, {took:.0f} s:\n{show(trace)}")
    assert trace["attempt"].tolist() == [1, 2]
    assert trace["reason"].tolist() == ["timeout", None] and trace["action"][0] == "retry"
    assert [r["walltime"] for r in trace["resources"]] == [60, 120]
    assert trace["signal"][0] == signal.SIGTERM
    tab = bt.get_job_table()
    assert tab["attempt"].tolist() == [2] and tab["deaths"].tolist() == [["timeout"]]
    assert "job 1: attempt 1 ended (timeout); submitting attempt 2 with walltime 60 -> 120" in caplog.text
    # accounting is off on this Slurm: sacct says so, and scontrol still remembers the ended job
    acc = sreg.cluster_functions.account(sreg, [str(trace["batch_id"][0]), "999999"])
    assert "999999" not in acc
    if str(trace["batch_id"][0]) in acc:  # Slurm forgets ended jobs after MinJobAge (60 s)
        assert acc[str(trace["batch_id"][0])].reason == "timeout"


def work(seconds, job):
    """``seconds`` of work in steps of one second, saved after each step."""
    import os
    import time

    done = job.restored or 0
    while done < seconds:
        time.sleep(1.0)
        done += 1
        job.checkpoint(done)
    return {"work": done, "restarts": int(os.environ.get("SLURM_RESTART_COUNT", "0"))}


def test_a_job_needing_150s_finishes_under_a_60s_walltime_by_checkpoints_and_requeues(sreg):
    bt.batch_map(work, seconds=[150])
    t0 = time.time()
    bt.submit_jobs(resources={"walltime": 60})
    assert bt.wait_for_jobs(timeout=600)
    took = time.time() - t0
    result = bt.load_result(1)
    trace = bt.get_job_attempts()
    print(f"\ncheckpoints and requeues on Slurm, {took:.0f} s: {result}\n{show(trace)}")
    assert result["work"] == 150 and result["restarts"] >= 2
    tab = bt.get_job_table()
    assert bt.find_done()["job_id"].tolist() == [1] and tab["error"].isna().all()
    n = len(trace)
    assert n >= 3 and tab["attempt"].tolist() == [n]
    assert trace["reason"].tolist() == ["requeued"] * (n - 1) + [None]
    assert set(trace["batch_id"]) == {tab["batch_id"][0]}  # the same Slurm job, requeued by itself
    assert (trace["ended"][:-1].reset_index(drop=True) - trace["started"][:-1].reset_index(drop=True)
            ).max().total_seconds() < 60  # every run stopped before the limit
    assert not sreg.layout.checkpoint(1).exists()
    assert len(list(sreg.layout.dir("results").glob("*.pkl"))) == 1
    log = sreg.layout.log_named(tab["log_file"][0]).read_text()  # the runs append to one log
    assert log.count("stops here and goes on in the requeued run") == n - 1


def test_workers_with_60s_walltime_drain_100_jobs_and_heal(sreg, tmp_path):
    """100 jobs of 5-25 s, two workers of 60 s walltime, estimates for every job: no job is killed
    mid-job, drained workers are replaced, and a SIGKILLed worker's job runs again by itself."""
    rng = np.random.default_rng(16)
    durations = np.round(5 + 20 * rng.uniform(size=100) ** 3, 1)  # 5-25 s, most of them short
    marks = str(tmp_path / "runs")
    os.makedirs(marks)

    def job(d, marks):
        import os
        import time
        t0 = time.time()
        time.sleep(d)
        open(os.path.join(marks, f"{os.getpid()}-{t0:.3f}"), "w").close()
        return d

    bt.batch_map(job, d=durations.tolist(), more_args={"marks": marks})
    # estimate_runtimes' format (job_id, type, runtime), longest first
    est = pd.DataFrame({"job_id": np.arange(1, 101), "type": "estimated", "runtime": durations})
    t0 = time.time()
    bt.submit_workers(2, ids=est.sort_values("runtime", ascending=False), resources={"walltime": 60},
                      heal=True, heartbeat=5)
    # a while in, SIGKILL one worker (its pid is in its heartbeat file)
    victim_job = running_jobs(timeout=120)[0]
    time.sleep(3)
    victim = bt.get_job_table(victim_job)["batch_id"].iloc[0]
    workers = bt.get_workers().set_index("batch_id")
    beat = sreg.layout.worker_beat(workers.loc[victim, "worker_id"]).read_text().split()
    os.kill(int(beat[1]), signal.SIGKILL)
    assert bt.wait_for_jobs(timeout=1500)
    took = time.time() - t0
    tab = bt.get_job_table()
    assert bt.reduce_results_list() == durations.tolist()
    assert tab["error"].isna().all() and tab["reason"].isna().all()
    trace = bt.get_job_attempts(victim_job)
    assert trace["reason"][0] == "worker_lost" and trace["attempt"].tolist() == [1, 2]
    workers = bt.get_workers()
    print(f"\nself-healing pool on Slurm: 100 jobs ({durations.sum():.0f} s of work) in {took:.0f} s with "
          f"{len(workers)} workers of 60 s\n{show(workers[['batch_id', 'state', 'submitted', 'claimed']])}")
    assert len(workers) > 3  # drained workers and the killed one were replaced
    exits = {w: (sreg.layout.worker_exit(w).read_text() if sreg.layout.worker_exit(w).exists() else "")
             for w in workers["worker_id"]}
    assert not any("terminated" in e for e in exits.values())  # no worker reached its walltime mid-job
    assert sum("drained" in e for e in exits.values()) >= 1
    # every job ran within its worker's 60 s (a worker's heartbeat file holds its start time)
    start = {row["batch_id"]: float(sreg.layout.worker_beat(row["worker_id"]).read_text().split()[2])
             for _, row in workers.iterrows() if sreg.layout.worker_beat(row["worker_id"]).exists()}
    ends = [row["done"].timestamp() - start[row["batch_id"]] for _, row in tab.iterrows()]
    print(f"jobs ended {max(ends):.1f} s after their worker started, at the latest")
    assert max(ends) < 60
    wait_until(lambda: not bt.find_on_system()["job_id"].tolist(), 30, "the workers to leave")


def test_a_preempted_job_goes_on_from_its_checkpoint(sreg):
    """Requeued from outside while it runs (what preemption in REQUEUE mode does): the node sees
    its job pending again, reports the run as requeued, and the next run goes on from the checkpoint."""
    import subprocess

    bt.batch_map(work, seconds=[20])
    bt.submit_jobs(resources={"walltime": 300})
    running_jobs(timeout=60)
    wait_until(lambda: sreg.layout.checkpoint(1).exists(), 60, "a first checkpoint")
    time.sleep(5)
    batch = bt.get_job_table()["batch_id"][0]
    subprocess.run(["scontrol", "requeue", batch], check=True)
    assert bt.wait_for_jobs(timeout=300)
    result = bt.load_result(1)
    trace = bt.get_job_attempts()
    print(f"\npreempted (requeued from outside) on Slurm: {result}\n{show(trace)}")
    assert result == {"work": 20, "restarts": 1}
    assert trace["reason"].tolist() == ["requeued", None] and trace["signal"][0] == signal.SIGTERM
    assert set(trace["batch_id"]) == {batch}
