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
import os
import signal
import subprocess
import sys
import threading
import time

from ..core.backend import ClusterFunctions, SubmitJobResult, make_cluster_functions
from .commands import local_ncpus, thread_env


class ForkServer:
    """Client of ``python -m batchtools.jobs.forkserver``: spawn, track and reap children."""

    def __init__(self, ncpus: int) -> None:
        self.ncpus = ncpus
        self.proc: subprocess.Popen | None = None
        self.cond = threading.Condition()
        self.running: set[int] = set()
        self.replies: list[int] = []
        self.changes = 0
        self.preloaded: set[str] = set()  # modules this server was already asked to import

    def ensure_started(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "batchtools.jobs.forkserver"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0, env=thread_env(self.ncpus),
        )
        self.preloaded = set()
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        atexit.register(self.close)

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            kind, _, rest = line.decode().strip().partition(" ")
            with self.cond:
                if kind == "pid":
                    pid = int(rest)
                    self.running.add(pid)
                    self.replies.append(pid)
                elif kind == "exit":
                    self.running.discard(int(rest.split()[0]))
                self.changes += 1
                self.cond.notify_all()
        with self.cond:
            self.running.clear()
            self.replies.append(-1)
            self.changes += 1
            self.cond.notify_all()

    def spawn(self, path: str, preload=()) -> int:
        """Start a child running the collection at ``path``, once fewer than ``ncpus`` run; its pid.

        ``preload``: installed modules the collection's jobs import; the server imports those it
        has not imported yet before it forks (once per server, not once per child)."""
        self.ensure_started()
        with self.cond:
            while len(self.running) >= self.ncpus:
                self.cond.wait()
            new = [m for m in preload if m not in self.preloaded and m.replace(".", "").replace("_", "").isalnum()]
            if new:
                self.preloaded.update(new)
                self.proc.stdin.write(f"import {' '.join(new)}\n".encode())
            self.proc.stdin.write(f"run {path}\n".encode())
            self.proc.stdin.flush()
            while not self.replies:
                self.cond.wait()
            pid = self.replies.pop(0)
        if pid < 0:
            raise RuntimeError("the Multicore fork server died; see the job's log")
        return pid

    def wait(self, timeout: float) -> None:
        """Return when a child starts or ends, or after ``timeout`` seconds."""
        with self.cond:
            seen = self.changes
            self.cond.wait_for(lambda: self.changes != seen, timeout)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass


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


def make_cluster_functions_multicore(ncpus: int | None = None) -> ClusterFunctions:
    """Run job collections as background processes on this machine, at most ``ncpus`` at once.

    Each job gets ``cpu_count // ncpus`` BLAS/OpenMP threads unless the environment or the
    ``omp_threads``/``blas_threads`` resources say otherwise. Processes are forked from a warm
    server that imports what the jobs import once, and a process whose collection ended runs the
    next one (``BATCHTOOLS_WARM=0``: a fresh fork from a cold server for every collection).

    >>> import batchtools as bt
    >>> bt.make_cluster_functions_multicore(2)
    ClusterFunctions(Multicore, ncpus=2)
    """
    ncpus = local_ncpus(ncpus, "CPUs to use")
    server = ForkServer(ncpus)

    def submit_job(reg, jc) -> SubmitJobResult:
        pid = server.spawn(str(reg.layout.job_collection(jc.job_hash)), jc.preload)
        return SubmitJobResult(0, str(pid), jc.log_file, "OK")

    def kill_job(reg, batch_id: str) -> None:
        kill_pid(int(batch_id))

    def list_jobs_running(reg) -> list[str]:
        with server.cond:
            return [str(p) for p in server.running]

    return make_cluster_functions(
        "Multicore", submit_job, kill_job=kill_job, list_jobs_running=list_jobs_running,
        store_job_collection=True, poll=0.05, poll_max=1.0, info=f"ncpus={ncpus}",
        wait=server.wait, processes=server,
    )
