"""SSH backend against a real sshd on 127.0.0.1 (``ci/start-sshd.sh``).

With ``BATCHTOOLS_TEST_SSH=1`` (as CI sets it) a missing or unreachable sshd is a
failure, not a skip. The hosts ``bt-node-a`` and ``bt-node-b`` are defined in the
client config that ``BATCHTOOLS_SSH_ARGS`` points to.
"""

import os
import shlex
import subprocess
import sys
import time

import pandas as pd
import pytest

import batchtools as bt
from conftest import require_daemon, running_jobs, wait_until


def sshd_ok() -> str | None:
    args = os.environ.get("BATCHTOOLS_SSH_ARGS")
    if not args:
        return "BATCHTOOLS_SSH_ARGS is not set (run: eval $(bash ci/start-sshd.sh))"
    proc = subprocess.run(["ssh", *shlex.split(args), "bt-node-a", "true"], capture_output=True, text=True,
                          timeout=30)
    return None if proc.returncode == 0 else f"ssh bt-node-a failed: {proc.stderr.strip()}"


@pytest.fixture(scope="module")
def sshd():
    problem = sshd_ok()
    require_daemon(problem and f"sshd is not usable: {problem}", "BATCHTOOLS_TEST_SSH")


@pytest.fixture
def sshreg(tmp_path, sshd):
    workers = [bt.Worker("bt-node-a", ncpus=1, max_load=100), bt.Worker("bt-node-b", ncpus=1, max_load=100)]
    r = bt.make_registry(file_dir=tmp_path / "sshreg", seed=1, conf_file=None)
    r.cluster_functions = bt.make_cluster_functions_ssh(workers)
    r.workers = workers
    yield r
    for w in workers:
        w.close()


@pytest.mark.ssh
def test_two_workers_both_used(sshreg):
    bt.batch_map(lambda x: (x * 2, os.getpid()), x=range(1, 7))
    bt.submit_jobs()
    assert bt.wait_for_jobs()
    assert [r[0] for r in bt.reduce_results_list()] == [2, 4, 6, 8, 10, 12]
    nodes = set(bt.get_job_status()["batch_id"].str.split("#").str[0])
    assert nodes == {"bt-node-a", "bt-node-b"}


@pytest.mark.ssh
def test_kill_over_ssh(sshreg):
    bt.batch_map(lambda s: time.sleep(s), s=[60])
    bt.submit_jobs()
    assert running_jobs(timeout=10) == [1]
    out = bt.kill_jobs()
    assert out["killed"].tolist() == [True]
    assert bt.find_on_system().empty
    assert bt.find_not_submitted()["job_id"].tolist() == [1]


@pytest.mark.ssh
def test_job_survives_ssh_connection_closing(sshreg):
    bt.batch_map(lambda s: time.sleep(s) or "finished", s=[2])
    bt.submit_jobs()
    for w in sshreg.workers:  # end the ssh sessions the job was started from
        w.close()
    cfg = shlex.split(os.environ["BATCHTOOLS_SSH_ARGS"])
    for host in ("bt-node-a", "bt-node-b"):
        subprocess.run(["ssh", *cfg, *bt.backends.ssh.multiplex_args()[2:4],
                        "-O", "exit", host], capture_output=True)
    assert bt.wait_for_jobs(timeout=30)
    assert bt.load_result(1) == "finished"


@pytest.mark.ssh
def test_full_workers_make_submission_wait(sshreg):
    bt.batch_map(lambda s: time.sleep(s) or s, s=[1.0, 1.0, 1.0])
    t0 = time.time()
    bt.submit_jobs()  # 2 slots: the third job waits until one is free
    assert time.time() - t0 >= 0.8
    assert bt.wait_for_jobs()


@pytest.mark.ssh
def test_ssh_bad_input(sshd):
    with pytest.raises(ConnectionError, match="bt-no-such-host"):
        bt.Worker("bt-no-such-host")
    with pytest.raises(RuntimeError, match="no Python"):
        bt.Worker("bt-node-a", python="/nonexistent/python3")


def test_worker_bad_input_local():
    with pytest.raises(ValueError, match="ncpus"):
        bt.Worker("localhost", ncpus=0)
    with pytest.raises(ValueError, match="nodename"):
        bt.Worker("two words")
    with pytest.raises(RuntimeError, match="no Python"):
        bt.Worker("localhost", python="/nonexistent/python3")
    with pytest.raises(ValueError, match="duplicate"):
        bt.make_cluster_functions_ssh([bt.Worker("localhost", ncpus=1), bt.Worker("localhost", ncpus=1)])
    with pytest.raises(TypeError, match="Worker"):
        bt.make_cluster_functions_ssh(["localhost"])


def test_worker_without_batchtools_on_node(tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    with pytest.raises(RuntimeError, match="not installed"):
        bt.Worker("localhost", python=str(bare / "bin" / "python"))


def test_localhost_worker_runs_without_ssh(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    w = bt.Worker("localhost", ncpus=2, max_load=100)
    reg.cluster_functions = bt.make_cluster_functions_ssh([w])
    bt.batch_map(lambda x: x + 1, x=[1, 2, 3])
    bt.submit_jobs()
    assert bt.wait_for_jobs()
    assert bt.reduce_results_list() == [2, 3, 4]
    assert bt.get_job_status()["batch_id"].str.startswith("localhost#").all()
    w.close()


def test_pool_workers_over_ssh(sshreg):
    bt.batch_map(lambda x: (x, __import__("socket").gethostname()), x=range(30))
    bt.submit_workers(2, idle_timeout=0.5)
    assert bt.wait_for_jobs(timeout=120)
    assert [r[0] for r in bt.reduce_results_list()] == list(range(30))
    workers = bt.get_workers()
    assert len(workers) == 2
    wait_until(lambda: set(bt.get_workers()["state"]) == {"exited"}, timeout=30, what="the workers to leave")
    assert set(bt.get_job_table()["batch_id"]) <= set(workers["batch_id"])


@pytest.mark.ssh
def test_ml_benchmark_over_ssh_gives_the_same_scores(tmp_path, sshd, usermod):
    """batchmark over two SSH nodes, with a learner, scorer and loader from the user's own module."""
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    design = bt.benchmark_grid({"iris": load_iris(return_X_y=True), "wine": usermod.load},
                               {"centroid": usermod.Centroid(0.1), "forest": RandomForestClassifier(5)}, 3)
    tables = []
    for name in ("local", "ssh"):
        reg = bt.make_experiment_registry(file_dir=tmp_path / name, seed=5, conf_file=None)
        workers = [bt.Worker("bt-node-a", ncpus=1, max_load=100), bt.Worker("bt-node-b", ncpus=1, max_load=100)]
        reg.cluster_functions = (bt.make_cluster_functions_interactive() if name == "local"
                                 else bt.make_cluster_functions_ssh(workers))
        try:
            bt.batchmark(design, scoring={"hits": usermod.hit_rate})
            bt.submit_jobs()
            assert bt.wait_for_jobs(timeout=120), bt.get_error_messages().to_string()
        finally:
            for w in workers:
                w.close()
        tables.append(bt.reduce_results_batchmark().scores[["task", "learner", "fold", "hits"]])
    assert len(tables[1]) == 12
    pd.testing.assert_frame_equal(tables[0], tables[1])
    assert set(bt.get_job_status()["batch_id"].str.split("#").str[0]) == {"bt-node-a", "bt-node-b"}
