"""Issue 28 without the report: resources learned from what jobs used (``recommend_resources``),
the scheduler's accounting read once per poll (``sacct``, recorded outputs replayed by the fake
commands; the real Slurm here keeps no accounting, see test_slurm.py), GPU use sampled with
``nvidia-smi`` (a fake one), jobs that report progress and are ended when they stall
(``stall_timeout``), and a message when a run ends (``notify``, against a local HTTP server)."""

import json
import logging
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest

import batchtools as bt
from batchtools.backends.slurm import parse_sacct
from batchtools.core.contract.protocol import PROGRESS_AT, PROGRESS_MESSAGE, full_row, new_row
from conftest import snapshot, wait_until


# ------------------------------------------------------------------ progress and stalls
def report_then_wait(x, job):
    """Reports its progress, then waits for the test's go (a file)."""
    job.progress(0.5, "half way")
    go = os.path.join(job.file_dir, f"go-{x}")
    while not os.path.exists(go):
        time.sleep(0.02)
    job.progress(1.0, "all done")
    return x


def test_progress_shows_while_the_job_runs_and_after(mreg):
    bt.batch_map(report_then_wait, x=[1])
    bt.submit_jobs()
    def reported():
        t = bt.get_job_table()
        return [t] if t["progress"].notna().all() else None

    row = wait_until(reported, timeout=60, what="the running job's progress in the table")[0]
    assert row["progress"].tolist() == [0.5] and row["progress_message"].tolist() == ["half way"]
    assert bt.find_running()["job_id"].tolist() == [1]
    seen = row["progress_at"][0]
    open(os.path.join(mreg.file_dir, "go-1"), "w").close()
    assert bt.wait_for_jobs(timeout=60)
    tab = bt.get_job_table()
    assert tab["progress"].tolist() == [1.0] and tab["progress_message"].tolist() == ["all done"]
    assert tab["progress_at"][0] > seen and tab["reason"].isna().all()


def sleep_until_stopped(x, job):
    job.progress(x, "about to hang")
    time.sleep(300)


def test_a_silent_job_is_ended_as_stalled(mreg):
    bt.batch_map(sleep_until_stopped, x=[1])
    t0 = time.time()
    bt.submit_jobs(resources={"stall_timeout": 2})
    assert not bt.wait_for_jobs(timeout=120)
    assert time.time() - t0 < 60
    tab = bt.get_job_table()
    assert tab["reason"].tolist() == ["stalled"]
    assert tab["error"][0].startswith("Stalled: no progress for 2s since its last progress (1.0, about to hang)")
    assert tab["progress_message"].tolist() == ["about to hang"]
    log = "\n".join(bt.get_log(1))
    assert "made no progress for 2s (stall_timeout): ending it" in log and "time.sleep(300)" in log


def stubborn(x, job):
    if x == 1:  # catches the node's Stalled, as a careless `except BaseException` would
        while True:
            try:
                time.sleep(300)
            except BaseException:
                pass
    return x


def test_a_job_that_ignores_the_stop_is_ended_with_its_process(mreg):
    bt.batch_map(stubborn, x=[1, 2])
    bt.submit_jobs(bt.find_jobs().assign(chunk=1), resources={"stall_timeout": 2})
    assert not bt.wait_for_jobs(timeout=120)
    tab = bt.get_job_table()
    assert tab["reason"][0] == "stalled" and "so its process was ended" in tab["error"][0]
    # the process is gone: the chunk's other job never started, and expired as after a scheduler's kill
    assert bt.find_expired()["job_id"].tolist() == [2] and pd.isna(tab["started"][1])


def slow_first_attempt(x, job):
    marker = os.path.join(job.file_dir, f"tried-{x}")
    if not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(300)  # silent: stalled
    job.heartbeat()
    return x * 10


def test_a_retry_policy_may_retry_stalled_jobs(mreg):
    bt.batch_map(slow_first_attempt, x=[1, 2])
    bt.submit_jobs(resources={"stall_timeout": 2}, retry=bt.RetryPolicy(reasons=("stalled",)))
    assert bt.wait_for_jobs(timeout=120)
    assert bt.reduce_results_list() == [10, 20]
    att = bt.get_job_attempts()
    assert att["reason"].tolist() == ["stalled", None, "stalled", None]
    assert bt.get_job_table()["deaths"].tolist() == [["stalled"], ["stalled"]]


def hang_quietly(x):
    if x == 1:
        time.sleep(300)  # blocked: in the main thread, a signal interrupts it
    while True:  # polling for something that never comes
        time.sleep(0.05)


def test_stalls_in_the_masters_process_end_the_job_not_the_process(reg):
    """Interactive runs jobs in this process: the job ends (in the main thread, and in another
    thread once it runs Python code again), the process goes on."""
    bt.batch_map(hang_quietly, x=[1, 2])
    bt.submit_jobs(1, resources={"stall_timeout": 1})
    errors = []
    worker = threading.Thread(target=lambda: errors.append(bt.submit_jobs(2, resources={"stall_timeout": 1})))
    worker.start()
    worker.join(60)
    assert not worker.is_alive() and len(errors) == 1
    tab = bt.get_job_table()
    assert tab["reason"].tolist() == ["stalled", "stalled"]
    assert signal.getsignal(signal.SIGUSR2) in (signal.SIG_DFL, None)  # this process's handler is restored


def swallow_the_stop(x):
    try:
        time.sleep(300)
    except BaseException:  # a node process would be ended 2 s later; this one is the user's
        time.sleep(3)
    return "survived"


def test_a_stubborn_job_run_in_the_users_process_never_ends_it(reg):
    bt.batch_map(swallow_the_stop, x=[1])
    jc = bt.make_job_collection(resources={"stall_timeout": 1})
    assert bt.do_job_collection(jc, output=jc.log_file) == {"done": 1, "error": 0}
    with open(jc.log_file) as fh:
        assert "made no progress for 1s (stall_timeout): ending it" in fh.read()  # ... and this process lives


def test_progress_outside_a_node_and_bad_values(reg):
    bt.batch_map(lambda x: x, x=[1])
    job = bt.make_job(1)
    job.progress(0.25, "testing")
    job.heartbeat()
    assert job._watch.value == 0.25 and job._watch.message == "testing"
    with pytest.raises(TypeError, match="value must be a number"):
        job.progress("half")


def test_stall_timeout_is_checked_before_anything_is_written(reg):
    bt.batch_map(lambda x: x, x=[1])
    before = snapshot(reg.file_dir)
    with pytest.raises(ValueError, match="stall_timeout must be a finite positive number"):
        bt.submit_jobs(resources={"stall_timeout": 0})
    assert snapshot(reg.file_dir) == before
    assert "stalled" in bt.RetryPolicy(reasons=("stalled", "timeout")).reasons


def test_progress_reports_read_out_of_order_keep_the_latest(reg):
    bt.batch_map(lambda x: x, x=[1])
    bt.submit_jobs()
    h = reg.status["job_hash"][0]
    late, early = full_row(new_row(1)), full_row(new_row(1))
    late[PROGRESS_AT:PROGRESS_MESSAGE + 1] = [200.0, 0.9, "late"]
    early[PROGRESS_AT:PROGRESS_MESSAGE + 1] = [100.0, 0.1, "early"]
    reg.pending_updates.append((h, [late, early]))  # the later report first, as files may be read
    reg.pending_updates.append((h, [early]))
    reg.sync()
    row = reg.status.iloc[0]
    assert (row["progress_at"], row["progress"], row["progress_message"]) == (200.0, 0.9, "late")


def test_rows_of_every_length_nodes_wrote_are_read(reg):
    """One update row format for start-up (issue 25) and progress/GPU use (issue 28): rows of 17
    fields and of 12 (no progress or GPU field), and older ones: 5 fields, 11 (no startup), and 16
    (progress and GPU fields right after ``ended``, no startup), all in one batch."""
    from batchtools.core.contract.protocol import FIELDS, STARTUP

    reg.cluster_functions = bt.make_cluster_functions("Silent", lambda r, jc: bt.make_submit_job_result(0, "b1"),
                                                      list_jobs_running=lambda r: ["b1"])
    bt.batch_map(lambda x: x, x=[1, 2, 3, 4, 5])
    bt.submit_jobs(bt.find_jobs().assign(chunk=1))  # one collection, none of its jobs run: the rows below tell
    h = reg.status["job_hash"][0]
    nan = float("nan")
    base = [10.0, 11.0, None, 3.0, None, nan, 4.0, 0.5, 0.0, 11.0]  # started .. ended
    full = [1, *base, 2.5, 10.5, 0.5, "half", 100.0, 40.0]
    assert len(full) == len(FIELDS) and full[STARTUP] == 2.5
    rows = [full, [2, *base, 1.5], [3, 10.0, 11.0, None, 3.0], [4, *base], [5, *base, 10.5, 0.7, "most", 200.0, 80.0]]
    reg.pending_updates.append((h, rows))
    reg.sync()
    st = bt.get_job_status()
    assert st["time_running"].dt.total_seconds().tolist() == [1.0] * 5
    assert st["time_startup"].dt.total_seconds().tolist()[:2] == [2.5, 1.5]
    assert st["time_startup"][2:].isna().all()
    assert st["progress"].tolist()[0] == 0.5 and st["progress"].tolist()[4] == 0.7
    assert st["progress_message"][0::4].tolist() == ["half", "most"] and st["progress_message"][1:4].isna().all()
    assert st["gpu_mem"].tolist()[0::4] == [100.0, 200.0] and st["gpu_util"].tolist()[0::4] == [40.0, 80.0]
    assert st["gpu_mem"][1:4].isna().all() and st["max_rss"][[0, 1, 3, 4]].tolist() == [4.0] * 4


# ------------------------------------------------------------------ GPUs
NVIDIA_SMI = """\
0, GPU-aaaa, 1000, 40
1, GPU-bbbb, 7000, 100

0, GPU-aaaa, 3000, 80
1, GPU-bbbb, 7000, 100
"""


def gpu_job(x):
    time.sleep(1.5)
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def test_gpu_use_is_sampled_where_nvidia_smi_answers(fake, tmp_path, monkeypatch):
    samples = tmp_path / "nvidia-smi.txt"
    samples.write_text(NVIDIA_SMI)
    monkeypatch.setenv("FAKE_NVIDIA_SMI", str(samples))
    r = bt.make_registry(file_dir=tmp_path / "g", seed=1, conf_file=None)
    r.cluster_functions = bt.make_cluster_functions_multicore(1, gpus=["0"])
    bt.batch_map(gpu_job, x=[1, 2])
    bt.submit_jobs(1, resources={"gpus": 1})
    bt.submit_jobs(2)  # asks for no GPU: not sampled
    assert bt.wait_for_jobs(timeout=60)
    assert bt.reduce_results_list() == ["0", ""]
    tab = bt.get_job_table()
    # device 0 only (the job's CUDA_VISIBLE_DEVICES): peak 3000 MiB; utilization the mean of its samples
    assert tab["gpu_mem"][0] == 3000.0 and 40 <= tab["gpu_util"][0] <= 80
    assert np.isnan(tab["gpu_mem"][1]) and np.isnan(tab["gpu_util"][1])
    r.cluster_functions.close()


def test_no_gpu_use_is_made_up_without_nvidia_smi(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no nvidia-smi here
    r = bt.make_registry(file_dir=tmp_path / "g", seed=1, conf_file=None)
    r.cluster_functions = bt.make_cluster_functions_multicore(1, gpus=["0"])
    bt.batch_map(lambda x: x, x=[1])
    bt.submit_jobs(resources={"gpus": 1})
    assert bt.wait_for_jobs(timeout=60)
    assert bt.get_job_table()[["gpu_mem", "gpu_util"]].isna().all().all()
    r.cluster_functions.close()


# ------------------------------------------------------------------ Slurm's accounting (recorded sacct output)
SACCT_RUNS = """\
501|REQUEUED|0:0||00:00:03|00:00:04|
501.batch|CANCELLED|0:15|900M|00:00:03|00:00:04|cpu=00:00:03,mem=900M
501.extern|COMPLETED|0:0|1M|00:00:00|00:00:04|
501|COMPLETED|0:0||00:01:30|00:02:05|
501.batch|COMPLETED|0:0|51200K|00:00:20|00:02:05|cpu=00:00:20,mem=51200K,gres/gpumem=2G,gres/gpuutil=35
501.extern|COMPLETED|0:0|1M|00:00:00|00:02:05|
501.0|COMPLETED|0:0|80M|00:01:10|00:01:50|cpu=00:01:10,mem=80M,gres/gpumem=3G,gres/gpuutil=90
502_3|RUNNING|0:0||00:00:00|00:00:10|
502_3.batch|RUNNING|0:0|||00:00:10|
503|TIMEOUT|0:0||00:00:00|00:01:01|
503.batch|CANCELLED|0:15|2048K|00:00:02.500|00:01:01|
503.extern|COMPLETED|0:0|4K|00:00:01|00:01:01|
"""


def test_sacct_steps_and_runs_are_folded():
    acc = parse_sacct(SACCT_RUNS.splitlines())
    a = acc["501"]  # requeued once: the last run counts, with its own steps only
    assert a.state == "COMPLETED" and a.elapsed == 125.0 and a.cpu_time == 90.0
    assert a.max_rss == 80.0 and a.gpu_mem == 3072.0 and a.gpu_util == 90.0
    assert acc["502_3"].state == "RUNNING" and np.isnan(acc["502_3"].max_rss)
    t = acc["503"]  # the job line has no TotalCPU: the steps' sum
    assert t.reason == "timeout" and t.elapsed == 61.0 and t.cpu_time == pytest.approx(3.5) and t.max_rss == 2.0
    assert np.isnan(t.gpu_mem)


SACCT_USED = """\
{job}|COMPLETED|0:0||00:00:02.400|00:00:03|
{job}.batch|COMPLETED|0:0|51200K|00:00:02.400|00:00:03|cpu=00:00:02,mem=51200K
{job}.extern|COMPLETED|0:0|0|00:00:00|00:00:03|
"""


def fake_slurm(tmp_path):
    r = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    cf = bt.make_cluster_functions_slurm()
    cf.scheduler_latency = cf.fs_latency = 0
    cf.poll = cf.poll_max = 0.05
    r.cluster_functions = cf
    return r


def test_accounting_is_read_once_per_poll_and_replaces_the_nodes_measurement(fake, tmp_path, monkeypatch):
    recorded = tmp_path / "sacct.txt"
    recorded.write_text(SACCT_USED)
    monkeypatch.setenv("FAKE_SACCT", str(recorded))
    reg = fake_slurm(tmp_path)
    bt.batch_map(lambda x: x, x=range(1, 6))
    bt.submit_jobs([1, 2, 3], resources={"walltime": 3600, "memory": 4096})
    bt.submit_jobs(bt.find_jobs(ids=[4, 5]).assign(chunk=1))  # one scheduler job for two jobs
    assert bt.wait_for_jobs(timeout=60)
    calls = [c for c in fake.calls() if c[0] == "sacct"]
    asked = [next(a for a in c if a.startswith("--jobs=")) for c in calls]
    batches = reg.status["batch_id"].tolist()
    assert asked[0] == "--jobs=" + ",".join(sorted(batches[:3], reverse=True))  # one call for all, latest first
    assert len(calls) == 1  # every lone job was answered: nothing left to ask
    tab = bt.get_job_table()
    assert tab["elapsed"][:3].dt.total_seconds().tolist() == [3.0] * 3
    assert tab["max_rss"][:3].tolist() == [50.0] * 3 and tab["cpu_time"][:3].dt.total_seconds().tolist() == [2.4] * 3
    # a chunk's scheduler job used what the chunk used: its jobs keep the node's measurement of each
    assert tab["elapsed"][3:].isna().all() and (tab["max_rss"][3:] != 50.0).all()
    bt.sync_registry()
    assert len([c for c in fake.calls() if c[0] == "sacct"]) == 1  # accounted jobs are not asked about again
    # ... and the acceptance: used 50 MB and 3 s of 4 GB and 1 h asked: ~60 MB, a minute (Slurm's unit)
    rec = bt.recommend_resources([1, 2, 3])
    assert rec["walltime"].tolist() == [60] * 3 and rec["memory"].tolist() == [64] * 3
    assert rec.groups["evidence"].tolist() == ["scheduler+node"]


def test_without_accounting_sacct_is_asked_once_per_session(fake, tmp_path, monkeypatch):
    reg = fake_slurm(tmp_path)
    bt.batch_map(lambda x: x, x=[1, 2])
    bt.submit_jobs()
    assert bt.wait_for_jobs(timeout=60)
    bt.sync_registry()
    assert len([c for c in fake.calls() if c[0] == "sacct"]) == 1
    assert bt.get_job_table()["elapsed"].isna().all()
    assert reg.status["max_rss"].notna().all()  # the node's measurement stands
    # the reasons of dead jobs still come from scontrol while Slurm remembers them
    monkeypatch.setenv("FAKE_SCONTROL_STATE", "TIMEOUT")
    monkeypatch.setenv("FAKE_SCONTROL_EXIT", "0:15")
    batch = reg.status["batch_id"][0]
    acc = reg.cluster_functions.account(reg, [batch, "999999"])
    assert list(acc) == [batch] and acc[batch].reason == "timeout" and acc[batch].signal == 15
    assert len([c for c in fake.calls() if c[0] == "sacct"]) == 1  # not asked again


def test_a_failing_sacct_leaves_the_reasons_to_scontrol_and_is_asked_again(fake, tmp_path, monkeypatch):
    reg = fake_slurm(tmp_path)
    monkeypatch.setenv("FAKE_SACCT_DOWN", "1")
    bt.batch_map(lambda x: x, x=[1])
    bt.submit_jobs()
    assert bt.wait_for_jobs(timeout=60)
    monkeypatch.setenv("FAKE_SCONTROL_STATE", "TIMEOUT")
    monkeypatch.setenv("FAKE_SCONTROL_EXIT", "0:15")
    batch = reg.status["batch_id"][0]
    before = len([c for c in fake.calls() if c[0] == "sacct"])
    acc = reg.cluster_functions.account(reg, [batch])
    assert list(acc) == [batch] and acc[batch].reason == "timeout"
    assert reg.cluster_functions.usage(reg, [batch]) == {}  # nothing known yet: asked again later
    assert len([c for c in fake.calls() if c[0] == "sacct"]) == before + 2


# ------------------------------------------------------------------ recommend_resources
def use(mb, seconds, job):
    block = bytearray(int(mb * 2**20))  # touched: resident
    for i in range(0, len(block), 4096):
        block[i] = 1
    t0 = time.time()
    while time.time() - t0 < seconds:
        job.heartbeat()
        time.sleep(0.01)
    return len(block)


def spin(seconds):
    t0 = time.process_time()
    while time.process_time() - t0 < seconds:
        pass
    return seconds


def test_recommendations_follow_the_groups_evidence(tmp_path, caplog):
    reg = bt.make_experiment_registry(file_dir=tmp_path / "e", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.add_problem("p", data=None)
    bt.add_algorithm("small", lambda data, job, instance, n: use(5, 0.2, job))
    bt.add_algorithm("big", lambda data, job, instance, n: use(120, 0.2, job))
    bt.add_algorithm("never", lambda data, job, instance, n: n)
    bt.add_experiments(algo_designs={"small": pd.DataFrame({"n": [1, 2, 3]}), "big": pd.DataFrame({"n": [1, 2]}),
                                     "never": pd.DataFrame({"n": [1, 2]})})
    done = bt.find_experiments(algo_pattern="small|big")
    bt.submit_jobs(done, resources={"walltime": 3600, "memory": 4096})
    assert bt.wait_for_jobs(timeout=120)
    with caplog.at_level(logging.WARNING, logger="batchtools"):
        rec = bt.recommend_resources()
    g = rec.groups.set_index("algorithm")
    assert g.loc["small", "done"] == 3 and g.loc["big", "done"] == 2 and g.loc["never", "done"] == 0
    assert g.loc["big", "memory_used"] > g.loc["small", "memory_used"] + 100
    mem = dict(zip(bt.unwrap(bt.get_job_pars())["algorithm"], rec["memory"]))
    assert mem["big"] >= round(1.2 * g.loc["big", "memory_used"]) and mem["small"] < mem["big"]
    assert pd.isna(mem["never"])  # no evidence of memory: left to the default resources
    # no done job: the walltime is estimated from the others' run times, and the group is named
    never = rec[rec["job_id"].isin(bt.find_experiments(algo_name="never")["job_id"])]
    assert never["walltime"].notna().all() and g.loc["never", "evidence"] == "estimated"
    assert rec.too_little == ["problem=p, algorithm=big", "problem=p, algorithm=never"]
    assert "algorithm=never" in caplog.text and "algorithm=small" not in caplog.text
    assert (rec["walltime"] < 60).all()  # Multicore counts seconds
    assert "ncpus" not in rec.columns  # one CPU asked, one used: nothing to change
    reg.cluster_functions.close()


def test_a_chunk_gets_the_sum_of_its_jobs_walltimes(reg):
    bt.batch_map(lambda x: time.sleep(0.3), x=range(6))
    bt.submit_jobs([1, 2, 3])
    plan = bt.find_not_done().assign(chunk=[1, 1, 2])
    rec = bt.recommend_resources(plan)
    assert rec.columns.tolist() == ["job_id", "chunk", "walltime", "memory"]
    one = rec.groups["walltime"][0] - 10  # the group's walltime without the start-up allowance
    w = rec.groups["runtime"][0] * 1.2
    assert rec["walltime"].tolist() == [int(np.ceil(2 * w + 10))] * 2 + [int(np.ceil(w + 10))]
    assert one == int(np.ceil(w))
    assert bt.submit_jobs(rec)["chunk"].tolist() == [1, 1, 2]


def test_ncpus_follow_cpu_efficiency(mreg):
    bt.batch_map(spin, seconds=[1.2, 1.2, 1.2, 1.2])
    bt.submit_jobs([1, 2, 3], resources={"ncpus": 2})
    assert bt.wait_for_jobs(timeout=120)
    rec = bt.recommend_resources(4)
    assert rec["ncpus"].tolist() == [1]  # asked for 2, kept one busy
    assert rec.groups["cpus_used"][0] <= 1.1


def die_at_the_limit(x):
    time.sleep(1.2)
    os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler ends a job at its walltime
    time.sleep(10)


def test_jobs_killed_at_a_limit_raise_the_recommendation(mreg):
    bt.batch_map(die_at_the_limit, x=[1, 2])
    bt.submit_jobs(resources={"walltime": 2})
    assert not bt.wait_for_jobs(timeout=60)
    assert bt.get_job_table()["reason"].tolist() == ["timeout", "timeout"]
    rec = bt.recommend_resources()
    assert rec["walltime"].tolist() == [14, 14]  # twice the limit (and the start-up allowance)
    assert "2 died at the walltime limit" in rec.groups["note"][0]


def test_bad_arguments_are_refused(reg):
    bt.batch_map(lambda x: x, x=[1])
    with pytest.raises(ValueError, match="q: must be a quantile"):
        bt.recommend_resources(q=1.5)
    with pytest.raises(ValueError, match="margin: must be a finite factor >= 1"):
        bt.recommend_resources(margin=0.5)
    with pytest.raises(ValueError, match=r"by: unknown column\(s\) \['y'\]; available: \['x'\]"):
        bt.recommend_resources(by="y")
    with pytest.raises(TypeError, match="by: column names must be strings"):
        bt.recommend_resources(by=[1])
    assert reg.recommend_resources(by=None)["memory"].isna().all()  # nothing done: nothing known


# ------------------------------------------------------------------ notify
class Hook:
    """A web hook on 127.0.0.1 that keeps what it was sent (``status``: its answer)."""

    def __init__(self, status=200):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, self.headers["Content-Type"], json.loads(body)))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def fail_odd(x):
    if x % 2:
        raise ValueError(f"odd {x}")
    return x


def test_the_end_of_a_wait_is_posted_to_a_web_hook(mreg, hook):
    bt.batch_map(lambda x: x, x=[1, 2, 3])
    bt.submit_jobs()
    assert bt.wait_for_jobs(notify=f"{hook.url}/services/T0/B0/secret")
    assert len(hook.received) == 1
    path, ctype, payload = hook.received[0]
    assert path == "/services/T0/B0/secret" and ctype == "application/json"
    assert payload["title"] == "batchtools: mreg finished" and payload["text"].startswith("*batchtools: mreg finished*")
    assert "3 jobs: 3 done" in payload["text"] and payload["batchtools"]["event"] == "done"
    assert payload["batchtools"]["done"] == 3 and payload["batchtools"]["registry"] == str(mreg.file_dir)


def test_failures_passing_a_threshold_and_the_end_are_told(reg, hook):
    bt.batch_map(fail_odd, x=[1, 2, 3, 4])
    bt.submit_jobs()
    assert not bt.wait_for_jobs(notify={"to": hook.url, "failures": 0.5})
    events = [p["batchtools"]["event"] for _, _, p in hook.received]
    assert events == ["failures", "failed"]
    assert "First error: job 1: ValueError: odd 1" in hook.received[1][2]["text"]
    assert "2 error" in hook.received[1][2]["text"]


def test_ntfy_gets_its_json_at_the_servers_root(reg, hook):
    bt.batch_map(lambda x: x, x=[1])
    bt.submit_jobs()
    assert bt.wait_for_jobs(notify=hook.url.replace("http://", "ntfy+http://") + "/my-runs")
    path, _, payload = hook.received[0]
    assert path == "/" and payload["topic"] == "my-runs" and payload["title"] == "batchtools: reg finished"
    assert payload["message"].startswith("1 jobs: 1 done")


def test_a_command_gets_the_message_on_stdin_and_in_its_environment(reg, tmp_path):
    bt.batch_map(lambda x: x, x=[1])
    bt.submit_jobs()
    out = tmp_path / "told.txt"
    cmd = f'cat > {out}; printf "%s|%s" "$BATCHTOOLS_EVENT" "$BATCHTOOLS_MESSAGE" >> {out}'
    assert bt.wait_for_jobs(notify=cmd)
    text = out.read_text()
    assert text.startswith("batchtools: reg finished\n1 jobs: 1 done") and "\ndone|1 jobs: 1 done" in text
    argv = tmp_path / "argv.txt"
    bt.wait_for_jobs(notify=[sys.executable, "-c", f"import sys; open({str(argv)!r}, 'w').write(sys.stdin.read())"])
    assert argv.read_text().startswith("batchtools: reg finished")


def test_a_failed_notification_warns_and_the_wait_goes_on(reg, caplog):
    bt.batch_map(lambda x: x, x=[1])
    bt.submit_jobs()
    refusing = Hook(status=500)
    try:
        with caplog.at_level(logging.WARNING, logger="batchtools"):
            assert bt.wait_for_jobs(notify=f"{refusing.url}/hooks/secret-token")
            assert bt.wait_for_jobs(notify="exit 3")
    finally:
        refusing.close()
    assert len(refusing.received) == 1
    assert "could not send the notification (done) to http://127.0.0.1/...: HTTP 500" in caplog.text
    assert "secret-token" not in caplog.text  # a hook's URL is a secret
    assert "'exit 3': exit status 3" in caplog.text


def test_a_failing_notify_target_is_tried_once_per_run(reg, caplog):
    """The failures message fails: it is not retried at every turn of the wait, and the end of the
    run is not sent to the dead target either (one warning)."""
    bt.batch_map(fail_odd, x=[1, 2, 3, 4])
    bt.submit_jobs()
    refusing = Hook(status=500)
    try:
        with caplog.at_level(logging.WARNING, logger="batchtools"):
            assert not bt.wait_for_jobs(notify={"to": refusing.url, "failures": 1})
    finally:
        refusing.close()
    assert [p["batchtools"]["event"] for _, _, p in refusing.received] == ["failures"]
    assert caplog.text.count("could not send the notification") == 1
    assert "no more notifications go there in this run" in caplog.text


def test_bad_notify_targets_are_refused_first(reg):
    bt.batch_map(lambda x: x, x=[1])
    bt.submit_jobs()
    for bad, match in ((5, "notify: a URL or a command"), ({"to": "x", "failures": 1.5}, "'failures' must be"),
                       ({"url": "x"}, "a dict needs 'to'"), ("ntfy://ntfy.sh/", "names its server and topic")):
        with pytest.raises((TypeError, ValueError), match=match):
            bt.wait_for_jobs(notify=bad)


def test_batchtools_watch_notifies(mreg, hook, capsys):
    from batchtools.cli import USAGE, main

    bt.batch_map(fail_odd, x=[1, 2])
    bt.submit_jobs()
    bt.wait_for_jobs()
    assert main(["watch", str(mreg.file_dir), "-n", "0.1", "--notify", hook.url]) == 3
    assert [p["batchtools"]["event"] for _, _, p in hook.received] == ["failed"]
    assert "2 jobs: 1 done, 1 error" in hook.received[0][2]["text"]
    assert main(["watch", str(mreg.file_dir), "--notify-failures", "2"]) == USAGE
    assert "--notify-failures needs --notify" in capsys.readouterr().err


def nap(x):
    time.sleep(x)
    return x


def test_the_end_of_a_wait_asks_the_accounting_once(tmp_path, monkeypatch):
    """wait_for_jobs asks the scheduler's accounting at most once per sync: when the poll that saw
    the last job end already asked, the end of the wait does not ask again."""
    import batchtools.api.wait as wait_mod

    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    cf = reg.cluster_functions = bt.make_cluster_functions_multicore(ncpus=2)
    cf.poll = cf.poll_max = 0.05  # below EVIDENCE_POLL: every turn is a poll that asks the accounting
    cf.wait = None  # no early wake at a job's end
    bt.batch_map(nap, x=[0.2, 0.6], reg=reg)
    bt.submit_jobs(reg=reg)
    syncs, calls = [0], []
    sync, record_usage = reg.sync, wait_mod.record_usage

    def counted_sync():
        syncs[0] += 1
        return sync()

    def counted_usage(r, *args, **kwargs):
        calls.append(syncs[0])
        return record_usage(r, *args, **kwargs)

    monkeypatch.setattr(reg, "sync", counted_sync)
    monkeypatch.setattr(wait_mod, "record_usage", counted_usage)
    assert bt.wait_for_jobs(timeout=60, reg=reg)
    assert syncs[0] > 1 and calls and len(calls) == len(set(calls)), calls  # never twice after one sync
