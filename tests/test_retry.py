"""Retries by reason, checkpoints and requeues, the pool that heals itself, GPUs per job: the
parts that need no real scheduler (the real Slurm's are in test_slurm_healing.py).

Deaths by timeout come from a Multicore backend that enforces the walltime like a scheduler
(SIGTERM at the limit); the scheduler's accounting from outputs in the formats of ``sacct`` and
``qacct``.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

import batchtools as bt
from batchtools.backends.sge import parse_qacct
from batchtools.backends.slurm import parse_sacct, parse_scontrol_job
from batchtools.core.contract.protocol import new_row
from batchtools.core.jobstate.retry import decide
from batchtools.core.persistence.files import write_pickle
from batchtools.node import checkpoint
from conftest import countdown, enforcing_multicore, running_jobs, snapshot, wait_until


@pytest.fixture
def ereg(tmp_path):
    r = bt.make_registry(file_dir=tmp_path / "ereg", seed=1, conf_file=None)
    r.cluster_functions = enforcing_multicore()
    return r


def slow(seconds, job):
    import time

    time.sleep(seconds)
    return job.resources["walltime"]


def hungry(need, job):
    if job.resources["memory"] < need:
        raise MemoryError(f"needs {need} MB, has {job.resources['memory']}")
    return job.resources["memory"]


def broken(x):
    raise ValueError(f"bad {x}")


# ------------------------------------------------------------------ bad input
def test_bad_policies_and_gpus_are_refused_before_anything_is_written(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2, gpus=["0"])
    bt.batch_map(lambda x: x, x=[1, 2])
    for kwargs, err in [({"memory_factor": 0}, "memory_factor: must be a finite positive number"),
                        ({"walltime_factor": -1.5}, "walltime_factor: must be a finite positive number"),
                        ({"walltime_factor": float("inf")}, "walltime_factor"),
                        ({"max_attempts": 0}, "max_attempts: must be a positive integer"),
                        ({"max_attempts": 2.5}, "max_attempts"),
                        ({"reasons": ("timeout", "bored")}, "reasons: unknown reason"),
                        ({"max_requeues": -1}, "max_requeues")]:
        with pytest.raises(ValueError, match=err):
            bt.RetryPolicy(**kwargs)
    before = snapshot(reg.file_dir)
    with pytest.raises(TypeError, match="retry: must be a bt.RetryPolicy"):
        bt.submit_jobs(retry=3)
    with pytest.raises(TypeError, match="retry: unknown field"):
        bt.submit_jobs(resources={"retry": {"max_attempt": 3}})
    with pytest.raises(ValueError, match="memory_factor"):
        bt.submit_jobs(resources={"retry": {"memory_factor": 0}})
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="gpus must be a non-negative integer"):
            bt.submit_jobs(resources={"gpus": bad})
    with pytest.raises(ValueError, match="gpus=2, but this Multicore backend has 1 device"):
        bt.submit_jobs(resources={"gpus": 2})
    with pytest.raises(ValueError, match="gpus_per_job must be a positive integer"):
        bt.submit_workers(1, resources={"gpus": 1, "gpus_per_job": 0})
    with pytest.raises(TypeError, match="gpu_devices: must be a list"):
        bt.submit_workers(1, resources={"gpu_devices": "0,1"})
    with pytest.raises(TypeError, match="heal: must be True or False"):
        bt.submit_workers(1, heal="yes")
    with pytest.raises(ValueError, match="runtime column"):
        bt.submit_workers(1, ids=pd.DataFrame({"job_id": [1, 2], "runtime": [1.0, -2.0]}))
    assert snapshot(reg.file_dir) == before
    with pytest.raises(ValueError, match="gpus: a list of device ids"):
        bt.make_cluster_functions_multicore(2, gpus=-1)
    with pytest.raises(ValueError, match="device ids must be distinct"):
        bt.make_cluster_functions_multicore(2, gpus=["0", "0"])
    reg.cluster_functions = bt.make_cluster_functions_interactive()  # saved with the registry
    before = snapshot(reg.file_dir)
    with pytest.raises(ValueError, match="gpus is not supported by the Interactive backend"):
        bt.submit_jobs(resources={"gpus": 1})
    assert snapshot(reg.file_dir) == before
    bt.submit_jobs(resources={"gpus": 0})  # zero GPUs: nothing to hand out, fine anywhere
    assert bt.wait_for_jobs()


# ------------------------------------------------------------------ retries by reason
def test_timeout_is_retried_with_doubled_walltime(ereg):
    bt.batch_map(slow, seconds=[3.0, 0.2])
    bt.submit_jobs(resources={"walltime": 2}, retry=bt.RetryPolicy(max_attempts=3, walltime_factor=2))
    assert bt.wait_for_jobs(timeout=60)
    assert bt.reduce_results_list() == [4, 2]
    tab = bt.get_job_table()
    assert tab["attempt"].tolist() == [2, 1]
    assert tab["deaths"].tolist() == [["timeout"], []]
    assert tab["reason"].isna().all() and (tab["max_rss"] > 0).all()
    trace = bt.get_job_attempts(1)
    assert trace["attempt"].tolist() == [1, 2]
    assert trace["reason"].tolist()[0] == "timeout" and trace["action"].tolist()[0] == "retry"
    assert trace["signal"].tolist()[0] == signal.SIGTERM
    assert [r["walltime"] for r in trace["resources"]] == [2, 4]
    assert trace["batch_id"][0] != trace["batch_id"][1]
    assert "SIGTERM" in trace["error"][0]


def test_memory_is_retried_and_an_exception_is_not(ereg):
    bt.batch_map(hungry, need=[300, 50])
    policy = bt.RetryPolicy(max_attempts=3, memory_factor=2)
    bt.submit_jobs(resources={"memory": 100}, retry=policy)
    assert bt.wait_for_jobs(timeout=60)
    assert bt.reduce_results_list() == [400, 100]
    tab = bt.get_job_table()
    assert tab["deaths"].tolist() == [["memory", "memory"], []]
    assert [r["memory"] for r in bt.get_job_attempts(1)["resources"]] == [100, 200, 400]
    bt.sweep_registry()  # resource rows only earlier attempts refer to are kept
    assert [r["memory"] for r in bt.get_job_attempts(1)["resources"]] == [100, 200, 400]


def test_errors_are_not_retried_unless_asked(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(broken, x=[1, 2])
    bt.submit_jobs(1, retry=bt.RetryPolicy())
    bt.submit_jobs(2, retry=bt.RetryPolicy(max_attempts=2, reasons=("error",)))
    assert bt.wait_for_jobs(timeout=60) is False
    tab = bt.get_job_table()
    assert tab["attempt"].tolist() == [1, 2]
    assert tab["deaths"].tolist() == [["error"], ["error", "error"]]
    assert tab["error"].str.contains("ValueError: bad").all()


def test_attempts_stop_at_max_attempts(ereg):
    bt.batch_map(slow, seconds=[3.0])
    bt.submit_jobs(resources={"walltime": 1}, retry=bt.RetryPolicy(max_attempts=2, walltime_factor=1.5,
                                                                     max_walltime=1))
    assert bt.wait_for_jobs(timeout=60) is False
    tab = bt.get_job_table()
    assert tab["attempt"].tolist() == [2] and tab["deaths"].tolist() == [["timeout", "timeout"]]
    assert [r["walltime"] for r in bt.get_job_attempts()["resources"]] == [1, 1]  # capped by max_walltime
    # a new submission by the user starts again at attempt 1 and forgets the old attempts
    bt.submit_jobs(1, resources={"walltime": 60})
    assert bt.wait_for_jobs(timeout=60)
    assert bt.get_job_table()["attempt"].tolist() == [1] and len(bt.get_job_attempts()) == 1


def test_the_policy_is_stored_with_the_jobs_and_applied_by_a_later_session(tmp_path):
    """The session that submitted leaves; a new session's sync_registry retries the job."""
    path = tmp_path / "r"
    script = textwrap.dedent(f"""
        import batchtools as bt
        reg = bt.make_registry(file_dir={str(path)!r}, seed=1, conf_file=None)
        reg.cluster_functions = bt.make_cluster_functions_multicore(2)
        def hungry(need, job):
            if job.resources["memory"] < need:
                raise MemoryError("not enough")
            return job.resources["memory"]
        bt.batch_map(hungry, need=[150])
        bt.submit_jobs(resources={{"memory": 100}}, retry=bt.RetryPolicy(memory_factor=2))
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    reg = bt.load_registry(path, writeable=True, conf_file=None)
    wait_until(lambda: bt.find_errors(reg=reg)["job_id"].tolist() == [1], what="the first attempt to fail")
    assert bt.sync_registry(reg=reg)  # the retry: submitted from this session
    assert bt.wait_for_jobs(reg=reg, timeout=60)
    assert bt.load_result(1, reg=reg) == 200
    assert bt.get_job_table(reg=reg)["deaths"].tolist() == [["memory"]]


def test_accounting_off_or_silent_degrades_to_unknown(tmp_path):
    """A job killed without a word (SIGKILL) on a backend with no accounting: 'unknown', no error;
    a policy that retries 'unknown' runs it again."""
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)

    def runs_twice(path):
        import os
        import time
        if not os.path.exists(path):
            open(path, "w").close()
            time.sleep(60)
        return "second"

    bt.batch_map(runs_twice, path=[str(tmp_path / "first")])
    bt.submit_jobs(retry=bt.RetryPolicy(reasons=("unknown",)))
    # killed once its first run has left its mark (killed earlier, the second run would be a first)
    wait_until(lambda: (tmp_path / "first").exists(), 120, "the first run")
    os.kill(int(bt.get_job_table()["batch_id"][0]), signal.SIGKILL)
    assert bt.wait_for_jobs(timeout=120)
    assert bt.load_result(1) == "second"
    assert bt.get_job_table()["deaths"].tolist() == [["unknown"]]
    # a backend whose accounting fails is no reason to fail either
    assert decide(None, None) == "unknown"


# ------------------------------------------------------------------ the scheduler's accounting
SACCT = """\
101|TIMEOUT|0:0||00:02.310
101.batch|CANCELLED|0:15|10436K|00:02.300
101.extern|COMPLETED|0:0|4K|00:00:00
102|OUT_OF_MEMORY|0:125||01:02.500
102.batch|OUT_OF_MEMORY|0:125|1048576K|01:02.400
102.extern|COMPLETED|0:0|4K|00:00:00
102.0|OUT_OF_MEMORY|0:125|2097152K|00:59.100
103|FAILED|0:9||00:10.000
103.batch|OUT_OF_MEMORY|0:9|512.50M|00:10.000
103.extern|COMPLETED|0:0|4K|00:00:00
104|NODE_FAIL|1:0||00:00:00
104.batch|CANCELLED|0:15|1024K|00:00:00
104.extern|CANCELLED|0:15|4K|00:00:00
105|PREEMPTED|0:15||1-02:03:04
105.batch|CANCELLED|0:15|2G|1-02:03:04
105.extern|COMPLETED|0:0|4K|00:00:00
106|CANCELLED by 1000|0:15||00:01.000
106.batch|CANCELLED|0:15|10M|00:01.000
107|FAILED|1:0||00:00.800
107.batch|FAILED|1:0|30M|00:00.800
107.extern|COMPLETED|0:0|4K|00:00:00
108|COMPLETED|0:0||00:05.000
108.batch|COMPLETED|0:0|25M|00:05.000
109_4|TIMEOUT|0:0||00:01:00
109_4.batch|CANCELLED|0:15|100M|00:01:00
"""


def test_reasons_from_recorded_sacct_output():
    acc = parse_sacct(SACCT.splitlines())
    assert {k: v.reason for k, v in acc.items()} == {
        "101": "timeout", "102": "memory", "103": "memory", "104": "node_fail", "105": "preempted",
        "106": "cancelled", "107": "error", "108": None, "109_4": "timeout"}
    assert acc["101"].max_rss == pytest.approx(10436 / 1024) and acc["101"].cpu_time == pytest.approx(2.31)
    assert acc["102"].max_rss == 2048.0  # the largest over .batch, .extern and .0
    assert acc["105"].cpu_time == 86400 + 2 * 3600 + 3 * 60 + 4 and acc["105"].max_rss == 2048.0
    assert acc["103"].signal == 9 and acc["106"].state == "CANCELLED" and acc["107"].exit_code == 1
    # the scheduler's definite causes beat the node's guess, the node's evidence beats a vague state
    assert decide("unknown", acc["101"]) == "timeout"
    assert decide("timeout", acc["105"]) == "preempted"
    assert decide("memory", acc["107"]) == "memory"
    assert decide(None, acc["108"]) == "unknown"
    assert decide("checkpointed", acc["106"]) == "checkpointed"
    rec = parse_scontrol_job("JobId=7 JobState=OUT_OF_MEMORY Reason=OutOfMemory ExitCode=0:125 Restarts=0")
    assert rec.reason == "memory" and rec.signal == 125
    assert parse_scontrol_job("slurm_load_jobs error: Invalid job id specified") is None


QACCT = """\
==============================================================
qname        all.q
hostname     node1
jobnumber    41
taskid       undefined
failed       100 : assumedly after job
exit_status  137
ru_wallclock 61s
ru_maxrss    20.000MB
cpu          59.500s
maxvmem      100.000MB
category     -l h_rt=60,h_vmem=1024M
==============================================================
jobnumber    42
failed       100 : assumedly after job
exit_status  137
ru_wallclock 5s
cpu          4.000s
maxvmem      1.000GB
category     -l h_rt=600,h_vmem=1024M
==============================================================
jobnumber    43
failed       0
exit_status  1
ru_wallclock 1s
cpu          0.258s
maxvmem      39.770MB
category     -l h_rt=300
==============================================================
jobnumber    44
failed       37  : qmaster enforced h_rt, h_cpu, or h_vmem limit
exit_status  0
ru_wallclock 30s
cpu          0.033s
maxvmem      8.848MB
category     -l h_rt=30
"""


def test_reasons_from_recorded_qacct_output():
    acc = parse_qacct(QACCT)
    assert {k: v.reason for k, v in acc.items()} == {"41": "timeout", "42": "memory", "43": "error",
                                                      "44": "timeout"}
    assert acc["41"].signal == 9 and acc["41"].cpu_time == 59.5 and acc["41"].max_rss == 100.0
    assert acc["42"].max_rss == 1024.0


# ------------------------------------------------------------------ checkpoints
def test_a_checkpointing_job_stops_before_its_walltime_and_goes_on(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(countdown, n=[20])  # 5 s of work; the node stops it 1 s before its 4 s walltime
    bt.submit_jobs(resources={"walltime": 4, "checkpoint_warning": 1})
    assert bt.wait_for_jobs(timeout=60)
    assert bt.load_result(1) == 20
    trace = bt.get_job_attempts()
    assert trace["attempt"].tolist() == [1, 2]
    assert trace["reason"].tolist() == ["checkpointed", None] and trace["action"].tolist() == ["requeue", None]
    tab = bt.get_job_table()
    assert tab["attempt"].tolist() == [2] and tab["error"].isna().all()
    assert not reg.layout.checkpoint(1).exists()  # a job that ended deletes its checkpoint
    logs = " ".join(p.read_text() for p in reg.layout.dir("logs").glob("*.log"))
    assert "The time limit is 1s away: asking the job to checkpoint and stop" in logs


def test_the_schedulers_warning_signal_stops_a_checkpointing_job(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(countdown, n=[12])
    bt.submit_jobs()
    running_jobs()
    time.sleep(1.0)
    os.kill(int(bt.get_job_table()["batch_id"][0]), signal.SIGUSR1)  # as Slurm's --signal=B:USR1@...
    assert bt.wait_for_jobs(timeout=60)
    assert bt.load_result(1) == 12
    assert bt.get_job_table()["deaths"].tolist() == [["checkpointed"]]
    logs = " ".join(p.read_text() for p in reg.layout.dir("logs").glob("*.log"))
    assert "Warning signal SIGUSR1 from the scheduler" in logs


def test_reset_forgets_checkpoints_and_attempts(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()

    def partial(x, job):
        job.checkpoint("half")
        raise RuntimeError("stop")

    bt.batch_map(partial, x=[1])
    bt.submit_jobs()
    assert reg.layout.checkpoint(1).exists()
    bt.reset_jobs(1)
    assert not reg.layout.checkpoint(1).exists()
    assert bt.get_job_table()["attempt"].isna().all()


def test_sync_applies_runs_of_a_requeued_collection_in_order(tmp_path):
    """A Slurm job that requeued itself reports one row per run (restart 0, 1, ...); whatever the
    order the files arrive in, the earlier runs become attempts and the last run counts."""
    import pickle

    for order in ("in order", "late run first"):
        reg = bt.make_registry(file_dir=tmp_path / order.replace(" ", "_"), seed=1, conf_file=None)
        reg.cluster_functions = bt.make_cluster_functions_interactive(external=True)
        bt.batch_map(lambda x: x, x=[1])
        jc = bt.make_job_collection([1])
        st = reg.status
        st.loc[0, ["submitted", "attempt", "restart"]] = [100.0, 1.0, 0.0]
        st.loc[0, ["job_hash", "batch_id"]] = [jc.job_hash, "77"]
        reg.save()
        runs = []
        for restart, (start, end, done, reason) in enumerate([(101, 150, None, "requeued"),
                                                              (155, 205, None, "requeued"),
                                                              (210, 240, 240.0, None)]):
            row = new_row(1)
            row[1], row[10], row[9] = float(start), float(end), float(restart)
            if done:
                row[2] = done
            row[5] = reason
            runs.append([row])
        if order == "late run first":
            runs = runs[::-1]
        for k, rows in enumerate(runs):
            with open(reg.layout.update(jc.job_hash, f"t{k}-0"), "wb") as fh:
                pickle.dump(rows, fh)
        reg.sync()
        tab = bt.get_job_table()
        assert tab["attempt"].tolist() == [3], order
        assert tab["started"][0].timestamp() == 210 and tab["done"][0].timestamp() == 240
        trace = bt.get_job_attempts()
        if order == "in order":
            assert trace["reason"].tolist() == ["requeued", "requeued", None]
            assert [t.timestamp() for t in trace["ended"][:2]] == [150, 205]
        else:  # the earlier runs' rows came too late: stale, but the attempts are counted
            assert trace["attempt"].tolist() == [1, 3] or trace["attempt"].tolist()[-1] == 3


# ------------------------------------------------------------------ the pool that heals itself
def counted(x, log_dir, sleep=0.0):
    import os
    import time

    time.sleep(sleep)
    with open(os.path.join(log_dir, "runs.txt"), "a") as fh:
        fh.write(f"{x}\n")
    return x * x


def test_a_healing_pool_reruns_a_killed_workers_job_and_replaces_the_worker(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(counted, x=range(10), more_args={"log_dir": str(tmp_path), "sleep": 0.4})
    bt.submit_workers(2, heal=True, heartbeat=0.5)
    victim_job = running_jobs()[0]
    victim = bt.get_job_table(victim_job)["batch_id"].iloc[0]
    os.kill(int(victim), signal.SIGKILL)
    assert bt.wait_for_jobs(timeout=90)
    assert bt.reduce_results_list() == [x * x for x in range(10)]
    trace = bt.get_job_attempts(victim_job)
    assert trace["attempt"].tolist() == [1, 2] and trace["reason"][0] == "worker_lost"
    assert trace["action"][0] == "worker_lost"
    workers = bt.get_workers()
    assert len(workers) >= 3 and victim in set(workers["batch_id"])  # a new worker replaced the lost one
    assert set(workers.set_index("batch_id")["state"].drop(victim)) <= {"exited", "queued", "running"}


def test_workers_claim_only_jobs_that_fit_their_walltime(tmp_path):
    """Workers with a 3 s walltime and jobs of 0.4-1.6 s with estimates: no job runs past its
    worker's walltime; workers drain and the healing pool replaces them."""
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    durations = np.random.default_rng(3).uniform(0.4, 1.6, 12)
    bt.batch_map(lambda d: __import__("time").sleep(d) or d, d=durations.tolist())
    est = pd.DataFrame({"job_id": np.arange(1, 13), "runtime": durations})
    bt.submit_workers(2, ids=est.sort_values("runtime", ascending=False), resources={"walltime": 3}, heal=True)
    assert bt.wait_for_jobs(timeout=120)
    tab = bt.get_job_table()
    workers = bt.get_workers().set_index("batch_id")
    assert len(workers) > 2  # drained workers were replaced
    for _, job in tab.iterrows():
        start = workers.loc[job["batch_id"], "submitted"]
        assert (job["done"] - start).total_seconds() <= 3 + 0.5, job["job_id"]
    exits = [p.read_text() for p in (reg.layout.pool / "workers").glob("*.exit")]
    assert any("drained" in e for e in exits)


# ------------------------------------------------------------------ GPUs
def devices_seen(i):
    import os
    import time

    t0 = time.time()
    time.sleep(0.6)
    return os.environ.get("CUDA_VISIBLE_DEVICES"), t0, time.time()


def overlapping(res):
    """Pairs of results whose runs overlapped in time."""
    return [(a, b) for k, a in enumerate(res) for b in res[k + 1:] if a[1] < b[2] and b[1] < a[2]]


def test_multicore_hands_out_free_devices(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(4, gpus=["0", "1"])
    bt.batch_map(devices_seen, i=range(5))
    bt.submit_jobs([1, 2, 3, 4], resources={"gpus": 1})
    bt.submit_jobs([5])
    assert bt.wait_for_jobs(timeout=60)
    res = bt.reduce_results_list()
    assert {r[0] for r in res[:4]} == {"0", "1"} and res[4][0] == ""  # a job without gpus sees none
    gpu_jobs = res[:4]
    assert all(a[0] != b[0] for a, b in overlapping(gpu_jobs))  # never two jobs on one device at once
    # never more GPU jobs at once than devices
    assert max(sum(b[1] <= a[1] < b[2] for b in gpu_jobs) for a in gpu_jobs) <= 2


def meets_three_others(i, marks):
    """Leave a mark and wait (up to 30 s) until four jobs have left one: True if they did."""
    import os
    import time

    t0 = time.time()
    open(os.path.join(marks, str(i)), "w").close()
    deadline = time.monotonic() + 30
    while len(os.listdir(marks)) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    return os.environ.get("CUDA_VISIBLE_DEVICES"), t0, len(os.listdir(marks)) >= 4


def test_a_pool_worker_with_four_devices_runs_four_one_gpu_jobs_at_once(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2, gpus=["0", "1", "2", "3"])
    marks = tmp_path / "marks"
    marks.mkdir()
    bt.batch_map(meets_three_others, i=range(8), more_args={"marks": str(marks)})
    bt.submit_workers(1, resources={"gpus": 4})
    assert bt.wait_for_jobs(timeout=120)
    res = bt.reduce_results_list()
    first = sorted(res, key=lambda r: r[1])[:4]
    assert sorted(r[0] for r in first) == ["0", "1", "2", "3"]  # four at once, each its own device
    assert all(r[2] for r in first)  # the first four met: they ran at the same time
    tab = bt.get_job_table()
    assert tab["batch_id"].nunique() == 1 and tab["log_file"].nunique() == 4  # one worker, a log per slot
    assert all(f"### [bt]: Starting job [batchtools job.id={i}]" in bt.get_log(i) for i in range(1, 9))


def test_explicit_device_list_for_pool_workers(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(devices_seen, i=range(4))
    bt.submit_workers(1, resources={"gpu_devices": ["a", "b", "c", "d"], "gpus_per_job": 2})
    assert bt.wait_for_jobs(timeout=60)
    assert {r[0] for r in bt.reduce_results_list()} == {"a,b", "c,d"}


@pytest.mark.parametrize("template,line", [("sge", "#$ -l gpu=2"), ("torque", ":gpus=2"),
                                           ("lsf", "#BSUB -gpu num=2"), ("slurm", "#SBATCH --gpus=2")])
def test_gpus_reach_the_job_scripts(tmp_path, template, line):
    from batchtools.backends.templates import cf_brew_template, cf_read_brew_template

    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    bt.batch_map(lambda x: x, x=[1])
    jc = bt.make_job_collection(resources={"gpus": 2, "walltime": 3600})
    text = open(cf_brew_template(reg, cf_read_brew_template(template), jc)).read()
    assert line in text
    if template == "slurm":
        assert "#SBATCH --signal=B:USR1@300" in text and "#SBATCH --requeue" in text and "\nexec " in text
        short = bt.make_job_collection(resources={"walltime": 60})
        assert "--signal" not in open(cf_brew_template(reg, cf_read_brew_template(template), short)).read()
    if template == "sge":
        assert "#$ -l s_rt=3300" in text


def test_a_job_ending_well_deletes_its_checkpoint_even_after_jobs_that_found_no_checkpoints(tmp_path):
    """The node looks for the checkpoints folder at most once a second; a checkpoint saved in this
    process since, or one a job of this process restored, is deleted all the same."""
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()

    def step(x, job):
        if x == 2:
            job.checkpoint("saved here")
        if x == 3:
            return job.restored
        return x

    bt.batch_map(step, x=[1, 2, 3])
    bt.submit_jobs([1, 2])  # job 1 finds no checkpoints folder, job 2 saves one and ends well
    assert bt.reduce_results_list() == [1, 2]
    assert not reg.layout.checkpoint(2).exists()
    # a checkpoint of job 3 saved by another process, just after a job here found no checkpoints
    checkpoint._NO_CHECKPOINTS[str(reg.file_dir)] = time.monotonic()
    write_pickle(reg.layout.checkpoint(3), "left by an earlier run elsewhere")
    bt.submit_jobs([3])
    assert bt.load_result(3) == "left by an earlier run elsewhere"
    assert not reg.layout.checkpoint(3).exists()
