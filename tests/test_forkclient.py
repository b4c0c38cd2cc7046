"""The fork server's client as a Dask task uses it: collections named by request id, waited for,
killed without ever reaching the collection their process runs next."""

import time

import batchtools as bt
from batchtools.core.files import write_pickle
from batchtools.jobs.forkclient import ForkServer


def nap(s):
    import os
    import time

    time.sleep(s)
    return s, os.getpid()


def collection_file(reg, job_id: int) -> str:
    jc = bt.make_job_collection([job_id], reg=reg)
    path = reg.layout.job_collection(jc.job_hash)
    write_pickle(path, jc)
    return str(path)


def test_a_late_kill_never_reaches_the_next_collection_of_a_reused_process(reg):
    bt.batch_map(nap, s=[0.0, 2.0, 30.0])
    server = ForkServer(4, name="test")
    try:
        first = server.start_watched(collection_file(reg, 1))
        assert server.wait_exit(first) == 0
        second = server.start_watched(collection_file(reg, 2))
        assert server.kill_collection(first) is False  # ended: nothing to kill, whichever process runs now
        assert server.wait_exit(second) == 0
        assert reg.store.get(2)[0] == 2.0
        assert reg.store.get(2)[1] == reg.store.get(1)[1]  # the same process ran both
        third = server.start_watched(collection_file(reg, 3))
        t0 = time.monotonic()
        assert server.kill_collection(third, grace=5) is True
        server.wait_exit(third)
        assert time.monotonic() - t0 < 10
        assert not reg.layout.result(3).exists()
    finally:
        t0 = time.monotonic()
        server.close()
    assert time.monotonic() - t0 < 2  # idle processes are let go at once when the master closes


def test_wait_exit_returns_when_the_server_died_and_its_child_ended(reg):
    import os
    import signal

    bt.batch_map(nap, s=[1.0])
    server = ForkServer(2, name="test")
    request = server.start_watched(collection_file(reg, 1))
    os.kill(server.proc.pid, signal.SIGKILL)
    t0 = time.monotonic()
    assert server.wait_exit(request) == 0  # its exit code is unknown: the node reported its own status
    assert time.monotonic() - t0 < 10
    assert reg.store.get(1)[0] == 1.0


def test_a_collection_carried_by_the_task_runs_and_an_unreadable_one_is_reported_in_its_registry(reg):
    """What a Dask task does: the pickled collection travels with the task, no file in jobs/."""
    import glob
    import os

    import pytest

    from batchtools.core.files import cloud_dumps
    from batchtools.jobs import engine_task

    bt.batch_map(nap, s=[0.0, 0.0])
    jc = bt.make_job_collection([1], reg=reg)
    assert engine_task.run_collection_process(cloud_dumps(jc), "k1", str(reg.file_dir), jc.job_hash) == 0
    assert reg.store.get(1)[0] == 0.0
    assert not os.listdir(reg.layout.dir("jobs"))
    with pytest.raises(RuntimeError, match="exited with 1"):
        engine_task.run_collection_process(b"not a pickle", "k2", str(reg.file_dir), "jobdeadbeef")
    assert "cannot be read" in reg.layout.log("jobdeadbeef").read_text()
    assert glob.glob(str(reg.layout.dir("updates") / "jobdeadbeef-*.pkl"))  # its jobs fail, not expire
    left = [p for d in ("/dev/shm", __import__("tempfile").gettempdir())
            for p in glob.glob(os.path.join(d, "batchtools-task-*", "*.pkl"))]
    assert not [p for p in left if jc.job_hash in p or "jobdeadbeef" in p]  # the task's copies are gone
