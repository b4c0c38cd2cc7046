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
