"""A job collection as the process of an engine's task (Dask): the node code owns its process.

:func:`run_collection_process` is what a Dask task runs on a worker: the task carries the pickled
collection (no collection file on the shared file system), and the collection runs in a *runner*,
a process of the worker's own (``python -m batchtools.node.engine_task``, with the worker's
interpreter and environment) that runs one collection after another, as a Multicore process
does (:func:`batchtools.node.forkserver.run_collections`). The task's thread hands the runner
the collection's path on its pipe and reads the answer from its pipe: no thread or other process
passes anything on, which matters when thousands of one-job tasks run. Results, logs and status
updates are written as for any backend. A runner is reused while its collections end without
being stopped; it ends after ``MAX_RUNS`` collections, after a pool worker, or after
``IDLE_SECONDS`` idle.

:func:`kill_collection_process` ends it from outside the task (``Client.run`` on the workers): an
engine cannot interrupt a running task's thread, but it can end the process that thread waits for.
A runner that was signalled never gets another collection, so a late kill cannot reach a
collection its process would run next.

A worker process that dies in the middle of a task (killed, out of memory) leaves its runner
behind, and Dask runs the task again elsewhere: the runner ends itself the moment its worker
process is gone, and the new run skips the jobs that have a result (the node knows a run again
by the collection's log, which the first run made, and waits for a first run that still lives:
:func:`batchtools.node.node.claim_run`).
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib

from ..core.contract.protocol import MARK
from ..core.persistence.files import write_all
from .node import RERUN_ENV

_LOCK = threading.Lock()
_CHANGED = threading.Condition(_LOCK)  # notified when a task let go of its runner
_RUNNING: dict[str, _Runner | None] = {}  # key -> the runner it runs in (None while it gets one)
# keys killed before their collection started here (bounded: a kill is sent to every worker)
_KILLED: collections.OrderedDict[str, None] = collections.OrderedDict()
_KILLED_MAX = 100_000
_IDLE: list[_Runner] = []  # runners waiting for a collection, the last one idle at the end
IDLE_SECONDS = 10.0  # an idle runner ends after this long without a collection
_REAPER: threading.Thread | None = None
# the worker process that started a runner (the runner ends the moment that process is gone)
PARENT_ENV = "BATCHTOOLS_RUNNER_PARENT"
ORPHAN_POLL = 0.05  # seconds between a runner's looks at its worker process
COPY_PREFIX = "batchtools-task-"  # the folders of the collections tasks carry: <prefix><worker pid>-<random>
SWEEP_SECONDS = 10.0  # the copies of dead worker processes are looked for at most this often


class _Runner:
    """One runner process: the task's thread writes it a line and reads its answer."""

    def __init__(self) -> None:
        env = {**os.environ, PARENT_ENV: str(os.getpid()), RERUN_ENV: "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "batchtools.node.engine_task"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=env)
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
    _sweep_copies(where)
    # named <hash>.pkl, as the node names a collection by its file (in a private folder of its own,
    # named after this process, so that the copies of a worker process killed meanwhile can go)
    folder = tempfile.mkdtemp(prefix=f"{COPY_PREFIX}{os.getpid()}-", dir=where)
    path = os.path.join(folder, f"{job_hash}.pkl")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        write_all(fd, collection)
    finally:
        os.close(fd)
    return path


_swept = 0.0


def _sweep_copies(where: str) -> None:
    """Delete the collection copies of worker processes that are gone (a worker killed while its
    task ran never deleted its copy), at most every ``SWEEP_SECONDS``."""
    global _swept
    now = time.monotonic()
    if _swept and now - _swept < SWEEP_SECONDS:
        return
    _swept = now
    with contextlib.suppress(OSError), os.scandir(where) as entries:
        for entry in entries:
            pid = entry.name[len(COPY_PREFIX):].partition("-")[0]
            if not (entry.name.startswith(COPY_PREFIX) and pid.isdigit()) or int(pid) == os.getpid():
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                shutil.rmtree(entry.path, ignore_errors=True)
            except OSError:  # another user's process: alive
                pass


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


def _end_when_orphaned(parent: int) -> None:
    """End this runner (SIGKILL: it writes nothing more) once the worker process that started it
    is gone. The engine runs the task again elsewhere (Dask does when a worker dies), and that run
    skips the jobs this one finished; a job this one would go on to finish could run twice."""
    while os.getppid() == parent:
        time.sleep(ORPHAN_POLL)
    flush = threading.Thread(target=_flush_output, daemon=True)  # what the log has not got yet, if it can
    flush.start()
    flush.join(0.5)
    with contextlib.suppress(OSError):
        os.write(1, f"{MARK}The worker process running this collection is gone and its engine runs it again: "
                    "stopping here\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)


def _flush_output() -> None:
    with contextlib.suppress(Exception):
        sys.stdout.flush()


def main() -> int:
    """A runner: collections arrive on stdin, one ``DEVICES PATH[<tab>FILE_DIR]`` line each."""
    from .forkserver import run_collections

    parent = os.environ.pop(PARENT_ENV, None)
    if parent is not None:
        threading.Thread(target=_end_when_orphaned, args=(int(parent),), name="batchtools-orphan", daemon=True).start()
    cmd_r, report_w = os.dup(0), os.dup(1)
    run_collections(cmd_r, report_w, [], report_modules=False)
    return 0  # not reached: run_collections ends the process


if __name__ == "__main__":
    sys.exit(main())
