"""The Dask backend against a real ``distributed.LocalCluster`` (a scheduler and two worker
processes started by the tests).

With ``BATCHTOOLS_TEST_DASK=1`` (as CI sets it) a missing or broken distributed is a failure, not a skip.
"""

import os
import signal
import time

import pytest

import batchtools as bt
from conftest import cancel_own_jobs, require_daemon, snapshot, wait_until
from test_faults import job, runs

pytestmark = pytest.mark.dask


@pytest.fixture(scope="module")
def dask_cluster():
    try:
        from distributed import Client, LocalCluster
    except ImportError as e:
        require_daemon(f"distributed is not installed ({e}); make install installs the engines extra",
                       "BATCHTOOLS_TEST_DASK")
    try:
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
        client = Client(cluster, set_as_default=False)
    except Exception as e:
        require_daemon(f"distributed.LocalCluster did not start: {type(e).__name__}: {e}", "BATCHTOOLS_TEST_DASK")
    yield cluster, client
    client.close()
    cluster.close()


@pytest.fixture
def dreg(tmp_path, dask_cluster):
    r = bt.make_registry(file_dir=tmp_path / "daskreg", seed=1, conf_file=None)
    r.cluster_functions = bt.make_cluster_functions_dask(dask_cluster[1])
    yield r
    cancel_own_jobs(r)


def test_single_jobs_and_chunks(dreg, dask_cluster):
    bt.batch_map(lambda x: (x * x, os.getpid()), x=range(1, 8))
    bt.submit_jobs(bt.find_jobs(ids=[1, 2]))
    bt.submit_jobs(bt.find_jobs(ids=[3, 4, 5, 6, 7]).assign(chunk=[1, 1, 2, 2, 2]))
    assert bt.wait_for_jobs(timeout=120)
    res = bt.reduce_results_list()
    assert [r[0] for r in res] == [x * x for x in range(1, 8)]
    st = bt.get_job_status()
    assert st["batch_id"][2] == st["batch_id"][3] != st["batch_id"][4]
    assert st["batch_id"][0] == "batchtools-" + st["job_hash"][0]
    # each collection ran in a process of its own (forked, or one whose collection had ended), not
    # in a Dask worker process; the jobs of a chunk in one process
    workers = set(dask_cluster[1].run(os.getpid).values())
    assert not {r[1] for r in res} & workers
    assert res[2][1] == res[3][1] and res[4][1] == res[5][1] == res[6][1]
    assert "### [bt]: Starting job [batchtools job.id=5]" in bt.get_log(5)
    # nothing of a finished collection stays on the scheduler (it would be run again if its worker left)
    ours = set(st["batch_id"])
    wait_until(lambda: not ours & set(dask_cluster[1].run_on_scheduler(
        lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks])), 10, "the finished tasks to be forgotten")


def test_a_task_the_scheduler_has_not_heard_of_yet_is_queued_not_gone(dreg, monkeypatch):
    """Submissions travel on the client's batched stream, which a listing can overtake: a task this
    session submitted that the scheduler does not list yet is queued, so its job never expires."""
    from batchtools.backends import dask as dask_backend

    bt.batch_map(lambda s: time.sleep(s) or s, s=[3])
    bt.submit_jobs()
    monkeypatch.setattr(dask_backend, "_states_function", lambda prefix: (lambda dask_scheduler=None: {}))
    assert bt.find_on_system()["job_id"].tolist() == [1]  # the scheduler "does not know it yet"
    assert bt.find_expired().empty
    monkeypatch.undo()
    assert bt.wait_for_jobs(timeout=60) and bt.load_result(1) == 3


def test_same_seed_same_results_as_multicore(dreg, tmp_path):
    bt.batch_map(lambda x, job: job.rng.random() + x, x=range(4))
    bt.submit_jobs(bt.find_jobs().assign(chunk=[1, 1, 2, 2]))
    assert bt.wait_for_jobs(timeout=60)
    other = bt.make_registry(file_dir=tmp_path / "mc", seed=1, conf_file=None)
    other.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(lambda x, job: job.rng.random() + x, x=range(4), reg=other)
    bt.submit_jobs(reg=other)
    assert bt.wait_for_jobs(reg=other)
    assert bt.reduce_results_list(reg=dreg) == bt.reduce_results_list(reg=other)


def test_listing_kill_and_a_second_session(dreg, dask_cluster):
    bt.batch_map(lambda s: time.sleep(s), s=[300, 300, 300])
    bt.submit_jobs()  # three tasks, two worker threads: two run, one waits
    wait_until(lambda: len(bt.find_running()) == 2, 60, "two running jobs")
    assert len(bt.find_queued()) == 1
    # a new session (another client of the same scheduler) sees and kills the fire-and-forget tasks
    dreg.cluster_functions = bt.make_cluster_functions_dask(dask_cluster[0].scheduler_address)
    assert len(bt.find_on_system()) == 3
    t0 = time.time()
    assert bt.kill_jobs()["killed"].tolist() == [True, True, True]
    assert time.time() - t0 < 30
    assert bt.find_on_system().empty
    assert bt.find_not_submitted()["job_id"].tolist() == [1, 2, 3]
    running = dask_cluster[1].run(lambda: len(__import__("batchtools.node.engine_task").node.engine_task._RUNNING))
    assert set(running.values()) == {0}  # no node process left behind


def test_gpu_request_waits_for_a_gpu_worker(dreg):
    bt.batch_map(lambda x: x, x=[1])
    bt.submit_jobs(resources={"gpus": 1})  # no worker of this cluster offers the resource GPU
    time.sleep(1)
    assert bt.find_queued()["job_id"].tolist() == [1]
    assert bt.kill_jobs()["killed"].tolist() == [True]
    assert bt.find_on_system().empty


def test_worker_pool(dreg):
    bt.batch_map(lambda x: x + 1, x=range(50))
    bt.submit_workers(2, idle_timeout=1)
    assert bt.wait_for_jobs(timeout=120)
    assert bt.reduce_results_list() == list(range(1, 51))
    workers = bt.get_workers()
    assert len(workers) == 2 and workers["claimed"].sum() == 50


def test_unreachable_scheduler_and_bad_arguments_change_nothing(tmp_path, dask_cluster):
    reg = bt.make_registry(file_dir=tmp_path / "reg", seed=1, conf_file=None)
    bt.batch_map(lambda x: x, x=[1, 2])
    # (setting the cluster functions saves them with the registry: each snapshot is taken after that)
    reg.cluster_functions = bt.make_cluster_functions_dask("tcp://127.0.0.1:9", timeout=1)
    before = snapshot(reg.file_dir)
    with pytest.raises(ConnectionError, match="client_or_address: cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        bt.submit_jobs()
    assert snapshot(reg.file_dir) == before
    reg.cluster_functions = bt.make_cluster_functions_dask(dask_cluster[1])
    before = snapshot(reg.file_dir)
    with pytest.raises(ValueError, match="chunks_as_arrayjobs is not supported by the Dask backend"):
        bt.submit_jobs(bt.find_jobs().assign(chunk=1), resources={"chunks_as_arrayjobs": True})
    with pytest.raises(ValueError, match="ncpus must be a positive integer"):
        bt.submit_jobs(resources={"ncpus": 0})
    assert snapshot(reg.file_dir) == before
    with pytest.raises(TypeError, match="client_or_address: give a distributed.Client"):
        bt.make_cluster_functions_dask(42)
    with pytest.raises(ValueError, match="timeout: must be a positive number"):
        bt.make_cluster_functions_dask("tcp://127.0.0.1:9", timeout=0)


def test_tasks_go_to_the_scheduler_in_batches(dreg, dask_cluster, monkeypatch):
    client = dask_cluster[1]
    sizes = []
    real_map = client.map

    def counting_map(func, *columns, **kwargs):
        sizes.append(len(kwargs["key"]))
        return real_map(func, *columns, **kwargs)

    monkeypatch.setattr(client, "map", counting_map)
    bt.batch_map(lambda x: x * 2, x=range(450))
    bt.submit_jobs()
    assert sum(sizes) == 450 and max(sizes) <= 200 and len(sizes) >= 3  # up to HOLD_TASKS per batch
    assert bt.wait_for_jobs(timeout=300)
    assert bt.reduce_results_list() == [x * 2 for x in range(450)]


def test_a_task_killed_before_it_was_sent_never_runs(dreg, dask_cluster, monkeypatch):
    from batchtools.backends import dask as dask_backend

    monkeypatch.setattr(dask_backend, "HOLD_TASKS", 10**6)
    monkeypatch.setattr(dask_backend, "HOLD_SECONDS", 1e9)
    bt.batch_map(lambda x: x, x=[1, 2])
    cf = dreg.cluster_functions
    keys = [cf.submit_job(dreg, bt.make_job_collection([i])).batch_id for i in (1, 2)]
    assert not set(keys) & set(dask_cluster[1].run_on_scheduler(
        lambda dask_scheduler: [str(k) for k in dask_scheduler.tasks]))  # held, not sent yet
    cf.kill_job(dreg, keys[0])
    cf.flush()
    wait_until(lambda: dreg.store.exists(2), 60, "the task that was not killed to run")
    time.sleep(0.5)
    assert not dreg.store.exists(1)
    assert not list(dreg.layout.dir("updates").glob(keys[0].removeprefix("batchtools-") + "-*"))


def test_tasks_dask_refused_when_sent_expire_and_are_submitted_again(dreg, dask_cluster, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("the client lost its scheduler")

    monkeypatch.setattr(dask_cluster[1], "map", refuse)
    bt.batch_map(lambda x: x + 1, x=[1, 2])
    with pytest.raises(RuntimeError, match=r"Dask refused 2 task\(s\) .* submit_jobs\(find_expired\(\)\)"):
        bt.submit_jobs()
    monkeypatch.undo()
    assert bt.find_submitted()["job_id"].tolist() == [1, 2]  # accepted, so recorded
    assert bt.wait_for_jobs(timeout=60) is False
    assert bt.find_expired()["job_id"].tolist() == [1, 2]  # never sent: expired, never "running"
    bt.submit_jobs(bt.find_expired())
    assert bt.wait_for_jobs(timeout=60)
    assert bt.reduce_results_list() == [2, 3]


def test_a_worker_killed_mid_task_runs_only_the_unfinished_jobs_again(dask_cluster, tmp_path, request):
    """SIGKILL the Dask worker process whose runner is in the middle of an 8-job collection (three
    trials). Dask runs the task again on a worker; that run skips the jobs the first one finished,
    and the first run's runner, orphaned, stops at once instead of finishing the collection too:
    at most the job running at the kill runs twice."""
    import psutil

    client = dask_cluster[1]
    n, twice_total = 8, []
    for trial in range(3):
        log_dir = tmp_path / f"runs{trial}"
        log_dir.mkdir()
        reg = bt.make_registry(file_dir=tmp_path / f"killreg{trial}", seed=1, conf_file=None)
        reg.cluster_functions = bt.make_cluster_functions_dask(client)
        bt.batch_map(job, x=range(1, n + 1), more_args={"log_dir": str(log_dir), "sleep": 0.7})
        bt.submit_jobs(bt.find_jobs().assign(chunk=1))
        request.addfinalizer(lambda reg=reg: cancel_own_jobs(reg))
        wait_until(lambda: len(list(log_dir.glob("*.run"))) >= 2 + trial, 120, "the first jobs")
        runner = int((log_dir / "1.run").read_text().split()[0])
        worker = psutil.Process(runner).ppid()
        assert worker in set(client.run(os.getpid).values())  # the runner's parent is a Dask worker process
        os.kill(worker, signal.SIGKILL)
        wait_until(lambda: not psutil.pid_exists(runner) or psutil.Process(runner).status() == psutil.STATUS_ZOMBIE,
                   10, "the orphaned runner to stop")
        assert bt.wait_for_jobs(timeout=180)
        assert bt.reduce_results_list() == [x * x for x in range(1, n + 1)]
        ran = runs(log_dir)
        assert sorted(ran) == list(range(1, n + 1))
        twice = [x for x, k in ran.items() if k > 1]
        assert len(twice) <= 1, f"jobs that ran twice: {twice}"
        log = "".join(p.read_text() for p in reg.layout.dir("logs").glob("*.log"))
        assert "Job 1 finished in an earlier run of this collection" in log
        assert "The worker process running this collection is gone" in log  # what the orphan said
        twice_total.append(len(twice))
        client.wait_for_workers(2, timeout=60)
    print(f"\nDask worker killed mid-task: 3 trials, jobs run twice: {twice_total}")

