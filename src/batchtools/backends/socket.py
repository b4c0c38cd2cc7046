"""Socket: a pool of persistent local worker processes (R's snow socket cluster).

Workers start once and run job collections one after another in-process, so a
job costs no interpreter start. Submission is non-blocking while a worker is
idle; a worker that crashes is replaced, and its jobs show up as expired.
"""

from __future__ import annotations

import atexit
import itertools
import subprocess
import sys
import threading

from .base import ClusterFunctions, SubmitJobResult, local_ncpus, make_cluster_functions


class _PoolWorker:
    def __init__(self, index: int, pool: SocketPool):
        self.index = index
        self.pool = pool
        self.busy: str | None = None  # batch id of the running collection
        self.proc = subprocess.Popen([sys.executable, "-m", "batchtools.jobs.socket_worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for _line in self.proc.stdout:
            with self.pool.cond:
                self.busy = None
                self.pool.changes += 1
                self.pool.cond.notify_all()
        with self.pool.cond:  # the process ended: whatever it ran is gone
            self.busy = None
            self.pool.changes += 1
            self.pool.cond.notify_all()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, path: str, batch_id: str) -> None:
        self.busy = batch_id
        self.proc.stdin.write(f"{path}\n".encode())
        self.proc.stdin.flush()


class SocketPool:
    """``ncpus`` persistent workers; started on first use, stopped at interpreter exit."""

    def __init__(self, ncpus: int):
        self.ncpus = ncpus
        self.workers: list[_PoolWorker] = []
        self.cond = threading.Condition()
        self.changes = 0
        self.counter = itertools.count(1)
        atexit.register(self.close)

    def submit(self, path: str) -> str:
        with self.cond:
            while True:
                self.workers = [w for w in self.workers if w.alive or w.busy]
                idle = [w for w in self.workers if w.alive and w.busy is None]
                if not idle and len(self.workers) < self.ncpus:
                    idle = [_PoolWorker(len(self.workers), self)]
                    self.workers.append(idle[0])
                if idle:
                    batch_id = f"socket-{next(self.counter)}"
                    idle[0].send(path, batch_id)
                    return batch_id
                self.cond.wait()

    def running(self) -> list[str]:
        with self.cond:
            return [w.busy for w in self.workers if w.busy is not None and w.alive]

    def kill(self, batch_id: str) -> None:
        with self.cond:
            hit = [w for w in self.workers if w.busy == batch_id]
        for w in hit:  # the only way to stop a job in a persistent worker is to end the worker
            w.proc.kill()
            w.proc.wait()

    def wait(self, timeout: float) -> None:
        with self.cond:
            seen = self.changes
            self.cond.wait_for(lambda: self.changes != seen, timeout)

    def close(self) -> None:
        for w in self.workers:
            if w.alive:
                try:
                    w.proc.stdin.close()
                    w.proc.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    w.proc.kill()
        self.workers = []


def make_cluster_functions_socket(ncpus: int | None = None) -> ClusterFunctions:
    """Run job collections on ``ncpus`` persistent local worker processes.

    >>> import batchtools as bt
    >>> bt.make_cluster_functions_socket(2)
    ClusterFunctions(Socket, ncpus=2)
    """
    ncpus = local_ncpus(ncpus, "worker processes")
    pool = SocketPool(ncpus)

    def submit_job(reg, jc) -> SubmitJobResult:
        batch_id = pool.submit(str(reg.layout.job_collection(jc.job_hash)))
        return SubmitJobResult(0, batch_id, jc.log_file, "OK")

    cf = make_cluster_functions(
        "Socket", submit_job, kill_job=lambda reg, batch_id: pool.kill(batch_id),
        list_jobs_running=lambda reg: pool.running(), store_job_collection=True,
        poll=0.05, poll_max=1.0, info=f"ncpus={ncpus}", wait=pool.wait, ncpus=ncpus,
    )
    cf.pool = pool  # type: ignore[attr-defined]
    return cf
