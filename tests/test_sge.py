"""The SGE backend against a real single-node Grid Engine (``ci/start-sge.sh``).

With ``BATCHTOOLS_TEST_SGE=1`` (as CI sets it) a missing Grid Engine is a failure, not a skip.
"""

import os
import shutil
import subprocess

import pytest

import batchtools as bt
from conftest import require_daemon, running_jobs, scheduler_registry

pytestmark = pytest.mark.sge


def sge_problem() -> str | None:
    if not shutil.which("qstat") or not os.environ.get("SGE_ROOT"):
        return "Grid Engine is not set up (run: eval \"$(sudo bash ci/start-sge.sh)\")"
    proc = subprocess.run(["qstat", "-f"], capture_output=True, text=True)
    queues = [line.split() for line in proc.stdout.splitlines() if "@" in line.split(" ")[0]]
    if proc.returncode != 0 or not any(len(q) == 5 for q in queues):  # a 6th column is an error state
        return f"no usable Grid Engine queue: {proc.stdout.strip()} {proc.stderr.strip()}"
    return None


@pytest.fixture(scope="module")
def sge():
    require_daemon(sge_problem(), "BATCHTOOLS_TEST_SGE")


@pytest.fixture
def gereg(tmp_path, sge):
    cf = bt.make_cluster_functions_sge(scheduler_latency=0, fs_latency=5)
    yield from scheduler_registry(tmp_path / "sgereg", cf)


def test_sge_single_jobs_and_chunks(gereg):
    bt.batch_map(lambda x: (x * x, os.environ.get("JOB_ID")), x=range(1, 7))
    bt.submit_jobs(bt.find_jobs(ids=[1, 2]), resources={"walltime": 300})
    bt.submit_jobs(bt.find_jobs(ids=[3, 4, 5, 6]).assign(chunk=[1, 1, 2, 2]))
    assert bt.wait_for_jobs(timeout=180)
    res = bt.reduce_results_list()
    assert [r[0] for r in res] == [x * x for x in range(1, 7)]
    st = bt.get_job_status()
    assert st["batch_id"].tolist() == [r[1] for r in res]  # the batch id is SGE's JOB_ID
    assert st["batch_id"][2] == st["batch_id"][3] != st["batch_id"][4]
    assert "### [bt]: Starting job [batchtools job.id=4]" in bt.get_log(4)


def test_sge_kill_running_job(gereg):
    bt.batch_map(lambda s: __import__("time").sleep(s), s=[300])
    bt.submit_jobs()
    assert running_jobs(timeout=60) == [1]
    assert bt.kill_jobs()["killed"].tolist() == [True]
    assert bt.find_on_system().empty
    assert bt.find_not_submitted()["job_id"].tolist() == [1]


def test_sge_pool_workers(gereg):
    bt.batch_map(lambda x: (x + 1, os.environ.get("JOB_ID")), x=range(30))
    bt.submit_workers(2, idle_timeout=1)
    assert bt.wait_for_jobs(timeout=180)
    res = bt.reduce_results_list()
    assert [r[0] for r in res] == list(range(1, 31))
    assert {r[1] for r in res} <= set(bt.get_workers()["batch_id"])


def test_array_jobs_are_refused_before_anything_is_written(gereg):
    from conftest import snapshot

    bt.batch_map(lambda x: x, x=[1, 2])
    before = snapshot(gereg.file_dir)
    with pytest.raises(ValueError, match="chunks_as_arrayjobs is not supported by the SGE backend"):
        bt.submit_jobs(bt.find_jobs().assign(chunk=1), resources={"chunks_as_arrayjobs": True})
    assert snapshot(gereg.file_dir) == before
