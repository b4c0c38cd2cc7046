"""Multicore: job collections as local processes, forked from a pre-warmed fork server.

Submission returns at once while fewer than ``ncpus`` collections run; otherwise
it blocks until a child ends (no polling sleep, unlike R's one-second loop).

The server stays warm (``node/forkserver.py``): before forking it imports the installed modules
the collection names in ``preload`` and those earlier children imported, and a child whose
collection ended runs the next one instead of a new fork. It runs with ``cpu_count // ncpus``
BLAS/OpenMP threads per job (``thread_env``), as joblib's workers do.
"""

from __future__ import annotations

import os

import numpy as np
import psutil

from ..core.contract.backend import Capabilities, ClusterFunctions, SubmitJobResult, make_cluster_functions, restorable
from ..core.jobstate.resources import check_devices
from ..core.workerpool.pool import pool_state
from .commands import local_ncpus, thread_env
from .forkclient import ForkServer, kill_pid


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
            if proc.status() == psutil.STATUS_ZOMBIE or not FORK_SERVERS & set(proc.cmdline()):
                continue
            target = _stdout_of(proc)
        except psutil.Error:
            continue
        if target is not None and os.path.dirname(os.path.realpath(target)) == logs:
            out.append(str(pid))
    return out


# a fork server started before the relayout (its jobs may still run) has the old module name
FORK_SERVERS = {"batchtools.node.forkserver", "batchtools.jobs.forkserver"}


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
    server = ForkServer(ncpus, devices, env=thread_env(ncpus))

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
