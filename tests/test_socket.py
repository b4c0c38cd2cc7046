import os
import signal
import time

import pytest

import batchtools as bt
from conftest import wait_until


@pytest.fixture
def sreg(tmp_path):
    r = bt.make_registry(file_dir=tmp_path / "sreg", seed=1, conf_file=None)
    r.cluster_functions = bt.make_cluster_functions_socket(2)
    yield r
    r.cluster_functions.close()


def test_socket_runs_jobs_in_persistent_workers(sreg):
    bt.batch_map(lambda x: (x * x, os.getpid()), x=range(1, 21))
    bt.submit_jobs()
    assert bt.wait_for_jobs()
    res = bt.reduce_results_list()
    assert [r[0] for r in res] == [x * x for x in range(1, 21)]
    pids = {r[1] for r in res}
    assert len(pids) == 2 and os.getpid() not in pids  # 20 jobs, 2 processes: no interpreter per job


def test_socket_non_blocking_with_status(sreg, tmp_path):
    gate = tmp_path / "gate"

    def gated(gate):
        deadline = time.monotonic() + 120
        while not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.02)
        return gate

    bt.batch_map(gated, gate=[str(gate)] * 2)
    bt.submit_jobs()  # returns while the jobs wait at the gate
    wait_until(lambda: bt.get_status().running == 2, 60, "both jobs to run")
    st = bt.get_status()
    assert st.started == 2 and st.done == 0
    gate.touch()
    assert bt.wait_for_jobs()


def test_socket_crashed_worker_is_expired_not_a_hang(sreg):
    bt.batch_map(lambda s: time.sleep(s), s=[30])
    bt.submit_jobs()
    wait_until(lambda: bt.find_running()["job_id"].tolist() == [1], 60, "the job to run")
    for w in sreg.cluster_functions.processes.procs:
        os.kill(w.proc.pid, signal.SIGKILL)
    t0 = time.time()
    assert bt.wait_for_jobs(timeout=90) is False
    assert time.time() - t0 < 60  # ended by the expiry, not by the timeout (bounded for a busy machine)
    assert bt.find_expired()["job_id"].tolist() == [1]
    bt.batch_map  # noqa: B018
    # the pool replaces dead workers: resubmitting completes the registry
    bt.reset_jobs([1])
    sreg.cluster_functions.close()


def test_socket_kill_and_resources(sreg):
    def f(s):
        time.sleep(s)
        return os.environ.get("OMP_NUM_THREADS")

    bt.batch_map(f, s=[60, 0])
    bt.submit_jobs(resources={"omp_threads": 3, "measure_memory": True})
    wait_until(lambda: bt.find_running()["job_id"].tolist() == [1] and bt.find_done()["job_id"].tolist() == [2],
               60, "job 1 to run and job 2 to end")
    assert bt.kill_jobs()["job_id"].tolist() == [1]
    assert bt.wait_for_jobs(ids=[2])
    assert bt.load_result(2) == "3"
    assert bt.get_job_status(2)["mem_used"].iloc[0] > 0
    assert bt.find_not_submitted()["job_id"].tolist() == [1]
    with pytest.raises(ValueError, match="ncpus"):
        bt.make_cluster_functions_socket(0)


def test_pool_workers_on_socket_backend(sreg):
    bt.batch_map(lambda x: (x * x, os.getpid()), x=range(40))
    bt.submit_workers(2, idle_timeout=0.2)
    assert bt.wait_for_jobs(timeout=60)
    res = bt.reduce_results_list()
    assert [r[0] for r in res] == [x * x for x in range(40)]
    # workers leave once their idle_timeout has passed, shortly after the last job
    wait_until(lambda: set(bt.get_workers()["state"]) == {"exited"}, timeout=30, what="the workers to leave")
    # the socket processes stay usable for ordinary jobs afterwards
    reg2 = bt.make_registry(file_dir=None, seed=1, conf_file=None, make_default=False)
    reg2.cluster_functions = sreg.cluster_functions
    bt.batch_map(lambda x: x, x=[1, 2], reg=reg2)
    bt.submit_jobs(reg=reg2)
    assert bt.wait_for_jobs(reg=reg2) and bt.reduce_results_list(reg=reg2) == [1, 2]
