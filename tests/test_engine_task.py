"""What a Dask task runs on its worker (:mod:`batchtools.node.engine_task`), without Dask: the
collection the task carries runs in a runner process of the worker's own, one collection after
another; a kill ends the collection it names and never one its process would run next."""

import glob
import os
import tempfile
import threading
import time
import zlib

import pytest

import batchtools as bt
from batchtools.backends.forkclient import _same_process
from batchtools.core.persistence.files import cloud_dumps
from batchtools.node import engine_task
from conftest import wait_until


def nap(s):
    import os
    import time

    time.sleep(s)
    return s, os.getpid()


@pytest.fixture(autouse=True)
def no_runner_left():
    yield
    engine_task.end_idle_runners()


def run(reg, job_id: int, key: str | None = None, compress: bool = False) -> int:
    jc = bt.make_job_collection([job_id], reg=reg)
    payload = cloud_dumps(jc)
    return engine_task.run_collection_process(zlib.compress(payload) if compress else payload,
                                              key or f"k-{jc.job_hash}", str(reg.file_dir), jc.job_hash)


def test_a_collection_carried_by_the_task_runs_and_an_unreadable_one_is_reported_in_its_registry(reg):
    """The pickled collection travels with the task (compressed or not): no file in jobs/."""
    bt.batch_map(nap, s=[0.0, 0.0])
    assert run(reg, 1) == 0
    assert run(reg, 2, compress=True) == 0
    assert reg.store.get(1)[0] == reg.store.get(2)[0] == 0.0
    assert not os.listdir(reg.layout.dir("jobs"))
    with pytest.raises(RuntimeError, match="exited with 1"):
        engine_task.run_collection_process(b"not a pickle", "k2", str(reg.file_dir), "jobdeadbeef")
    assert "cannot be read" in reg.layout.log("jobdeadbeef").read_text()
    assert glob.glob(str(reg.layout.dir("updates") / "jobdeadbeef-*.pkl"))  # its jobs fail, not expire
    left = [p for d in ("/dev/shm", tempfile.gettempdir()) for p in glob.glob(os.path.join(d, "batchtools-task-*"))]
    assert not [p for p in left if os.path.isdir(p) and os.listdir(p)]  # the task's copies are gone


def test_one_runner_runs_collection_after_collection_and_a_late_kill_never_reaches_the_next(reg):
    bt.batch_map(nap, s=[0.0, 0.0, 30.0, 0.0])
    assert run(reg, 1, key="k1") == 0
    assert run(reg, 2, key="k2") == 0
    pid = reg.store.get(1)[1]
    assert reg.store.get(2)[1] == pid != os.getpid()  # the same runner, not this process
    assert engine_task.kill_collection_process("k1") is False  # ended: nothing to kill, whatever runs now
    # a kill of a running collection ends it (and that runner gets no other collection)
    out = {}
    task = threading.Thread(target=lambda: out.setdefault("code", run(reg, 3, key="k3")))
    task.start()
    wait_until(lambda: engine_task._RUNNING.get("k3") is not None, 30, "job 3 to be handed to a runner")
    time.sleep(0.5)
    t0 = time.monotonic()
    assert engine_task.kill_collection_process("k3", grace=5) is True
    task.join(30)
    assert not task.is_alive() and time.monotonic() - t0 < 10
    assert out["code"] <= 0  # ended by the kill, not "exited with an error"
    assert not reg.store.exists(3)
    assert run(reg, 4, key="k4") == 0
    assert reg.store.get(4)[1] != pid  # a signalled runner is never handed another collection
    assert engine_task._RUNNING == {}


def test_a_collection_killed_before_it_started_never_starts(reg):
    bt.batch_map(nap, s=[0.0])
    assert engine_task.kill_collection_process("k-early") is False  # not running here (yet)
    assert run(reg, 1, key="k-early") == -15
    assert not reg.store.exists(1)
    assert run(reg, 1, key="k-later") == 0  # the kill named that task only
    assert reg.store.get(1)[0] == 0.0


def test_tasks_at_once_get_runners_of_their_own_and_idle_runners_end(reg, monkeypatch):
    bt.batch_map(nap, s=[1.0, 1.0])
    threads = [threading.Thread(target=run, args=(reg, i)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert reg.store.get(1)[1] != reg.store.get(2)[1]
    assert len(engine_task._IDLE) == 2
    pids = [r.proc.pid for r in engine_task._IDLE]
    monkeypatch.setattr(engine_task, "IDLE_SECONDS", 0.5)
    wait_until(lambda: not engine_task._IDLE, 10, "idle runners to be let go")
    wait_until(lambda: not any(_same_process(p, None) for p in pids), 10, "idle runners to end")
