"""Multicore: job collections as local processes, forked from a pre-warmed fork server.

Submission returns at once while fewer than ``ncpus`` collections run; otherwise
it blocks until a child ends (no polling sleep, unlike R's one-second loop).

The server stays warm (``jobs/forkserver.py``): before forking it imports the installed modules
the collection names in ``preload`` and those earlier children imported, and a child whose
collection ended runs the next one instead of a new fork. It runs with ``cpu_count // ncpus``
BLAS/OpenMP threads per job (``thread_env``), as joblib's workers do.
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

import numpy as np
import psutil

from ..core.backend import Capabilities, ClusterFunctions, SubmitJobResult, make_cluster_functions, restorable
from ..core.pool import pool_state
from ..core.resources import check_devices
from ..jobs.devices import DevicePool
from .commands import local_ncpus, thread_env

log = logging.getLogger("batchtools")


class ForkServer:
    """Client of ``python -m batchtools.jobs.forkserver``: spawn and track children.

    Children are tracked by pid and start time. While the server lives it reports every exit; if
    it dies, its children carry on (they are not its to kill), so they are then tracked with
    psutil until they end, and the next spawn starts a new server. A spawn either returns the
    pid of a child that runs the collection or raises, and then no child runs it (see the
    server's go signal).
    """

    def __init__(self, ncpus: int, devices=()) -> None:
        self.ncpus = ncpus
        self.gpus = DevicePool(devices)  # free GPUs, handed out per collection (CUDA_VISIBLE_DEVICES)
        self.proc: subprocess.Popen | None = None
        self.cond = threading.Condition()
        self.running: dict[int, float | None] = {}  # pid -> start time, children of the live server
        self.orphans: dict[int, float | None] = {}  # children of a server that died
        self.replies: dict[int, int] = {}  # request id -> pid
        self.requests = itertools.count(1)
        self.deaths = 0  # servers that died under us
        self.preloaded: set[str] = set()  # modules the live server was already asked to import
        self.changes = 0
        self._atexit = False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ensure_started(self) -> None:
        if self.alive():
            return
        if self.proc is not None:
            log.warning("the Multicore fork server (pid %d) died; starting a new one (running jobs carry on)",
                        self.proc.pid)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "batchtools.jobs.forkserver"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=thread_env(self.ncpus),
        )
        self.preloaded = set()
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
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
                    self.running.pop(int(rest.split()[0]), None)
                    self.gpus.give_back(int(rest.split()[0]))
                self.changes += 1
                self.cond.notify_all()
        with self.cond:  # the server ended: its children now have to be watched directly
            if proc is self.proc:
                self.orphans.update(self.running)
                self.running.clear()
                self.deaths += 1
            self.changes += 1
            self.cond.notify_all()

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
            pid = self.replies.pop(request, None)
            if self.gpus:  # the child holds the devices until it ends
                held = self.gpus.held.pop(("spawn", request), [])
                if pid is not None:
                    self.gpus.held[pid] = held
                else:
                    self.gpus.free = [d for d in self.gpus.devices if d in set(self.gpus.free) | set(held)]
        if pid is None:
            raise RuntimeError("the Multicore fork server died before it started the job (nothing was started); "
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
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
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


def _stdout_of(proc: psutil.Process) -> str | None:
    """Where a process's standard output goes (a path), if this platform tells."""
    try:
        return os.readlink(f"/proc/{proc.pid}/fd/1")
    except OSError:
        pass
    try:
        return next((f.path for f in proc.open_files() if f.fd == 1), None)
    except (psutil.Error, AttributeError):
        return None


def other_sessions_jobs(reg, known: set[int]) -> list[str]:
    """Pids (as batch ids) of this registry's job collections started by another session's
    fork server (an earlier session, or the command line), alive now.

    Only the session that started a child hears of its end; any other session looks at the
    processes the registry's unfinished jobs name: alive, a fork server's child, writing its
    output into this registry's log folder (so a reused pid is never mistaken for a job).
    """
    import pandas as pd

    st = reg.status
    open_ = ~np.isnan(st["submitted"].to_numpy()) & np.isnan(st["done"].to_numpy())
    names = set(pd.unique(st["batch_id"].to_numpy()[open_]).tolist()) if open_.any() else set()
    pool = pool_state(reg)
    if pool is not None:
        names.update(w.get("batch_id") for w in pool.workers.values() if w.get("state") != "exited")
    pids = {int(b) for b in names if isinstance(b, str) and b.isdigit()} - known
    if not pids:
        return []
    pids &= set(psutil.pids())
    logs = os.path.realpath(reg.layout.log_named("x").parent)
    out = []
    for pid in sorted(pids):
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE or "batchtools.jobs.forkserver" not in proc.cmdline():
                continue
            target = _stdout_of(proc)
        except psutil.Error:
            continue
        if target is not None and os.path.dirname(os.path.realpath(target)) == logs:
            out.append(str(pid))
    return out


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


@restorable
def make_cluster_functions_multicore(ncpus: int | None = None, fs_latency: float = 0, gpus=None) -> ClusterFunctions:
    """Run job collections as background processes on this machine, at most ``ncpus`` at once.
    ``fs_latency``: seconds a job may be missing before it counts as expired.

    Each job gets ``cpu_count // ncpus`` BLAS/OpenMP threads unless the environment or the
    ``omp_threads``/``blas_threads`` resources say otherwise. Processes are forked from a warm
    server that imports what the jobs import once, and a process whose collection ended runs the
    next one (``BATCHTOOLS_WARM=0``: a fresh fork from a cold server for every collection).

    ``gpus``: this machine's GPU devices (a list of ids as ``CUDA_VISIBLE_DEVICES`` names them,
    or a number n for ``0..n-1``): a collection submitted with ``resources={"gpus": k}`` waits
    for k free devices and sees only those; the others see none. A pool worker given several
    devices runs one job per device at once.

    >>> import batchtools as bt
    >>> bt.make_cluster_functions_multicore(2)
    ClusterFunctions(Multicore, ncpus=2)
    """
    ncpus = local_ncpus(ncpus, "CPUs to use")
    if gpus is not None and not isinstance(gpus, (list, tuple)):
        if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0:
            raise ValueError(f"gpus: a list of device ids (['0', '1']) or a number of devices, got {gpus!r}")
        gpus = list(range(gpus))
    devices = check_devices(gpus, "gpus") if gpus is not None else []
    server = ForkServer(ncpus, devices)

    def check_gpus(resources: dict) -> None:
        want = resources.get("gpus") or 0
        if want > len(devices):
            raise ValueError(f"resources: gpus={want}, but this Multicore backend has {len(devices)} device(s) "
                             f"({devices}); give its devices with make_cluster_functions_multicore(gpus=[...])")

    def submit_job(reg, jc) -> SubmitJobResult:
        pid = server.spawn(str(reg.layout.job_collection(jc.job_hash)), jc.preload, jc.resources.get("gpus") or 0)
        return SubmitJobResult(0, str(pid), jc.log_file, "OK")

    def kill_job(reg, batch_id: str) -> None:
        kill_pid(int(batch_id))

    def list_jobs_running(reg) -> list[str]:
        mine = server.running_pids()
        return [str(p) for p in mine] + other_sessions_jobs(reg, set(mine))

    return make_cluster_functions(
        "Multicore", submit_job, kill_job=kill_job, list_jobs_running=list_jobs_running,
        store_job_collection=True, fs_latency=fs_latency, poll=0.05, poll_max=1.0,
        info=f"ncpus={ncpus}" + (f", gpus={devices}" if devices else ""), wait=server.wait, processes=server,
        resource_check=check_gpus, capabilities=Capabilities(gpus=bool(devices)),
    )
