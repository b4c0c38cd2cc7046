"""A job collection as the process of an engine's task (Dask): the node code owns its process.

:func:`run_collection_process` is what a Dask task runs on a worker: the collection runs in a
process of a warm fork server that the worker process starts on first use
(:mod:`batchtools.jobs.forkserver`, with the worker's interpreter and environment), and the
task's thread waits for that process to end, so results, logs and status updates are written as
for any backend, at the cost of a fork (or of nothing: a process whose collection ended runs the
next one, as on Multicore) rather than a new interpreter.
:func:`kill_collection_process` ends it from outside the task (``Client.run`` on the workers): an
engine cannot interrupt a running task's thread, but it can end the process that thread waits for.
"""

from __future__ import annotations

import collections
import threading

from .forkclient import ForkServer

_LOCK = threading.Lock()
_CHANGED = threading.Condition(_LOCK)  # notified when a task's process started or it let go of it
_RUNNING: dict[str, int | None] = {}  # key -> its fork-server request (None while it starts)
# keys killed before their process started here (bounded: a kill is sent to every worker)
_KILLED: collections.OrderedDict[str, None] = collections.OrderedDict()
_KILLED_MAX = 100_000
_SERVER: ForkServer | None = None
UNBOUNDED = 1 << 30  # the engine decides how many tasks run at once, not the server


def _server() -> ForkServer:
    global _SERVER
    with _LOCK:
        if _SERVER is None:
            _SERVER = ForkServer(UNBOUNDED, name="Dask worker's")
        return _SERVER


def run_collection_process(path: str, key: str) -> int:
    """Run the job collection file ``path`` in a process of its own; its exit code (negative: a
    signal). Raises RuntimeError if the node could not read the collection (its log says why)."""
    with _LOCK:
        if _KILLED.pop(key, 0) is None:
            return -15
        _RUNNING[key] = None
    server = _server()
    try:
        request = server.start_watched(path)
        with _LOCK:
            _RUNNING[key] = request
            killed_meanwhile = key in _KILLED
            _CHANGED.notify_all()
        if killed_meanwhile:
            server.kill_collection(request)
        code = server.wait_exit(request)
    finally:
        with _LOCK:
            _RUNNING.pop(key, None)
            killed = _KILLED.pop(key, 0) is None
            _CHANGED.notify_all()
    if code > 0 and not killed:
        raise RuntimeError(f"the node running {path} exited with {code}; its log tells why")
    return code


def kill_collection_process(key: str, grace: float = 2.0) -> bool:
    """End the process of ``key`` on this worker (SIGTERM, then SIGKILL after ``grace`` seconds);
    a process not started yet never starts. True if one was running here."""
    with _CHANGED:
        _KILLED[key] = None
        while len(_KILLED) > _KILLED_MAX:
            _KILLED.popitem(last=False)
        _CHANGED.wait_for(lambda: _RUNNING.get(key, 0) is not None, grace)  # its process is starting
        request = _RUNNING.get(key)
    if request is None:
        return False
    _server().kill_collection(request, grace)
    with _CHANGED:  # its task lets go of it right after the process ended
        _CHANGED.wait_for(lambda: key not in _RUNNING, grace)
    return True
