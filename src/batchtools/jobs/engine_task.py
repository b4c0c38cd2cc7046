"""A job collection as the subprocess of an engine's task (Dask): the node code owns its process.

:func:`run_collection_process` is what a Dask task runs on a worker: ``python -m
batchtools.worker FILE`` with the worker's interpreter, waited for in the task's thread, so
results, logs and status updates are written as for any backend. :func:`kill_collection_process`
ends it from outside the task (``Client.run`` on the workers): an engine cannot interrupt a
running task's thread, but it can end the process that thread waits for.
"""

from __future__ import annotations

import collections
import subprocess
import sys
import threading

_LOCK = threading.Lock()
_RUNNING: dict[str, subprocess.Popen] = {}
# keys killed before their process started here (bounded: a kill is sent to every worker)
_KILLED: collections.OrderedDict[str, None] = collections.OrderedDict()
_KILLED_MAX = 100_000


def run_collection_process(path: str, key: str) -> int:
    """Run the job collection file ``path`` in a subprocess; its exit code (negative: a signal).

    Raises RuntimeError if the node could not even start (its stderr before it took over its log).
    """
    with _LOCK:
        if _KILLED.pop(key, 0) is None:
            return -15
        proc = subprocess.Popen([sys.executable, "-m", "batchtools.worker", path], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _RUNNING[key] = proc
    try:
        _, err = proc.communicate()
    finally:
        with _LOCK:
            _RUNNING.pop(key, None)
            killed = _KILLED.pop(key, 0) is None
    if proc.returncode > 0 and not killed:
        tail = err.decode(errors="replace").strip()[-2000:]
        raise RuntimeError(f"python -m batchtools.worker {path} exited with {proc.returncode}: {tail}")
    return proc.returncode


def kill_collection_process(key: str, grace: float = 2.0) -> bool:
    """End the process of ``key`` on this worker (SIGTERM, then SIGKILL after ``grace`` seconds);
    a process not started yet never starts. True if one was running here."""
    with _LOCK:
        _KILLED[key] = None
        while len(_KILLED) > _KILLED_MAX:
            _KILLED.popitem(last=False)
        proc = _RUNNING.get(key)
    if proc is None:
        return False
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
    return True
