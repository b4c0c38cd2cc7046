"""A job collection as the process of an engine's task (Dask): the node code owns its process.

:func:`run_collection_process` is what a Dask task runs on a worker: the task carries the pickled
collection (no collection file on the shared file system), and the collection runs in a *runner*,
a process of the worker's own (``python -m batchtools.jobs.engine_task``, with the worker's
interpreter and environment) that runs one collection after another, as a Multicore process
does (:func:`batchtools.jobs.forkserver.run_collections`). The task's thread hands the runner
the collection's path on its pipe and reads the answer from its pipe: no thread or other process
passes anything on, which matters when thousands of one-job tasks run. Results, logs and status
updates are written as for any backend. A runner is reused while its collections end without
being stopped; it ends after ``MAX_RUNS`` collections, after a pool worker, or after
``IDLE_SECONDS`` idle.

:func:`kill_collection_process` ends it from outside the task (``Client.run`` on the workers): an
engine cannot interrupt a running task's thread, but it can end the process that thread waits for.
A runner that was signalled never gets another collection, so a late kill cannot reach a
collection its process would run next.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib

from ..core.files import write_all

_LOCK = threading.Lock()
_CHANGED = threading.Condition(_LOCK)  # notified when a task let go of its runner
_RUNNING: dict[str, _Runner | None] = {}  # key -> the runner it runs in (None while it gets one)
# keys killed before their collection started here (bounded: a kill is sent to every worker)
_KILLED: collections.OrderedDict[str, None] = collections.OrderedDict()
_KILLED_MAX = 100_000
_IDLE: list[_Runner] = []  # runners waiting for a collection, the last one idle at the end
IDLE_SECONDS = 10.0  # an idle runner ends after this long without a collection
_REAPER: threading.Thread | None = None


class _Runner:
    """One runner process: the task's thread writes it a line and reads its answer."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "batchtools.jobs.engine_task"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.doomed = False  # signalled by a kill: never handed another collection
        self.idle_since = time.monotonic()
        self.buf = b""

    def send(self, path: str, file_dir: str | None) -> bool:
        """Hand it a collection (``-``: the environment as the process started); False if it is gone."""
        try:
            os.write(self.proc.stdin.fileno(), f"- {path}{chr(9) + file_dir if file_dir else ''}\n".encode())
        except OSError:
            return False
        return True

    def answer(self) -> int | None:
        """Wait until the collection ended: 0 if the runner is ready for the next one, None if it
        ends (then :meth:`end` tells its exit code)."""
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                kind = line.split(b" ", 1)[0]
                if kind == b"i":
                    return 0
                if kind == b"d":
                    return None
            part = os.read(fd, 4096)
            if not part:  # it died (a kill, or a signal from elsewhere)
                return None
            self.buf += part

    def end(self) -> int:
        """Let it go and wait for it; its exit code (negative: a signal)."""
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        code = self.proc.wait()
        with contextlib.suppress(OSError):
            self.proc.stdout.close()
        return code

    def signal(self, signum: int) -> None:
        with contextlib.suppress(OSError):
            self.proc.send_signal(signum)


def _take_runner() -> _Runner:
    with _LOCK:
        while _IDLE:
            runner = _IDLE.pop()
            if runner.proc.poll() is None:
                return runner
    _start_reaper()
    return _Runner()


def _give_back(runner: _Runner) -> None:
    runner.idle_since = time.monotonic()
    with _LOCK:
        _IDLE.append(runner)


def _reap() -> None:
    """Let go of runners idle for ``IDLE_SECONDS`` (a worker that waits keeps no memory for them)."""
    while True:
        time.sleep(min(1.0, IDLE_SECONDS / 4))
        end_idle_runners(IDLE_SECONDS)


def end_idle_runners(idle_for: float = 0.0) -> int:
    """End the runners that have waited for a collection at least ``idle_for`` seconds; how many."""
    with _LOCK:
        now = time.monotonic()
        old = [r for r in _IDLE if now - r.idle_since >= idle_for]
        _IDLE[:] = [r for r in _IDLE if r not in old]
    for runner in old:
        runner.end()
    return len(old)


def _start_reaper() -> None:
    global _REAPER
    with _LOCK:
        if _REAPER is None:
            _REAPER = threading.Thread(target=_reap, name="batchtools-runner-reaper", daemon=True)
            _REAPER.start()


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
    ``collection``: its file, or the pickled collection itself, perhaps zlib-compressed (then
    ``file_dir`` and ``job_hash`` name its registry and hash). Raises RuntimeError if the node could not read the collection (its
    log says why)."""
    with _LOCK:
        if _KILLED.pop(key, 0) is None:
            return -15
        _RUNNING[key] = None
    path = collection if isinstance(collection, str) else None
    runner = None
    code, killed = -15, True
    try:
        if path is None:
            if collection[:1] != b"\x80":  # not a pickle (they start with PROTO): compressed
                with contextlib.suppress(zlib.error):  # or damaged: the node reports it unreadable
                    collection = zlib.decompress(collection)
            path = _local_copy(collection, job_hash or "collection")
        else:
            file_dir = None
        while True:
            runner = _take_runner()
            with _LOCK:  # started, or killed before it started: a kill sees one or the other
                if key in _KILLED:
                    break
                _RUNNING[key] = runner
                sent = runner.send(path, file_dir)
            if sent:
                break
            runner.end()  # gone while idle: take another
        if _RUNNING.get(key) is runner:
            code = runner.answer()
    finally:
        if path is not None and path is not collection:
            with contextlib.suppress(OSError):
                os.unlink(path)
                os.rmdir(os.path.dirname(path))
        with _LOCK:
            started = _RUNNING.pop(key, None) is runner and runner is not None
            killed = _KILLED.pop(key, 0) is None
            doomed = runner is not None and runner.doomed
            _CHANGED.notify_all()
        if runner is not None:
            if not started or (code == 0 and not doomed):
                _give_back(runner)
            else:
                code = runner.end()
    if code > 0 and not killed:
        raise RuntimeError(f"the node running {key} exited with {code}; its log tells why")
    return code


def kill_collection_process(key: str, grace: float = 2.0) -> bool:
    """End the process of ``key`` on this worker (SIGTERM, then SIGKILL after ``grace`` seconds);
    a collection not started yet never starts. True if one was running here."""
    with _CHANGED:
        _KILLED[key] = None
        while len(_KILLED) > _KILLED_MAX:
            _KILLED.popitem(last=False)
        runner = _RUNNING.get(key)
        if runner is None:
            return False
        runner.doomed = True
        runner.signal(signal.SIGTERM)
        if not _CHANGED.wait_for(lambda: _RUNNING.get(key) is not runner, grace):
            runner.signal(signal.SIGKILL)
    return True


def main() -> int:
    """A runner: collections arrive on stdin, one ``DEVICES PATH[<tab>FILE_DIR]`` line each."""
    from .forkserver import run_collections

    cmd_r, report_w = os.dup(0), os.dup(1)
    run_collections(cmd_r, report_w, [], report_modules=False)
    return 0  # not reached: run_collections ends the process


if __name__ == "__main__":
    sys.exit(main())
