"""Socket: a set of persistent local processes (R's snow socket cluster).

The processes start once and run job collections one after another, so a job costs no
interpreter start. Submission is non-blocking while a process is idle; a process that crashes
is replaced, and its jobs show up as expired.
"""

from __future__ import annotations

import atexit
import itertools
import subprocess
import sys
import threading

from ..core.contract.backend import ClusterFunctions, SubmitJobResult, make_cluster_functions, restorable
from .commands import local_ncpus, thread_env


class _Process:
    """One persistent process of :class:`SocketProcesses`."""

    def __init__(self, index: int, owner: SocketProcesses):
        self.index = index
        self.owner = owner
        self.busy: str | None = None  # batch id of the running collection
        self.proc = subprocess.Popen([sys.executable, "-m", "batchtools.node.socket_process"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                                     env=thread_env(owner.ncpus))
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for _line in self.proc.stdout:
            with self.owner.cond:
                self.busy = None
                self.owner.changes += 1
                self.owner.cond.notify_all()
        with self.owner.cond:  # the process ended: whatever it ran is gone
            self.busy = None
            self.owner.changes += 1
            self.owner.cond.notify_all()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, path: str, batch_id: str) -> None:
        self.busy = batch_id
        self.proc.stdin.write(f"{path}\n".encode())
        self.proc.stdin.flush()


class SocketProcesses:
    """``ncpus`` persistent processes; started on first use, stopped at interpreter exit."""

    def __init__(self, ncpus: int):
        self.ncpus = ncpus
        self.procs: list[_Process] = []
        self.cond = threading.Condition()
        self.changes = 0
        self.counter = itertools.count(1)
        atexit.register(self.close)

    def submit(self, path: str) -> str:
        with self.cond:
            while True:
                self.procs = [w for w in self.procs if w.alive or w.busy]
                idle = [w for w in self.procs if w.alive and w.busy is None]
                if not idle and len(self.procs) < self.ncpus:
                    idle = [_Process(len(self.procs), self)]
                    self.procs.append(idle[0])
                if idle:
                    batch_id = f"socket-{next(self.counter)}"
                    idle[0].send(path, batch_id)
                    return batch_id
                self.cond.wait()

    def running(self) -> list[str]:
        with self.cond:
            return [w.busy for w in self.procs if w.busy is not None and w.alive]

    def kill(self, batch_id: str) -> None:
        with self.cond:
            hit = [w for w in self.procs if w.busy == batch_id]
        for w in hit:  # the only way to stop a job in a persistent process is to end the process
            w.proc.kill()
            w.proc.wait()

    def wait(self, timeout: float) -> None:
        with self.cond:
            seen = self.changes
            self.cond.wait_for(lambda: self.changes != seen, timeout)

    def close(self) -> None:
        for w in self.procs:
            if w.alive:
                try:
                    w.proc.stdin.close()
                    w.proc.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    w.proc.kill()
        self.procs = []


@restorable
def make_cluster_functions_socket(ncpus: int | None = None, fs_latency: float = 0) -> ClusterFunctions:
    """Run job collections on ``ncpus`` persistent local processes. ``fs_latency``: seconds a job
    may be missing before it counts as expired (0: the processes share this machine's file system;
    R defaults to 65).

    >>> import batchtools as bt
    >>> bt.make_cluster_functions_socket(2)
    ClusterFunctions(Socket, ncpus=2)
    """
    ncpus = local_ncpus(ncpus, "persistent processes")
    processes = SocketProcesses(ncpus)

    def submit_job(reg, jc) -> SubmitJobResult:
        batch_id = processes.submit(str(reg.layout.job_collection(jc.job_hash)))
        return SubmitJobResult(0, batch_id, jc.log_file, "OK")

    return make_cluster_functions(
        "Socket", submit_job, kill_job=lambda reg, batch_id: processes.kill(batch_id),
        list_jobs_running=lambda reg: processes.running(), store_job_collection=True, fs_latency=fs_latency,
        poll=0.05, poll_max=1.0, info=f"ncpus={ncpus}", wait=processes.wait, processes=processes,
    )
