"""The master's side of the fork server (:mod:`batchtools.node.forkserver`): start it, have it
run job collections in forked processes, and learn when they end.

Multicore runs every collection this way, so a collection costs a fork of a warm process (or
nothing: a process whose collection ended runs the next one) rather than a new interpreter.
A server with no child for ``idle_timeout`` seconds ends (it holds the jobs' imports, ~175 MB
with scikit-learn); the next spawn starts a new one.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import psutil

from ..node.devices import DevicePool

log = logging.getLogger("batchtools")


class ForkServer:
    """Client of ``python -m batchtools.node.forkserver``: spawn and track children.

    Children are tracked by pid and start time. While the server lives it reports every exit; if
    it dies, its children carry on (they are not its to kill), so they are then tracked with
    psutil until they end, and the next spawn starts a new server. A spawn either returns the
    pid of a child that runs the collection or raises, and then no child runs it (see the
    server's go signal). A server that ran no child for ``idle_timeout`` seconds is ended.
    """

    #: seconds a server may go without a child before it is ended (a notebook that makes ten
    #: registries would otherwise keep ten warm servers until it exits)
    idle_timeout: float = 300.0

    def __init__(self, ncpus: int, devices=(), env: dict[str, str] | None = None, name: str = "Multicore") -> None:
        self.ncpus = ncpus
        self.env = env  # the server's environment (None: this process's)
        self.name = name
        self.gpus = DevicePool(devices)  # free GPUs, handed out per collection (CUDA_VISIBLE_DEVICES)
        self.proc: subprocess.Popen | None = None
        self.cond = threading.Condition()
        self.running: dict[int, float | None] = {}  # pid -> start time, children of the live server
        self.orphans: dict[int, float | None] = {}  # children of a server that died
        self.replies: dict[int, int] = {}  # request id -> pid
        self.pending = 0  # spawns waiting for the server's answer
        self.requests = itertools.count(1)
        self.deaths = 0  # servers that died under us
        self.preloaded: set[str] = set()  # modules the live server was already asked to import
        self.changes = 0
        self.last_active = time.monotonic()  # when a child last started or ended
        self._atexit = False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ensure_started(self) -> None:
        if self.alive():
            return
        if self.proc is not None:
            log.warning("the %s fork server (pid %d) died; starting a new one (running jobs carry on)",
                        self.name, self.proc.pid)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "batchtools.node.forkserver"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=self.env,
        )
        self.preloaded = set()
        self.last_active = time.monotonic()
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        threading.Thread(target=self._end_when_idle, args=(self.proc,), daemon=True).start()
        if not self._atexit:
            atexit.register(self.close)
            self._atexit = True

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            kind, _, rest = line.decode().strip().partition(" ")
            with self.cond:
                if kind == "pid":
                    request, _, pid = rest.partition(" ")
                    self.replies[int(request)] = int(pid)
                    self.running[int(pid)] = _start_time(int(pid))
                elif kind == "exit":
                    pid, _, code = rest.partition(" ")
                    self.running.pop(int(pid), None)
                    self.gpus.give_back(int(pid))
                self.last_active = time.monotonic()
                self.changes += 1
                self.cond.notify_all()
        with self.cond:  # the server ended: its children now have to be watched directly
            if proc is self.proc:
                self.orphans.update(self.running)
                self.running.clear()
                self.deaths += 1
            self.changes += 1
            self.cond.notify_all()

    def _end_when_idle(self, proc: subprocess.Popen) -> None:
        """End ``proc`` once it has had no child (and no request) for ``idle_timeout`` seconds."""
        with self.cond:
            while proc is self.proc and proc.poll() is None:
                idle = time.monotonic() - self.last_active
                if not self.running and not self.pending and idle >= self.idle_timeout:
                    self.proc = None  # the next spawn starts a new server, without a warning
                    break
                self.cond.wait(max(0.05, self.idle_timeout - idle))
            else:
                return
        log.debug("the %s fork server (pid %d) was idle for %.0f s: ending it", self.name, proc.pid, self.idle_timeout)
        _end_server(proc)

    def _prune_orphans(self) -> None:
        """Forget orphaned children that ended (pid gone, or reused by another process)."""
        for pid, started in list(self.orphans.items()):
            if not _same_process(pid, started):
                del self.orphans[pid]
                self.gpus.give_back(pid)
                self.changes += 1

    def busy(self) -> int:
        with self.cond:
            self._prune_orphans()
            return len(self.running) + len(self.orphans)

    def spawn(self, path: str, preload=(), gpus: int = 0) -> int:
        """Start a child running the collection at ``path``, once fewer than ``ncpus`` run (and
        ``gpus`` devices are free); its pid.

        ``preload``: installed modules the collection's jobs import; the server imports those it
        has not imported yet before it forks (once per server, not once per child)."""
        with self.cond:
            while True:
                self._prune_orphans()
                if len(self.running) + len(self.orphans) < self.ncpus and self.gpus.free_count() >= gpus:
                    break
                self.cond.wait(0.2 if self.orphans else None)
            self.ensure_started()
            proc = self.proc
            request = next(self.requests)
            self.pending += 1
            self.last_active = time.monotonic()
            new = [m for m in preload if m not in self.preloaded and m.replace(".", "").replace("_", "").isalnum()]
            try:
                if new:
                    self.preloaded.update(new)
                    proc.stdin.write(f"import {' '.join(new)}\n".encode())
                devices = self.gpus.take(("spawn", request), gpus) if self.gpus else None
                proc.stdin.write(f"run {request} {','.join(devices) if devices else '-' if devices is None else '+'} "
                                 f"{path}\n".encode())
                proc.stdin.flush()
            except OSError:
                pass  # a dead server: found out below
            while request not in self.replies and proc is self.proc and proc.poll() is None:
                self.cond.wait(0.5)
            self.pending -= 1
            pid = self.replies.pop(request, None)
            if self.gpus:  # the child holds the devices until it ends
                held = self.gpus.held.pop(("spawn", request), [])
                if pid is not None:
                    self.gpus.held[pid] = held
                else:
                    self.gpus.free = [d for d in self.gpus.devices if d in set(self.gpus.free) | set(held)]
        if pid is None:
            raise RuntimeError(f"the {self.name} fork server died before it started the job (nothing was started); "
                               "submitting again starts a new server")
        return pid

    def running_pids(self) -> list[int]:
        with self.cond:
            self._prune_orphans()
            return list(self.running) + list(self.orphans)

    def wait(self, timeout: float) -> None:
        """Return when a child starts or ends, or after ``timeout`` seconds."""
        with self.cond:
            seen = self.changes
            if self.orphans:  # their ends are not reported: look every 0.2 s
                timeout = min(timeout, 0.2)
            self.cond.wait_for(lambda: self.changes != seen, timeout)

    def close(self) -> None:
        if self.proc is not None:
            _end_server(self.proc)


def _end_server(proc: subprocess.Popen) -> None:
    """Ask a server to end (its stdin closes; its children carry on) and reap it."""
    if proc.poll() is None:
        try:
            proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass


def _start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _same_process(pid: int, started: float | None) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and (started is None or abs(proc.create_time() - started) < 0.01)
    except psutil.Error:
        return False


def kill_pid(pid: int, grace: float = 1.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.time() + grace
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
