"""The HyperQueue backend against a real HQ server with real workers (the PyPI ``hyperqueue``
package embeds both: ``hyperqueue.LocalCluster`` starts them inside this process).

With ``BATCHTOOLS_TEST_HQ=1`` (as CI sets it) a missing or broken hyperqueue is a failure, not a skip.
"""

import datetime
import os
import time

import pytest

import batchtools as bt
from conftest import cancel_own_jobs, require_daemon, snapshot, wait_until

pytestmark = pytest.mark.hyperqueue


@pytest.fixture(scope="module")
def hq_cluster(tmp_path_factory):
    try:
        from hyperqueue import LocalCluster
        from hyperqueue.cluster import WorkerConfig
    except ImportError as e:
        require_daemon(f"hyperqueue is not installed ({e}); make install installs the engines extra",
                       "BATCHTOOLS_TEST_HQ")
    try:
        cluster = LocalCluster(server_dir=str(tmp_path_factory.mktemp("hq-server")),
                               worker_config=WorkerConfig(cores=2))
    except Exception as e:
        require_daemon(f"hyperqueue.LocalCluster did not start: {type(e).__name__}: {e}", "BATCHTOOLS_TEST_HQ")
    yield cluster
    cluster.stop()


@pytest.fixture
def hreg(tmp_path, hq_cluster):
    r = bt.make_registry(file_dir=tmp_path / "hqreg", seed=1, conf_file=None)
    r.cluster_functions = bt.make_cluster_functions_hyperqueue(hq_cluster)
    yield r
    cancel_own_jobs(r)
    wait_until(lambda: bt.find_on_system(reg=r).empty, 60, "the registry's HQ tasks to end")


def test_single_jobs_chunks_and_arrays(hreg):
    bt.batch_map(lambda x: (x * x, os.environ.get("HQ_JOB_ID"), os.environ.get("HQ_TASK_ID")), x=range(1, 10))
    bt.submit_jobs(bt.find_jobs(ids=[1, 2]))
    bt.submit_jobs(bt.find_jobs(ids=[3, 4, 5, 6]).assign(chunk=[1, 1, 2, 2]))
    bt.submit_jobs(bt.find_jobs(ids=[7, 8, 9]).assign(chunk=1), resources={"chunks_as_arrayjobs": True})
    assert bt.wait_for_jobs(timeout=120)
    res = bt.reduce_results_list()
    assert [r[0] for r in res] == [x * x for x in range(1, 10)]
    st = bt.get_job_status()
    batch = st["batch_id"].tolist()
    assert batch[0] != batch[1] and batch[2] == batch[3] != batch[4] == batch[5]
    # the batch id is HQ's job id (and task id for an array), at this server
    hq_job, _, uid = batch[6].rpartition("@")
    base = hq_job.split(".")[0]
    assert batch[6:] == [f"{base}.0@{uid}", f"{base}.1@{uid}", f"{base}.2@{uid}"]
    assert [r[1] for r in res[6:]] == [base] * 3 and [r[2] for r in res[6:]] == ["0", "1", "2"]
    assert res[0][1] == batch[0].split("@")[0]  # one HQ job per collection
    assert "### [bt]: Starting job [batchtools job.id=8]" in bt.get_log(8)
    assert st["log_file"][7].endswith("-2.log")


def test_resources_become_the_task_request(hreg):
    bt.batch_map(lambda s: (os.environ["HQ_CPUS"], time.sleep(s)), s=[0, 30])
    bt.submit_jobs(1, resources={"ncpus": 2})
    bt.submit_jobs(2, resources={"walltime": 2})
    assert bt.wait_for_jobs(timeout=90) is False
    assert len(bt.load_result(1)[0].split(",")) == 2  # HQ gave the task both cores
    err = bt.get_job_status(2)["error"][0]
    assert "SIGTERM" in err  # the walltime ended it
    from batchtools.backends.hyperqueue import make_request

    rq = make_request({"ncpus": 4, "gpus": 2, "walltime": 90}, "gpus/nvidia")
    assert rq.resources == {"gpus/nvidia": 2, "cpus": 4}
    assert rq.min_time == datetime.timedelta(seconds=90)
    assert make_request({}, "gpus/nvidia") is None


def test_listing_and_kill_running_and_queued(hreg):
    bt.batch_map(lambda s: time.sleep(s), s=[300, 300, 300])
    bt.submit_jobs()  # three tasks, two cores: two run, one waits in HQ
    wait_until(lambda: len(bt.find_running()) == 2, 60, "two running jobs")
    assert len(bt.find_queued()) == 1
    t0 = time.time()
    out = bt.kill_jobs()
    assert out["killed"].tolist() == [True, True, True]
    assert time.time() - t0 < 30
    assert bt.find_on_system().empty
    assert bt.find_not_submitted()["job_id"].tolist() == [1, 2, 3]


def test_array_task_kill_leaves_the_others(hreg):
    bt.batch_map(lambda s: time.sleep(s), s=[300, 0.1])
    bt.submit_jobs(bt.find_jobs().assign(chunk=1), resources={"chunks_as_arrayjobs": True})
    wait_until(lambda: len(bt.find_done()) == 1 and len(bt.find_running()) == 1, 60, "job 2 done, job 1 running")
    assert bt.kill_jobs(1)["killed"].tolist() == [True]
    assert bt.find_done()["job_id"].tolist() == [2]
    assert bt.find_not_submitted()["job_id"].tolist() == [1]


def test_worker_pool(hreg):
    bt.batch_map(lambda x: x + 1, x=range(50))
    bt.submit_workers(2, idle_timeout=1)
    assert bt.wait_for_jobs(timeout=120)
    assert bt.reduce_results_list() == list(range(1, 51))
    workers = bt.get_workers()
    assert len(workers) == 2 and workers["claimed"].sum() == 50
    assert all(b.endswith("@" + workers["batch_id"][0].split("@")[1]) for b in workers["batch_id"])


def test_unreachable_server_and_bad_arguments_change_nothing(tmp_path, hq_cluster):
    from hyperqueue import LocalCluster

    reg = bt.make_registry(file_dir=tmp_path / "reg", seed=1, conf_file=None)
    bt.batch_map(lambda x: x, x=[1, 2])
    # (setting the cluster functions saves them with the registry: each snapshot is taken after that)
    reg.cluster_functions = bt.make_cluster_functions_hyperqueue(tmp_path / "no-server")
    before = snapshot(reg.file_dir)
    with pytest.raises(ConnectionError, match="server: cannot reach the HyperQueue server.*hq server start"):
        bt.submit_jobs()
    assert snapshot(reg.file_dir) == before
    stopped = LocalCluster(server_dir=str(tmp_path / "stopped"))
    stopped.stop()  # its access file stays behind, nobody answers
    reg.cluster_functions = bt.make_cluster_functions_hyperqueue(tmp_path / "stopped")
    before = snapshot(reg.file_dir)
    with pytest.raises(ConnectionError, match="cannot reach"):
        bt.submit_jobs()
    assert snapshot(reg.file_dir) == before
    reg.cluster_functions = bt.make_cluster_functions_hyperqueue(hq_cluster)
    before = snapshot(reg.file_dir)
    with pytest.raises(ValueError, match="walltime must be a finite positive number"):
        bt.submit_jobs(resources={"walltime": -5})
    with pytest.raises(ValueError, match="gpus must be a non-negative integer"):
        bt.submit_jobs(resources={"gpus": 1.5})
    assert snapshot(reg.file_dir) == before
    with pytest.raises(TypeError, match="server: give an HQ server directory"):
        bt.make_cluster_functions_hyperqueue(42)
    with pytest.raises(TypeError, match="array_jobs"):
        bt.make_cluster_functions_hyperqueue(hq_cluster, array_jobs="yes")
