"""Trust, round 2 (issue 24): sessions, engines and definitions. A forced take-over mid-submit
starts no job twice, a parameter that cannot be read back is refused before anything is written,
a read-only session judges pool workers by the file system and not by its own clock, and a
problem's cached instances go with the problem. (The Dask worker killed mid-task: test_dask.py.)"""

import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import cloudpickle
import numpy as np
import pandas as pd
import psutil
import pytest

import batchtools as bt
from batchtools.core.persistence import lease as lease_mod
from conftest import snapshot, wait_until
from test_faults import check_registry, job, prepare, runs, start_master


def run_script(code: str, cwd, timeout: float = 120) -> str:
    """Run ``code`` in a fresh interpreter (another session), with batchtools imported as bt; its output."""
    proc = subprocess.run([sys.executable, "-c", "import batchtools as bt\n" + textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"script failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


# ---------------------------------------------------------- problems and their cached instances
def old_or_new(data, job):
    return data


def test_removing_and_adding_a_problem_again_drops_its_cached_instances(tmp_path):
    """R batchtools' test_addProblem_removeProblem, ported: re-adding a problem with cache=True
    after a run must not hand the new jobs the old definition's instances."""
    reg = bt.make_experiment_registry(file_dir=tmp_path / "e", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.add_problem("p", data="OLD", fun=old_or_new, seed=1, cache=True)
    bt.add_algorithm("a")
    bt.add_experiments(repls=2)
    bt.submit_jobs()
    assert bt.reduce_results_list() == ["OLD", "OLD"]
    assert list(reg.layout.problem_cache("p").rglob("*.pkl"))

    bt.remove_problems("p")
    assert not reg.layout.problem_cache("p").exists()
    bt.add_problem("p", data="NEW", fun=old_or_new, seed=1, cache=True)
    bt.add_experiments(repls=2)
    bt.submit_jobs()
    assert bt.reduce_results_list() == ["NEW", "NEW"]

    # overwritten without removing: the jobs of the new definition, old ones resubmitted too, see it
    bt.add_problem("p", data="NEWER", fun=old_or_new, seed=1, cache=True)
    bt.add_experiments(repls=3)
    bt.reset_jobs(bt.find_done())
    bt.submit_jobs()
    assert bt.reduce_results_list() == ["NEWER"] * 3


def test_an_instance_a_late_node_caches_for_an_old_definition_is_never_read(tmp_path):
    """A job of the old definition still running when the problem is overwritten writes its
    instance after the cache was cleared: it lands under the old definition's version."""
    reg = bt.make_experiment_registry(file_dir=tmp_path / "e", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    old = bt.add_problem("p", data="OLD", fun=old_or_new, seed=1, cache=True)
    bt.add_algorithm("a")
    bt.add_experiments()
    new = bt.add_problem("p", data="NEW", fun=old_or_new, seed=1, cache=True)
    assert old.version != new.version
    late = reg.layout.instance_cache("p", {}, 1, old.version)  # what the late node writes
    late.parent.mkdir(parents=True)
    late.write_bytes(pickle.dumps("OLD"))
    bt.submit_jobs()
    assert bt.reduce_results_list() == ["NEW"]
    assert reg.layout.instance_cache("p", {}, 1, new.version).exists()


def test_a_problem_reloaded_within_the_clock_granularity_is_read_again(tmp_path):
    """The node's per-process cache of problems (Interactive: the master's own process) tells a
    re-added problem of the same size apart even within the same file timestamp."""
    from batchtools.node.session import load_cached

    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps("OLD"))
    st = path.stat()
    assert load_cached(path) == "OLD"
    tmp = tmp_path / "p.tmp"
    tmp.write_bytes(pickle.dumps("NEW"))
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    tmp.replace(path)
    assert load_cached(path) == "NEW"


def test_old_registries_keep_reading_instances_cached_without_a_version(tmp_path):
    """A problem pickled before versions existed unpickles with version "" and reads its cache
    where it was written (directly in the problem's folder)."""
    from batchtools.node.experiment import Problem

    reg = bt.make_experiment_registry(file_dir=tmp_path / "e", seed=1, conf_file=None)
    old = Problem("p", seed=1, cache=True)
    del old.__dict__["version"]  # as an older version of batchtools pickled it
    old = pickle.loads(pickle.dumps(old))
    assert old.version == ""
    assert reg.layout.instance_cache("p", {"n": 1}, 2, old.version).parent == reg.layout.problem_cache("p")


# ---------------------------------------------------------- values that pickle but cannot be read back
def _cannot_rebuild():
    raise RuntimeError("cannot rebuild")


class Unreadable:
    """Pickles fine; unpickling it raises (a broken __reduce__, as some C-extension objects have)."""

    def __reduce__(self):
        return (_cannot_rebuild, ())


def test_batch_map_refuses_a_value_that_cannot_be_read_back_naming_argument_and_job(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    before = snapshot(reg.file_dir)
    with pytest.raises(TypeError, match=r"x: the value of job 2 \(Unreadable\) can be pickled but not read back "
                                        r"\(RuntimeError: cannot rebuild\)"):
        bt.batch_map(lambda x, y: x, x=[1, Unreadable(), 3], y=["a", "b", "c"])
    with pytest.raises(TypeError, match=r"more_args: can be pickled but not read back"):
        bt.batch_map(lambda x, k: x, x=[1, 2], more_args={"k": Unreadable()})
    with pytest.raises(TypeError, match=r"x: the value of job 3 \(list\) cannot be stored"):
        bt.batch_map(lambda x: x, x=[[1], [2], [__import__("threading").Lock()]])
    assert snapshot(reg.file_dir) == before  # nothing written
    assert len(reg.status) == 0
    # what can be read back (containers, the string "__main__", NumPy scalars) is accepted, and reloads
    bt.batch_map(lambda x, y: x, x=[(1, 2), "__main__", np.float32(3)], y=[{"a": [1]}, None, b"z"])
    again = bt.load_registry(reg.file_dir)
    assert again.defs["x"].tolist() == [(1, 2), "__main__", np.float32(3)]


def test_add_experiments_refuses_a_design_value_that_cannot_be_read_back(tmp_path):
    reg = bt.make_experiment_registry(file_dir=tmp_path / "e", seed=1, conf_file=None)
    bt.add_problem("p", fun=lambda data, job, n: n)
    bt.add_algorithm("a", fun=lambda instance, k: instance * k)
    before = snapshot(reg.file_dir)
    with pytest.raises(TypeError, match=r"algo_designs\['a'\]: parameter 'k' of design row 2 \(Unreadable\) "
                                        r"can be pickled but not read back"):
        bt.add_experiments({"p": pd.DataFrame({"n": [1, 2]})}, {"a": [{"k": 1}, {"k": Unreadable()}]})
    assert snapshot(reg.file_dir) == before
    assert len(reg.status) == 0 and len(reg.tables["designs"]) == 0
    assert len(bt.add_experiments({"p": pd.DataFrame({"n": [1, 2]})}, {"a": [{"k": 1}, {"k": (2, 3)}]})) == 4


def test_a_value_of_a_class_in_the_users_script_is_refused(tmp_path):
    """Such a value pickles and reads back in the script's own process, but no other session (a
    reload, the command line) can read the registry's definitions: refused before anything is written."""
    out = run_script(f"""
        import dataclasses, os
        @dataclasses.dataclass
        class Config:
            k: int
        reg = bt.make_registry(file_dir={str(tmp_path / "r")!r}, seed=1, conf_file=None)
        before = sorted(os.listdir(reg.file_dir))
        try:
            bt.batch_map(lambda c: c.k, c=[Config(1), Config(2)])
        except TypeError as e:
            print("REFUSED", e)
        print("UNCHANGED", sorted(os.listdir(reg.file_dir)) == before and len(reg.status) == 0)
        bt.batch_map(lambda k: k, k=[dataclasses.astuple(Config(1))[0]])  # its plain values are fine
    """, tmp_path)
    assert "REFUSED c: the value of job 1 (Config) refers to __main__.Config, defined in your script" in out
    assert "UNCHANGED True" in out
    assert bt.load_registry(tmp_path / "r").defs["k"].tolist() == [1]


# ---------------------------------------------------------- a forced take-over while the holder submits
TAKEOVER_TRIALS = int(os.environ.get("BATCHTOOLS_TAKEOVER_TRIALS", "3"))


def test_forced_take_over_mid_submit_runs_no_job_twice(tmp_path):
    """Session A submits 300 single jobs on Multicore(2) (each hand-over waits for a free CPU);
    meanwhile this session takes the lease with force=True and submits what A had not. A stops
    before its next hand-over, saying who took the lease; no job A handed over is submitted again
    (at most those running at take-over could run twice, and none do)."""
    n = 300
    report = []
    for trial in range(TAKEOVER_TRIALS):
        path, log_dir = prepare(tmp_path, n, 0.02, trial)
        holder = start_master(f"""
            reg = bt.load_registry({str(path)!r}, writeable=True)
            reg.cluster_functions = bt.make_cluster_functions_multicore(2)
            print("loaded", flush=True)
            try:
                bt.submit_jobs()
                print("FINISHED", flush=True)
            except bt.LeaseError as e:
                print("STOPPED", e, flush=True)
        """, tmp_path, stderr=subprocess.PIPE)
        wait_until(lambda: len(runs(log_dir)) >= 20 + 20 * trial, 120, "the holder's first jobs")
        ours = bt.load_registry(path, writeable=True, force=True, make_default=False)
        ours.cluster_functions = bt.make_cluster_functions_multicore(2)
        out, err = holder.communicate(timeout=120)
        assert "STOPPED submit_jobs stopped after handing" in out, out + err
        assert f"the lease was taken by pid {os.getpid()} on host" in out and "read-only" in out
        assert "was loaded read-only" not in out + err
        handed = int(out.split("after handing ")[1].split()[0])
        # the jobs A handed over are A's (running or done, whatever this session's view); the rest are ours
        assert len(bt.find_submitted(reg=ours)) >= handed - 2
        bt.submit_jobs(reg=ours)
        bt.wait_for_jobs(reg=ours, timeout=180)
        psutil.wait_procs([p for p in psutil.process_iter() if _runs_in(p, path)], timeout=60)
        ours.cluster_functions.close()
        ours.lease.release()
        # a chunk A was handing over at take-over and never started is submitted again there
        report.append((handed, check_registry(path, log_dir, n, twice_allowed=2)["twice"]))
    print(f"\nforced take-over: {TAKEOVER_TRIALS} trials, (jobs A handed over, jobs run twice): {report}")


def _runs_in(proc, path) -> bool:
    """Whether ``proc`` is a job process of the registry at ``path`` (writes into its logs)."""
    try:
        return any(f.path.startswith(str(path / "logs")) for f in proc.open_files())
    except (psutil.Error, OSError):
        return False


HOLD = """
import batchtools as bt, sys, time
bt.load_registry(sys.argv[1], writeable=True, force=True)
print("holding", flush=True)
time.sleep(120)
"""


def take_over_at(x, at, path, log_dir):
    """A job that, when it is job ``at``, has another process take the registry's lease (force=True)
    and hold it; returns that process's pid."""
    import os
    import subprocess
    import sys

    open(os.path.join(log_dir, f"{x}.run"), "a").close()
    if x == at:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, path], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "holding"
        return proc.pid
    return x


def test_a_session_stops_submitting_the_moment_it_lost_its_lease(tmp_path):
    """Interactive runs each job in submit_jobs: job 3 has another process take the lease. Job 4
    is never started, and the error says who took the lease, not that the registry was loaded
    read-only; later calls say the same."""
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    log_dir = tmp_path / "runs"
    log_dir.mkdir()
    bt.batch_map(take_over_at, x=range(1, 11), more_args={"at": 3, "path": str(reg.file_dir), "log_dir": str(log_dir)})
    with pytest.raises(bt.LeaseError, match=r"submit_jobs stopped after handing 3 of 10 job\(s\) to the backend: "
                                            r"Cannot submit jobs: this session lost the writeable lease of .*: the "
                                            r"lease was taken by pid \d+ on host .*the other 7 were not submitted") as e:
        bt.submit_jobs()
    holder = int(str(e.value).split("the lease was taken by pid ")[1].split()[0])
    assert holder != os.getpid() and psutil.pid_exists(holder)
    assert sorted(runs(log_dir)) == [1, 2, 3]
    assert not reg.writeable
    for call in (bt.submit_jobs, lambda: bt.add_job_tags([1], "x"), lambda: bt.reset_jobs([1])):
        with pytest.raises(bt.LeaseError, match="the lease was taken by pid") as e:
            call()
        assert "loaded read-only" not in str(e.value)
    assert bt.get_status().defined == 10  # queries still work
    os.kill(holder, signal.SIGKILL)
    os.waitpid(holder, 0)  # it is a child of this process (job 3 ran in it)


def test_the_lease_check_is_one_stat_and_never_touches_a_lease_it_lost(tmp_path, monkeypatch):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    lease = reg.lease
    reads = []
    real = lease_mod.read_lease
    monkeypatch.setattr(lease_mod, "read_lease", lambda d: reads.append(d) or real(d))
    monkeypatch.setattr(lease_mod, "REREAD", 3600.0)
    for _ in range(100):
        reg.assert_writeable("submit jobs")
    assert reads == []  # the lease file is not read while this session holds it: one stat each
    monkeypatch.setattr(lease_mod, "REREAD", 0.0)
    reg.assert_writeable("submit jobs")
    assert len(reads) == 1  # but read again every REREAD seconds (an NFS client may cache a stat's answer)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(reg.file_dir)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    theirs = (tmp_path / "r" / lease_mod.FILE).stat().st_mtime_ns
    lease.beat()
    assert (tmp_path / "r" / lease_mod.FILE).stat().st_mtime_ns == theirs
    with pytest.raises(bt.LeaseError, match=f"the lease was taken by pid {holder.pid}"):
        reg.assert_writeable("submit jobs")
    holder.kill()
    holder.wait()


# ---------------------------------------------------------- a reader whose clock is off judges pool workers
SKEWED = """
import time
_real = time.time
time.time = lambda: _real() + {skew}  # this machine's clock is {skew} s off
import batchtools as bt
"""


def sleeper(s):
    import time

    time.sleep(s)
    return s


def test_a_read_only_session_judges_pool_workers_by_the_file_system_not_its_clock(tmp_path):
    """Two pool workers run a long job each (heartbeat 0.5 s). A read-only session whose clock is
    5 minutes ahead shows them running, not expired. One worker is paused: a read-only session
    whose clock is 5 minutes behind still sees its heartbeat stop (by the other worker's newer
    heartbeats, and by watching it not change) and its job expire; the other job keeps running."""
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(sleeper, s=[60, 60])
    bt.submit_workers(2, heartbeat=0.5)
    wait_until(lambda: len(bt.find_running()) == 2, 60, "both jobs running")
    ahead = run_script(SKEWED.format(skew=300) + textwrap.dedent(f"""
        reg = bt.load_registry({str(reg.file_dir)!r})
        assert not reg.writeable
        print("RUNNING", bt.find_running()["job_id"].tolist(), "EXPIRED", bt.find_expired()["job_id"].tolist())
    """), tmp_path)
    assert "RUNNING [1, 2] EXPIRED []" in ahead
    table = bt.get_job_table()
    paused_job = 1
    pid = int(table.loc[table["job_id"] == paused_job, "batch_id"].iloc[0])  # Multicore: the worker's pid
    os.kill(pid, signal.SIGSTOP)
    try:
        behind = run_script(SKEWED.format(skew=-300) + textwrap.dedent(f"""
            import time
            reg = bt.load_registry({str(reg.file_dir)!r})
            t0 = time.monotonic()
            while bt.find_expired().empty and time.monotonic() - t0 < 60:
                time.sleep(0.2)
            print("EXPIRED", bt.find_expired()["job_id"].tolist(), "RUNNING", bt.find_running()["job_id"].tolist())
        """), tmp_path)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert f"EXPIRED [{paused_job}] RUNNING [{3 - paused_job}]" in behind
    bt.kill_jobs()


def test_a_read_only_session_sees_a_stopped_heartbeat_by_watching_it(tmp_path):
    """No other file changes (one worker, paused; no master): only watching the heartbeat not change
    tells; the first look, which cannot know, says running rather than expired."""
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(1)
    bt.batch_map(sleeper, s=[60])
    bt.submit_workers(1, heartbeat=0.5)
    wait_until(lambda: len(bt.find_running()) == 1, 60, "the job running")
    pid = int(bt.get_job_table()["batch_id"].iloc[0])
    reg.lease.release()  # no master: nothing else touches a file of the registry
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(3)  # the heartbeat is stale by now (3 x 0.5 s + 1 s), by any clock
        out = run_script(SKEWED.format(skew=-300) + textwrap.dedent(f"""
            import time
            reg = bt.load_registry({str(reg.file_dir)!r})
            print("FIRST", bt.find_running()["job_id"].tolist(), bt.find_expired()["job_id"].tolist())
            t0 = time.monotonic()
            while bt.find_expired().empty and time.monotonic() - t0 < 60:
                time.sleep(0.2)
            print("WATCHED", round(time.monotonic() - t0, 1), bt.find_expired()["job_id"].tolist())
        """), tmp_path)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert "FIRST [1] []" in out and "WATCHED" in out and out.strip().endswith("[1]"), out
    watched = float(out.split("WATCHED ")[1].split()[0])
    assert 2.5 <= watched < 60
    bt.kill_jobs(reg=bt.load_registry(reg.file_dir, writeable=True))


# ---------------------------------------------------------- a collection an engine runs again
def test_a_collection_run_again_while_its_first_run_lives_waits_for_it(tmp_path):
    """The engine runs a task again while its first run's process still lives (the worker was
    declared dead, not killed): the second run waits for the first (a lock on the collection's
    log), then runs only what the first did not finish. No Dask needed: two node processes."""
    from batchtools.node.node import RERUN_ENV

    log_dir = tmp_path / "runs"
    log_dir.mkdir()
    bt.make_registry(file_dir=tmp_path / "reg", seed=1, conf_file=None)
    bt.batch_map(job, x=range(1, 5), more_args={"log_dir": str(log_dir), "sleep": 0.5})
    jc = bt.make_job_collection([1, 2, 3, 4])
    path = tmp_path / f"{jc.job_hash}.pkl"
    path.write_bytes(cloudpickle.dumps(jc))
    env = {**os.environ, RERUN_ENV: "1"}
    cmd = [sys.executable, "-m", "batchtools.worker", str(path)]
    first = subprocess.Popen(cmd, env=env)
    wait_until(lambda: (log_dir / "1.run").exists(), 60, "the first run's first job")
    second = subprocess.Popen(cmd, env=env)
    assert first.wait(timeout=60) == 0 and second.wait(timeout=60) == 0
    assert runs(log_dir) == {1: 1, 2: 1, 3: 1, 4: 1}
    log = open(jc.log_file).read()
    assert "An earlier run of this collection is still going on" in log
    assert log.count("finished in an earlier run of this collection") == 4
