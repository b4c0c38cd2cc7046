"""A job collection as the process of an engine's task (Dask): the node code owns its process.

:func:`run_collection_process` is what a Dask task runs on a worker: the task carries the pickled
collection (no collection file on the shared file system), and the collection runs in a
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
import contextlib
import os
import tempfile
import threading

from ..core.files import write_all
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


def _local_copy(collection: bytes, job_hash: str) -> str:
    """The collection the task carries, as a private file on this worker (in memory where there is
    /dev/shm): the master writes no collection file for an engine that carries it."""
    shm = "/dev/shm"
    where = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()
    # named <hash>.pkl, as the node names a collection by its file (in a private folder of its own)
    path = os.path.join(tempfile.mkdtemp(prefix="batchtools-task-", dir=where), f"{job_hash}.pkl")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        write_all(fd, collection)
    finally:
        os.close(fd)
    return path


def run_collection_process(collection: str | bytes, key: str, file_dir: str | None = None,
                           job_hash: str | None = None) -> int:
    """Run a job collection in a process of its own; its exit code (negative: a signal).
    ``collection``: its file, or the pickled collection itself (then ``file_dir`` and ``job_hash``
    name its registry and hash). Raises RuntimeError if the node could not read the collection (its
    log says why)."""
    with _LOCK:
        if _KILLED.pop(key, 0) is None:
            return -15
        _RUNNING[key] = None
    path = collection if isinstance(collection, str) else None
    server = _server()
    try:
        if path is None:
            path = _local_copy(collection, job_hash or "collection")
            request = server.start_watched(path, file_dir)
        else:
            request = server.start_watched(path)
        with _LOCK:
            _RUNNING[key] = request
            killed_meanwhile = key in _KILLED
            _CHANGED.notify_all()
        if killed_meanwhile:
            server.kill_collection(request)
        code = server.wait_exit(request)
    finally:
        if path is not None and path is not collection:
            with contextlib.suppress(OSError):
                os.unlink(path)
                os.rmdir(os.path.dirname(path))
        with _LOCK:
            _RUNNING.pop(key, None)
            killed = _KILLED.pop(key, 0) is None
            _CHANGED.notify_all()
    if code > 0 and not killed:
        raise RuntimeError(f"the node running {key} exited with {code}; its log tells why")
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
