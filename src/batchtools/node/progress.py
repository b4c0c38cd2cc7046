"""On the node: a job's signs of life, and the watchdog that ends a job that stopped making progress.

- ``job.progress(value=None, message=None)`` records the job's progress (a number, e.g. the
  fraction done or the epoch, and/or a short message) and ``job.heartbeat()`` a sign of life
  alone; both only write a few attributes, so a job may call them in its innermost loop.
- A reporter thread (one per process, started by the first job that reports progress or has a
  ``stall_timeout``) passes a job's latest progress to its status row at most every
  :data:`REPORT_EVERY` seconds, so ``get_job_table`` (``progress_at``, ``progress``,
  ``progress_message``) shows it while the job runs; the last one is in the job's final row.
- With the resource ``stall_timeout`` (seconds), the job's start is its first sign of life, and a
  job silent for that long is ended: the node raises :class:`Stalled` in the job's thread (a
  signal first, so a blocking wait in the main thread is interrupted), and the job ends with the
  reason ``stalled``. A job that does not end within :func:`grace` seconds after that (it caught
  the exception, or hangs in code that never returns to Python) is reported stalled by the
  watchdog, which then ends the node's process as a scheduler's kill would (the collection's
  other jobs are not started); a process that is not a node's own (the user's session running
  jobs itself: Interactive, ``do_job_collection``) is never ended.

Jobs that never report progress and have no ``stall_timeout`` pay nothing but an attribute write.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from typing import Any

from .session import say

REPORT_EVERY = 2.0  # seconds between two progress reports of one job to the master
MAX_MESSAGE = 200  # characters of a progress message kept
# the signal that interrupts a stalled job running in the main thread (its handler is installed
# only while such a job runs); SIGUSR1 is the scheduler's checkpoint warning
STALL_SIGNAL = signal.SIGUSR2


_NOT_INSTALLED = object()
_FOR_GOOD = object()  # the handler stays: a node process's own (the master's process gets its own back)


class Stalled(BaseException):
    """Raised in a job that made no progress for its ``stall_timeout`` (a BaseException, so
    ``except Exception`` in user code lets it through)."""


def grace(stall_timeout: float) -> float:
    """Seconds a stalled job gets to end after it was asked to, before its process is ended.

    >>> grace(2), grace(60), grace(3600)
    (2.0, 6.0, 30.0)
    """
    return float(min(max(stall_timeout / 10, 2.0), 30.0))


class Watch:
    """The progress of one running job, as its node sees it."""

    __slots__ = ("job_id", "buffer", "start", "at", "value", "message", "reported_at", "sent_at", "stall", "thread",
                 "running", "asked", "lock", "may_exit", "previous_handler")

    def __init__(self, job_id: int, buffer, stall: float | None = None):
        self.job_id = job_id
        self.buffer = buffer  # the job's UpdateBuffer (None: not run by a node, e.g. make_job)
        self.start = time.time()
        self.at = math.nan  # the last sign of life the job gave (its start counts for stalls)
        self.value: float | None = None
        self.message: str | None = None
        self.reported_at = math.nan  # the sign of life last passed to the buffer
        self.sent_at = 0.0  # monotonic time of that
        self.stall = stall
        self.thread = threading.get_ident()
        self.running = True  # in the user's code (a Stalled raised now lands there)
        self.asked: float | None = None  # when the job was asked to stop
        self.lock = threading.Lock()
        self.may_exit = _NODE_PROCESS[0] and buffer is not None and buffer.sink is None
        self.previous_handler: Any = _NOT_INSTALLED

    def silent_for(self, now: float) -> float:
        """Seconds since the job's last sign of life (its start if it gave none)."""
        return now - (self.at if self.at == self.at else self.start)

    def fields(self) -> dict[str, Any]:
        """The progress fields of the job's status row."""
        msg = self.message
        if msg is not None and len(msg) > MAX_MESSAGE:
            msg = msg[:MAX_MESSAGE - 3] + "..."
        return {"progress_at": self.at, "progress": self.value, "progress_message": msg}

    def report(self) -> bool:
        """Pass new progress to the buffer; True if there was some."""
        at = self.at
        if self.buffer is None or not at == at or at == self.reported_at:
            return False
        self.reported_at = at
        self.sent_at = time.monotonic()
        self.buffer.set(self.job_id, **self.fields())
        return True

    def leave(self) -> None:
        """The job's own code returned (or raised): no Stalled may reach the node's code after this."""
        with self.lock:
            self.running = False
            if self.asked is not None and self.thread != threading.main_thread().ident:
                _async_raise(self.thread, None)  # a pending one is dropped


# the watches of jobs running in this process, and the thread that looks at them
_ACTIVE: dict[int, Watch] = {}
_ACTIVE_LOCK = threading.Lock()
_WAKE = threading.Event()
_THREAD: list[threading.Thread] = []
_PACE = [1.0]  # seconds the thread waits between two looks now
_HANDLER = [False]  # whether this node process's stall signal handler is installed
_NODE_PROCESS = [False]  # whether this process is a node's own (which a stalled job may end)


def node_process() -> None:
    """Mark this process as a node's own (``python -m batchtools.worker``, a Multicore child, a
    Socket process): a stalled job that does not end may end it. Any other process (the user's
    session running jobs itself: Interactive, ``do_job_collection``) is never ended."""
    _NODE_PROCESS[0] = True


def progress(job, value: Any = None, message: Any = None) -> Watch:
    """Record a sign of life (and ``value`` / ``message`` if given) on the job's watch (made on
    first use)."""
    w = job._watch
    if w is None:
        w = job._watch = Watch(job.id, job._buffer, None)
        if w.buffer is not None:
            _register(w)
    if value is not None:
        try:
            w.value = float(value)
        except (TypeError, ValueError):
            raise TypeError(f"job.progress: value must be a number (e.g. the fraction done, or a count), "
                            f"got {value!r}; put text in message=") from None
    if message is not None:
        w.message = str(message)
    w.at = time.time()
    return w


def watch(job, buffer, stall: float) -> Watch:
    """Start watching ``job`` (run by this thread now) for stalls of ``stall`` seconds."""
    w = job._watch = Watch(job.id, buffer, stall)
    if w.thread == threading.main_thread().ident:
        if w.may_exit and _HANDLER[0]:
            w.previous_handler = _FOR_GOOD
        else:
            try:
                previous = signal.signal(STALL_SIGNAL, _on_signal)
            except ValueError:  # not allowed here: the asynchronous exception alone
                previous = _NOT_INSTALLED
            if previous is not _NOT_INSTALLED and w.may_exit:  # a node process: it keeps the handler
                _HANDLER[0], previous = True, _FOR_GOOD
            w.previous_handler = previous
    _register(w)
    return w


def finish(w: Watch) -> dict[str, Any]:
    """The job ended: stop watching it; the progress fields of its final row (empty if it never
    reported any)."""
    w.leave()
    with _ACTIVE_LOCK:
        _ACTIVE.pop(id(w), None)
    if w.previous_handler is not _NOT_INSTALLED and w.previous_handler is not _FOR_GOOD:
        signal.signal(STALL_SIGNAL, w.previous_handler if w.previous_handler is not None else signal.SIG_DFL)
    if w.buffer is None or not w.at == w.at:
        return {}
    w.reported_at = w.at
    return w.fields()


def _register(w: Watch) -> None:
    with _ACTIVE_LOCK:
        _ACTIVE[id(w)] = w
        if not _THREAD or not _THREAD[0].is_alive():
            _THREAD[:] = [threading.Thread(target=_loop, name="batchtools-progress", daemon=True)]
            _THREAD[0].start()
    if w.stall and _pace(w.stall) < _PACE[0]:
        _WAKE.set()  # the loop's pace has to follow a shorter stall_timeout


def _on_signal(signum, frame) -> None:
    me = threading.get_ident()
    for w in list(_ACTIVE.values()):
        if w.thread == me and w.running and w.asked is not None:
            raise Stalled(stall_message(w))


def stall_message(w: Watch) -> str:
    last = "its start" if w.value is None and w.message is None else \
        "its last progress (" + ", ".join(str(x) for x in (w.value, w.message) if x is not None) + ")"
    return f"no progress for {w.stall:g}s since {last} (stall_timeout)"


def _async_raise(thread_id: int, exc: type[BaseException] | None) -> None:
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None)


def _interrupt(w: Watch) -> None:
    """Raise Stalled in the job's thread while it is in the job's own code."""
    with w.lock:
        if not w.running:
            return
        if w.thread == threading.main_thread().ident and w.previous_handler is not _NOT_INSTALLED:
            signal.pthread_kill(w.thread, STALL_SIGNAL)  # also interrupts a blocking wait (sleep, lock, I/O)
        else:
            _async_raise(w.thread, Stalled)


def _end_process(w: Watch) -> None:
    """The stalled job did not end when asked: report it and end this process, as a kill would."""
    now = time.time()
    msg = (f"Stalled: {stall_message(w)}; it did not end within {grace(w.stall):g}s when asked, so its "
           "process was ended")
    say(msg)
    try:
        w.buffer.set(w.job_id, done=now, ended=now, error=msg, reason="stalled", **w.fields())
        w.buffer.flush()
    finally:
        sys.stdout.flush()
        os._exit(1)


def _pace(stall: float) -> float:
    """Seconds between two looks for a job with this stall_timeout: a tenth of it, at most 1 s."""
    return min(1.0, max(stall / 10, 0.05))


def _loop() -> None:
    while True:
        _PACE[0] = min([1.0, *(_pace(w.stall) for w in list(_ACTIVE.values()) if w.stall)])
        _WAKE.wait(_PACE[0])
        _WAKE.clear()
        now, mono = time.time(), time.monotonic()
        with _ACTIVE_LOCK:
            watches = list(_ACTIVE.values())
        flush = []
        for w in watches:
            try:
                if mono - w.sent_at >= REPORT_EVERY and w.report() and w.buffer not in flush:
                    flush.append(w.buffer)
                if not w.stall or not w.running:
                    continue
                if w.asked is None and w.silent_for(now) > w.stall:
                    w.asked = now
                    say(f"Job {w.job_id} made no progress for {w.stall:g}s (stall_timeout): ending it")
                    _interrupt(w)
                elif w.asked is not None and now - w.asked > grace(w.stall) and w.may_exit:
                    _end_process(w)
            except Exception as e:  # the watchdog never takes the job down with it
                say(f"Progress reporting failed: {type(e).__name__}: {e}")
        for buffer in flush:
            try:
                buffer.flush()
            except OSError as e:
                say(f"Progress reporting failed: {e}")
