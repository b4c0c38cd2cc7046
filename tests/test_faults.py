"""Fault injection: kill the master, pause and kill pool workers, kill the fork server, race two
sessions, fill the disk. Each trial checks: the registry loads, every result on disk is reported
done with its true value, no job ran twice (no job process is killed in these trials), counts add up.

``BATCHTOOLS_FAULT_TRIALS`` sets the number of random trials per kind (default 10).
"""

import collections
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

import batchtools as bt
from conftest import fill, running_jobs, snapshot, wait_until

TRIALS = int(os.environ.get("BATCHTOOLS_FAULT_TRIALS", "10"))


def job(x, log_dir, sleep):
    """Records each completed execution (one file per job), then returns its value."""
    import os
    import time

    time.sleep(sleep)
    with open(os.path.join(log_dir, f"{x}.run"), "a") as fh:
        fh.write(f"{os.getpid()}\n")
    return x * x


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def runs(log_dir: Path) -> collections.Counter:
    return collections.Counter({int(p.stem): len(p.read_text().split()) for p in log_dir.glob("*.run")})


def start_master(code: str, cwd: Path, stderr=subprocess.DEVNULL) -> subprocess.Popen:
    """Run ``code`` (bt imported) in another process; returns once it printed "loaded"."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys, batchtools as bt\n" + textwrap.dedent(code)],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert proc.stdout.readline().strip() == "loaded"
    return proc


def kill_master(proc: subprocess.Popen) -> None:
    """SIGKILL the master only, then wait until the job processes it started are gone."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    psutil.wait_procs(family, timeout=60)


def check_registry(path: Path, log_dir: Path, n: int, twice_allowed: int = 0) -> dict:
    """The checks every trial ends with (at most ``twice_allowed`` jobs ran twice); returns counts
    for the report."""
    reg = bt.load_registry(path, writeable=True, make_default=False)
    on_disk = set(reg.store.ids().tolist())
    done = set(bt.find_done(reg=reg)["job_id"].tolist())
    assert on_disk <= done, f"results on disk not reported done: {sorted(on_disk - done)[:10]}"
    assert not set(bt.find_expired(reg=reg)["job_id"].tolist()) & on_disk
    values = bt.reduce_results_list(sorted(done), reg=reg)
    assert values == [x * x for x in sorted(done)]
    counts = {"done_at_kill": len(done)}
    todo = bt.find_not_done(reg=reg)
    if len(todo):
        bt.submit_jobs(todo, reg=reg)
    assert bt.wait_for_jobs(reg=reg, timeout=120)
    assert bt.reduce_results_list(reg=reg) == [x * x for x in range(1, n + 1)]
    ran = runs(log_dir)
    assert sorted(ran) == list(range(1, n + 1))
    twice = sorted(x for x, k in ran.items() if k > 1)
    assert len(twice) <= twice_allowed, f"jobs that ran twice: {twice}"
    counts["twice"] = len(twice)
    reg.cluster_functions.close()
    reg.lease.release()
    return counts


def prepare(tmp_path: Path, n: int, sleep: float, trial: int) -> tuple[Path, Path]:
    path, log_dir = tmp_path / f"reg{trial}", tmp_path / f"runs{trial}"
    log_dir.mkdir()
    reg = bt.make_registry(file_dir=path, seed=1, conf_file=None, make_default=False)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(job, x=range(1, n + 1), more_args={"log_dir": str(log_dir), "sleep": sleep}, reg=reg)
    reg.cluster_functions.close()
    reg.lease.release()
    return path, log_dir


# --------------------------------------------------------------- killed master
@pytest.mark.parametrize("phase", ["submit", "sync"])
def test_killed_master_forgets_no_finished_job(tmp_path, phase):
    """SIGKILL the master at a random moment of ``submit_jobs`` (60 unchunked jobs, submission
    blocks while both CPUs are busy) or of ``wait_for_jobs`` (syncing the reports of 4 chunks)."""
    rng = random.Random(7 if phase == "submit" else 11)
    n = 60 if phase == "submit" else 80
    stats = []
    for trial in range(TRIALS):
        path, log_dir = prepare(tmp_path, n, 0.02 if phase == "submit" else 0.05, trial)
        if phase == "submit":
            master = start_master(f"""
                reg = bt.load_registry({str(path)!r}, writeable=True)
                print("loaded", flush=True)
                bt.submit_jobs(); bt.wait_for_jobs()
            """, tmp_path)
            time.sleep(rng.uniform(0.05, 1.2))
        else:
            master = start_master(f"""
                reg = bt.load_registry({str(path)!r}, writeable=True)
                print("loaded", flush=True)
                ids = bt.find_jobs(); ids["chunk"] = bt.chunk(ids["job_id"], n_chunks=4)
                bt.submit_jobs(ids); print("submitted", flush=True); bt.wait_for_jobs()
            """, tmp_path)
            assert master.stdout.readline().strip() == "submitted"
            time.sleep(rng.uniform(0.0, 1.5))
        kill_master(master)
        stats.append(check_registry(path, log_dir, n))
    print(f"\n{phase}: {TRIALS} trials, jobs done when killed: {[s['done_at_kill'] for s in stats]}")


def test_killed_master_during_saves_leaves_old_or_new_state(tmp_path):
    """SIGKILL the master in the middle of a stream of changes (tags, names, exports): the
    registry loads, and each change is there completely or not at all."""
    rng = random.Random(3)
    for trial in range(TRIALS):
        path, log_dir = prepare(tmp_path, 20, 0.0, trial)
        master = start_master(f"""
            reg = bt.load_registry({str(path)!r}, writeable=True)
            print("loaded", flush=True)
            for i in range(100000):
                bt.add_job_tags([i % 20 + 1], f"t{{i}}")
                bt.set_job_names(list(range(1, 21)), [f"n{{i}}"] * 20)
                bt.batch_export({{"blob": bytes(100_000), "step": i}})
        """, tmp_path)
        time.sleep(rng.uniform(0.1, 1.5))
        kill_master(master)
        reg = bt.load_registry(path, writeable=True, make_default=False)
        assert not (path / ".txn").exists()
        tags = sorted(int(t[1:]) for t in bt.get_used_job_tags(reg=reg))
        assert tags == list(range(len(tags))), "a tag call is missing in the middle"
        names = set(bt.get_job_names(reg=reg)["job_name"])
        assert len(names) == 1  # all 20 renamed together or not at all
        name = names.pop()
        k = len(tags)
        assert name in (None, f"n{k - 1}", f"n{k - 2}") or (name is None and k <= 1)
        assert len(bt.find_jobs(reg=reg)) == 20 and bt.get_status(reg=reg).defined == 20
        reg.lease.release()
        reg.cluster_functions.close()


# ------------------------------------------------------------ node-side faults
def first_fast_then_slow(x):
    import time

    if x == 2:
        time.sleep(60)
    return x * x


def test_job_killed_after_writing_its_result_counts_as_done(tmp_path, caplog):
    """The node dies right after a job's result is written, before its status row is flushed:
    the job is done (its result is the evidence), not expired, and is not run again."""
    adopted = 0
    for trial in range(TRIALS):
        reg = bt.make_registry(file_dir=tmp_path / f"r{trial}", seed=1, conf_file=None, make_default=False)
        reg.cluster_functions = bt.make_cluster_functions_multicore(1)
        bt.batch_map(first_fast_then_slow, x=[1, 2], reg=reg)
        bt.submit_jobs(bt.find_jobs(reg=reg).assign(chunk=1), reg=reg)  # one process runs 1, then 2
        wait_until(lambda: reg.store.exists(1), what="job 1's result", poll=0.001)
        pid = int(bt.get_job_status(reg=reg)["batch_id"][0])
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: gone(pid), what="the job process to die")
        caplog.clear()
        with caplog.at_level("INFO", logger="batchtools"):
            assert bt.wait_for_jobs(reg=reg, timeout=30) is False  # job 2 died mid-run: expired
        adopted += "their results exist" in caplog.text
        assert bt.find_done(reg=reg)["job_id"].tolist() == [1]
        assert bt.find_expired(reg=reg)["job_id"].tolist() == [2]
        assert bt.load_result(1, reg=reg) == 1
        reg.cluster_functions.close()
    print(f"\n{TRIALS} trials, {adopted} decided by the result file (the status row was not flushed yet)")
    assert adopted >= TRIALS // 2


def returns_pid(x):
    import os
    import time

    time.sleep(0.4)
    return (x, os.getpid())


def test_fenced_pool_worker_never_replaces_the_accepted_result(tmp_path):
    """A worker paused (SIGSTOP) long enough to be fenced, whose job then re-ran elsewhere, is
    resumed (SIGCONT) and finishes its stale run: the re-run's result stays."""
    for trial in range(max(5, TRIALS // 2)):
        reg = bt.make_registry(file_dir=tmp_path / f"r{trial}", seed=1, conf_file=None)
        reg.cluster_functions = bt.make_cluster_functions_multicore(2)
        bt.batch_map(returns_pid, x=range(4))
        bt.submit_workers(2, heartbeat=0.2, idle_timeout=0)
        stalled_job = running_jobs()[0]
        stalled = bt.get_job_table(stalled_job)["batch_id"].iloc[0]
        os.kill(int(stalled), signal.SIGSTOP)
        try:
            assert bt.wait_for_jobs(timeout=60) is False
            assert bt.find_expired()["job_id"].tolist() == [stalled_job]
            wait_until(lambda: bt.get_workers().set_index("batch_id")["state"][stalled] == "stale",
                       what="the paused worker to be fenced")
            bt.submit_workers(1, ids=[stalled_job], idle_timeout=0)
            assert bt.wait_for_jobs(timeout=60)
            accepted = bt.load_result(stalled_job)
            assert accepted[1] != int(stalled)
        finally:
            os.kill(int(stalled), signal.SIGCONT)
        wid = bt.get_workers().set_index("batch_id")["worker_id"][stalled]
        wait_until(lambda: reg.layout.worker_exit(wid).exists(), what="the resumed worker to end")
        assert bt.load_result(stalled_job) == accepted  # not replaced by the stale run
        assert "declared dead" in reg.layout.log(wid).read_text()
        reg.cluster_functions.close()


def sleepy(s):
    import time

    time.sleep(s)
    return s


def test_fork_server_death_keeps_states_true(mreg):
    bt.batch_map(sleepy, s=[1.5, 1.5, 0.1])
    bt.submit_jobs([1, 2])
    assert sorted(running_jobs()) == [1, 2]
    server = mreg.cluster_functions.processes
    os.kill(server.proc.pid, signal.SIGKILL)
    wait_until(lambda: server.deaths == 1, what="the death to be noticed")
    st = bt.get_status()
    assert st.running == 2 and st.expired == 0  # its children still run
    bt.submit_jobs([3])  # a new server starts; nothing raises
    assert bt.wait_for_jobs(timeout=30)
    assert bt.reduce_results_list() == [1.5, 1.5, 0.1]
    assert len({int(b) for b in bt.get_job_status()["batch_id"]}) == 3  # three different processes


def test_fork_server_child_runs_nothing_without_its_path(reg):
    """A process whose server died before reporting it (so it never got its collection's path)
    exits without running the job, so a spawn that raised never starts a job; given the path
    after its pid, it runs it and reports back."""
    from batchtools.core.persistence.files import write_pickle
    from batchtools.node import forkserver

    bt.batch_map(lambda x: x + 1, x=[1, 2])
    for job_id, handed in ((1, False), (2, True)):
        jc = bt.make_job_collection([job_id])
        path = reg.layout.job_collection(jc.job_hash)
        write_pickle(path, jc)
        r, w = os.pipe()
        report_r, report_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            forkserver.run_collections(r, report_w, [w, report_r])
        os.close(r)
        os.close(report_w)
        if handed:
            os.write(w, f"- {path}\n".encode())
        os.close(w)
        _, status = os.waitpid(pid, 0)
        report = os.read(report_r, 65536).decode()
        os.close(report_r)
        assert os.waitstatus_to_exitcode(status) == 0
        assert reg.layout.result(job_id).exists() is handed
        assert (f"{pid}" in report) is handed  # it said its collection ended (idle or done)


# ------------------------------------------------------------------ racing sessions
RACER = """
import os, sys, time
import batchtools as bt
while not os.path.exists({go!r}):
    time.sleep(0.001)
try:
    reg = bt.load_registry({path!r}, writeable=True)
except bt.LeaseError:
    print("REFUSED"); raise SystemExit(0)
{action}
"""


def race(tmp_path: Path, path: Path, actions: list[str]) -> list[str]:
    """Start one session per action, release them at the same moment, return their outputs."""
    go = tmp_path / f"go-{time.time_ns()}"
    procs = [subprocess.Popen([sys.executable, "-c", RACER.format(go=str(go), path=str(path), action=a)],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for a in actions]
    time.sleep(1.0)  # all imported and waiting
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    return [o[0].strip() for o in outs]


def test_two_writeable_sessions_race(tmp_path):
    """Two sessions start submit_jobs on one registry at once: one submits, the other is refused;
    a third that only polls changes nothing; every job runs exactly once."""
    path, log_dir = prepare(tmp_path, 40, 0.02, 0)
    poller = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time, batchtools as bt
        reg = bt.load_registry({str(path)!r})
        for _ in range(40):
            bt.get_status(reg=reg); time.sleep(0.05)
        print("POLLED")
    """)], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    submit = "bt.submit_jobs(); bt.wait_for_jobs(); print('SUBMITTED')"
    assert sorted(race(tmp_path, path, [submit, submit])) == ["REFUSED", "SUBMITTED"]
    assert poller.communicate(timeout=60)[0].strip() == "POLLED"
    reg = bt.load_registry(path)
    assert bt.get_status(reg=reg).done == 40
    assert set(runs(log_dir).values()) == {1}


def test_two_sessions_tagging_lose_nothing(tmp_path):
    path, _ = prepare(tmp_path, 5, 0.0, 0)
    outs = race(tmp_path, path, [f"bt.add_job_tags([1], 'tag{i}'); print('TAGGED')" for i in range(2)])
    assert sorted(outs) in (["REFUSED", "TAGGED"], ["TAGGED", "TAGGED"])  # refused, or one after the other
    tagged = sum(o == "TAGGED" for o in outs)
    assert len(bt.get_used_job_tags(reg=bt.load_registry(path))) == tagged  # no tag written is lost


# ------------------------------------------------------------------- full disk
def test_full_disk(small_disk, caplog):
    reg = bt.make_registry(file_dir=small_disk / "reg", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(lambda x: x + 1, x=range(50))
    bt.submit_jobs(range(1, 26))
    filler = fill(small_disk)
    before = snapshot(reg.file_dir)
    tables = {k: v.copy() for k, v in reg.tables.items()}
    for action, what in ((lambda: bt.add_job_tags([1], "t"), "tags"), (lambda: bt.reset_jobs([2]), "status"),
                         (lambda: bt.set_job_names([1], ["x"]), "status"),
                         (lambda: bt.batch_export({"big": bytes(10**6)}), "exports")):
        with pytest.raises(OSError, match=r"No space left on device; free some space.*" + what):
            action()
        assert snapshot(reg.file_dir) == before
        assert all(reg.tables[k].equals(v) for k, v in tables.items())
    with pytest.raises(OSError, match="No space left"):
        bt.submit_jobs([30])
    assert all(reg.tables[k].equals(v) for k, v in tables.items())
    # queries answer from memory, warning once
    with caplog.at_level("WARNING", logger="batchtools"):
        for _ in range(3):
            assert bt.get_status().done == 25
            assert bt.reduce_results_list()[:3] == [1, 2, 3]
    assert caplog.text.count("could not save") <= 1
    filler.unlink()
    bt.submit_jobs()
    assert bt.get_status().done == 50


def test_read_only_file_system(small_disk):
    reg = bt.make_registry(file_dir=small_disk / "reg", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(lambda x: x + 1, x=range(5))
    bt.submit_jobs()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        tables = {k: v.copy() for k, v in reg.tables.items()}
        for action in (lambda: bt.reset_jobs([1]), lambda: bt.add_job_tags([1], "t"),
                       lambda: bt.set_job_names([1], ["x"])):
            with pytest.raises(OSError, match="Read-only file system"):
                action()
            assert all(reg.tables[k].equals(v) for k, v in tables.items())
        assert bt.get_status().done == 5
        ro = bt.load_registry(reg.file_dir)
        assert bt.reduce_results_list(reg=ro) == [1, 2, 3, 4, 5]
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)


def blob(x, disk):
    from pathlib import Path

    if x == 10 and not (Path(disk) / "once").exists():  # the disk fills up (another user's file) ...
        (Path(disk) / "once").touch()
        fill(Path(disk))
    if x == 50:  # ... and is freed again
        (Path(disk) / "filler").unlink()
    return bytes([x]) * 30_000


def test_disk_filling_up_while_jobs_append_packed_results(small_disk):
    """The disk fills up while jobs append their results to a pack: the jobs whose result did not
    fit fail saying so, every job reported done has its whole result, and once there is room
    again the failed ones run again and all results are there."""
    reg = bt.make_registry(file_dir=small_disk / "reg", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive(write_logs=False)
    bt.batch_map(blob, x=range(60), more_args={"disk": str(small_disk)})
    bt.submit_jobs()
    errors = bt.get_error_messages()
    assert bt.find_done()["job_id"].tolist() == list(range(1, 11)) + list(range(51, 61))
    assert errors["job_id"].tolist() == list(range(11, 51))
    assert errors["message"].str.contains("No space left").all()
    assert bt.reduce_results_list() == [bytes([x]) * 30_000 for x in list(range(10)) + list(range(50, 60))]
    bt.submit_jobs(bt.find_errors())
    assert bt.get_status().done == 60
    assert bt.reduce_results_list() == [bytes([x]) * 30_000 for x in range(60)]
