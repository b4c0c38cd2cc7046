import os
import subprocess
import sys
import time

import numpy as np
import pytest

import batchtools as bt
from conftest import wait_until


def square(x):
    return x * x


def test_interactive_in_process(reg):
    bt.batch_map(square, x=range(1, 6))
    out = bt.submit_jobs()
    assert out["chunk"].tolist() == [1, 2, 3, 4, 5]
    assert bt.wait_for_jobs()
    assert bt.reduce_results_list() == [1, 4, 9, 16, 25]
    js = bt.get_job_status()
    assert (js["batch_id"] == "cfInteractive").all()
    assert str(js["submitted"].dtype).startswith("datetime64") and js["submitted"].dt.tz is not None
    assert (js["time_running"] >= np.timedelta64(0)).all()


def test_interactive_external(reg):
    reg.cluster_functions = bt.make_cluster_functions_interactive(external=True)
    bt.batch_map(lambda x: (x, os.getpid()), x=[1, 2])
    bt.submit_jobs()
    res = bt.reduce_results_list()
    assert [r[0] for r in res] == [1, 2]
    assert all(r[1] != os.getpid() for r in res)


def gated(gate: str) -> int:
    """Wait (up to 2 minutes) until the file ``gate`` exists, then return this process's id."""
    import os
    import time
    deadline = time.monotonic() + 120
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)
    return os.getpid()


def test_multicore_runs_in_background_and_status_visible(mreg, tmp_path):
    gate = tmp_path / "gate"
    bt.batch_map(gated, gate=[str(gate)] * 2)
    bt.submit_jobs()  # returns while the jobs wait at the gate: submission does not wait for them
    wait_until(lambda: bt.get_status().running == 2, 60, "both jobs to run")
    st = bt.get_status()
    assert st.started == 2 and st.done == 0
    assert bt.find_running()["job_id"].tolist() == [1, 2]
    gate.touch()
    assert bt.wait_for_jobs()
    pids = bt.reduce_results_list()
    assert len(set(pids)) == 2 and os.getpid() not in pids


def test_a_running_jobs_log_shows_that_it_started(mreg, tmp_path):
    """The node's marker lines are flushed: get_log shows a job running, not an empty file."""
    gate = tmp_path / "gate"
    bt.batch_map(gated, gate=[str(gate)])
    bt.submit_jobs()
    try:
        wait_until(lambda: bt.find_running()["job_id"].tolist() == [1]
                   and "Starting job [batchtools job.id=1]" in "\n".join(bt.get_log(1)), 60, "the start in the log")
    finally:
        gate.touch()
    assert bt.wait_for_jobs()


def test_multicore_chunks_and_ncpus(mreg):
    bt.batch_map(square, x=range(1, 101))
    ids = bt.find_jobs()
    ids["chunk"] = bt.chunk(ids["job_id"], n_chunks=4)
    bt.submit_jobs(ids)
    assert bt.wait_for_jobs()
    assert bt.reduce_results_list() == [x * x for x in range(1, 101)]
    assert bt.get_job_status()["job_hash"].nunique() == 4
    with pytest.raises(ValueError, match="ncpus"):
        bt.make_cluster_functions_multicore(0)


def test_multicore_blocks_when_full(mreg):
    mreg.cluster_functions = bt.make_cluster_functions_multicore(1)
    bt.batch_map(lambda s: time.time(), s=[0, 0, 0])
    bt.batch_map  # noqa: B018
    bt.submit_jobs()
    assert bt.wait_for_jobs()
    starts = bt.get_job_status()["started"]
    assert starts.is_monotonic_increasing


def test_an_idle_fork_server_ends_and_the_next_submission_starts_one(mreg, monkeypatch):
    """A Multicore fork server with no child for idle_timeout seconds ends (it holds the jobs'
    imports); the next submission starts a new one and runs as before."""
    server = mreg.cluster_functions.processes
    bt.batch_map(square, x=[1, 2, 3])
    bt.submit_jobs([1, 2])
    assert bt.wait_for_jobs()
    first = server.proc
    assert first.poll() is None
    with server.cond:
        monkeypatch.setattr(server, "idle_timeout", 0.5)
        server.cond.notify_all()
    wait_until(lambda: first.poll() is not None, 60, "the idle fork server to end")
    assert first.returncode == 0 and server.proc is None
    bt.submit_jobs([3])
    assert bt.wait_for_jobs()
    assert bt.reduce_results_list() == [1, 4, 9]
    assert server.proc is not first and server.deaths == 0  # ended on purpose, not died


def test_kill_jobs(mreg):
    bt.batch_map(lambda s: time.sleep(s), s=[60, 0])
    bt.submit_jobs()
    wait_until(lambda: bt.find_running()["job_id"].tolist() == [1] and bt.find_done()["job_id"].tolist() == [2],
               60, "job 1 to run and job 2 to end")
    killed = bt.kill_jobs()
    assert killed["job_id"].tolist() == [1] and killed["killed"].all()
    bt.wait_for_jobs()
    assert bt.find_not_submitted()["job_id"].tolist() == [1]
    assert bt.find_done()["job_id"].tolist() == [2]


def test_reset_and_resubmit(reg):
    bt.batch_map(lambda x: 1 / x, x=[1, 0, 2])
    bt.submit_jobs()
    assert bt.find_errors()["job_id"].tolist() == [2]
    bt.reset_jobs(2)
    assert bt.find_not_submitted()["job_id"].tolist() == [2]
    assert bt.find_errors().empty
    with pytest.raises(ValueError, match="do not exist"):
        bt.reset_jobs([99])


def test_resubmitting_overwrites_previous_state(reg):
    bt.batch_map(lambda x: print("run", x) or x, x=[1, 2])
    bt.submit_jobs()
    first = bt.get_job_status()["job_hash"].tolist()
    bt.submit_jobs([1])
    assert bt.get_job_status()["job_hash"].tolist()[0] != first[0]
    assert bt.reduce_results_list() == [1, 2]
    log = bt.get_log(1)  # the newest run's part of the shared session log, with its header (as R)
    assert log.count("run 1") == 1 and log[0].startswith("### [bt]: This is batchtools")
    assert sum(line.endswith("[batchtools job.id=1]") for line in log) == 2


def test_test_job_in_process_and_external(reg, capsys):
    def f(x, job):
        import random

        print("hello from", x)
        return x, job.seed, random.random()

    bt.batch_map(f, x=[5])
    res = bt.test_job(1)
    assert res[:2] == (5, 2)
    assert "hello from 5" in capsys.readouterr().out
    assert bt.test_job(1, external=True) == res  # same seed, same random numbers
    assert bt.find_submitted().empty  # test_job changes nothing


def test_test_job_external_error(reg):
    bt.batch_map(lambda x: 1 / x, x=[0])
    with pytest.raises(ZeroDivisionError):
        bt.test_job(1)
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        bt.test_job(1, external=True)


def test_worker_entry_point_and_do_job_collection(reg):
    bt.batch_map(square, x=[3, 4])
    jc = bt.make_job_collection([1])
    from batchtools.core.persistence.files import write_pickle

    path = reg.layout.job_collection(jc.job_hash)
    write_pickle(path, jc)
    proc = subprocess.run([sys.executable, "-m", "batchtools.worker", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    jc2 = bt.make_job_collection([2])
    assert bt.do_job_collection(jc2, output=jc2.log_file) == {"done": 1, "error": 0}
    bt.sync_registry()
    assert (reg.layout.result(1)).exists() and (reg.layout.result(2)).exists()
    assert "Starting job" in open(jc.log_file).read()


def test_a_task_of_a_large_array_collection_reads_only_its_own_job(reg):
    from batchtools.core.contract.collection import PACK_MIN, PackedJobs
    from batchtools.core.persistence.files import read_pickle, write_pickle

    n = PACK_MIN + 200
    bt.batch_map(square, x=range(n))
    jc = bt.make_job_collection()
    jc.array_jobs, jc.array_var = True, "BT_TEST_ARRAY_TASK"
    path = reg.layout.job_collection(jc.job_hash)
    write_pickle(path, jc)
    back = read_pickle(path)
    assert isinstance(back.jobs, PackedJobs) and len(back) == n and back.job_ids == list(range(1, n + 1))
    assert back.jobs[n - 1] == jc.jobs[n - 1] and back.jobs[2:4] == jc.jobs[2:4]
    env = {**os.environ, "BT_TEST_ARRAY_TASK": str(n - 3)}
    proc = subprocess.run([sys.executable, "-m", "batchtools.worker", str(path)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert reg.store.get(n - 3) == square(n - 4)
    assert [p.name for p in reg.layout.dir("results").glob("*.pkl")] == [f"{n - 3}.pkl"]


def test_custom_cluster_functions(reg):
    calls = []

    def submit(r, jc):
        calls.append(jc.job_ids)
        bt.do_job_collection(jc, output=jc.log_file)
        return bt.make_submit_job_result(0, f"b{len(calls)}")

    reg.cluster_functions = bt.make_cluster_functions("Mine", submit)
    bt.batch_map(square, x=[1, 2])
    bt.submit_jobs()
    assert calls == [[1], [2]]
    assert bt.get_job_status()["batch_id"].tolist() == ["b1", "b2"]
    assert bt.reduce_results_list() == [1, 4]


def test_temporary_submit_errors_are_retried_and_fatal_raise(reg):
    attempts = []

    def flaky(r, jc):
        attempts.append(1)
        if len(attempts) < 3:
            return bt.make_submit_job_result(1, msg="Socket timed out")
        bt.do_job_collection(jc, output=jc.log_file)
        return bt.make_submit_job_result(0, "ok")

    reg.cluster_functions = bt.make_cluster_functions("Flaky", flaky)
    bt.batch_map(square, x=[2])
    bt.submit_jobs(sleep=0)
    assert len(attempts) == 3 and bt.reduce_results_list() == [4]
    reg.cluster_functions = bt.make_cluster_functions(
        "Broken", lambda r, jc: bt.make_submit_job_result(101, msg="invalid partition"))
    bt.reset_jobs([1])
    with pytest.raises(bt.SubmitError, match="invalid partition"):
        bt.submit_jobs()
    assert bt.find_submitted().empty


def test_resources(reg):
    reg.default_resources = {"walltime": 100, "omp_threads": 2}

    def f(x, job):
        return job.resources, os.environ.get("OMP_NUM_THREADS"), os.environ.get("OPENBLAS_NUM_THREADS")

    bt.batch_map(f, x=[1, 2])
    ids = bt.find_jobs()
    ids["memory"] = [512, 1024]
    bt.submit_jobs(ids, resources={"blas_threads": 1})
    r1, r2 = bt.reduce_results_list()
    assert r1[0] == {"walltime": 100, "omp_threads": 2, "blas_threads": 1, "memory": 512}
    assert r2[0]["memory"] == 1024
    assert r1[1:] == ("2", "1")
    res = bt.get_job_resources()
    assert res["resources"].tolist()[1]["memory"] == 1024
    assert os.environ.get("OMP_NUM_THREADS") is None or os.environ.get("OMP_NUM_THREADS") != "2"
    with pytest.raises(ValueError, match="walltime"):
        bt.submit_jobs(resources={"walltime": -1})
    with pytest.raises(ValueError, match="inner_backend"):
        bt.submit_jobs(resources={"inner_backend": "dask"})


def test_measure_memory(mreg):
    def alloc(n):
        block = bytearray(n * 2**20)
        time.sleep(0.1)
        return len(block)

    bt.batch_map(alloc, n=[50])
    bt.submit_jobs(resources={"measure_memory": True})
    assert bt.wait_for_jobs()
    mem = bt.get_job_status()["mem_used"].iloc[0]
    assert mem > 50
    assert any("Memory used" in line for line in bt.get_log(1))


def test_inner_backend_joblib(reg):
    def f(x):
        import joblib

        return joblib.parallel_config and joblib.Parallel()(joblib.delayed(abs)(-i) for i in range(3)), \
            joblib.parallel.get_active_backend()[1]

    bt.batch_map(f, x=[1])
    bt.submit_jobs(resources={"inner_backend": "threading", "ncpus": 2})
    values, n_jobs = bt.load_result(1)
    assert values == [0, 1, 2] and n_jobs == 2
    assert any("Inner parallelization: joblib backend 'threading' with n_jobs=2" in line
               for line in (reg.layout.dir("logs") / bt.get_job_status()["log_file"][0]).read_text().splitlines())


def test_debug_mode_logs_commands(tmp_path):
    code = (
        "import batchtools as bt\n"
        f"reg = bt.make_registry(file_dir={str(tmp_path / 'r')!r}, conf_file=None)\n"
        "reg.cluster_functions = bt.make_cluster_functions_interactive()\n"
        "bt.batch_map(abs, [-1]); bt.submit_jobs(); bt.run_os_command('true')\n"
    )
    env = {**os.environ, "BATCHTOOLS_DEBUG": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "OS command: true" in proc.stderr
    assert "wrote" in proc.stderr and "sync" in proc.stderr
