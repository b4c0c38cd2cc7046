"""Job state: the one place that says whether a job is submitted, done, failed, on the system or expired.

What the tables say (submitted/started/done/error times) plus what the backend says right now
(queued/running batch ids, corrected for the worker pool). Every verb that needs a job's state
asks here.
"""

from __future__ import annotations

import numpy as np

from .pool import pool_state
from .tables import set_rows

STATES = ("submitted", "started", "done", "error", "queued", "running", "expired", "system", "terminated")


def on_system(reg) -> tuple[set[str], set[str]]:
    """(queued, running) batch ids as the backend reports them, corrected for the worker pool."""
    cf = reg.cluster_functions
    q, r = cf.list_on_system(reg) if cf is not None else (set(), set())
    pool = pool_state(reg)
    return pool.adjust(q, r) if pool is not None else (q, r)


def started_batches(reg) -> set[str]:
    """Batch ids of which some job has started: for backends whose engine cannot tell a queued
    task from a running one (HyperQueue, Dask), the node's own word."""
    st = reg.status
    return set(st["batch_id"].to_numpy()[st["started"].notna().to_numpy()].tolist())


def masks(reg, pos: np.ndarray | None = None, system: tuple[set, set] | None = None) -> dict[str, np.ndarray]:
    """Boolean arrays (over the ``pos`` rows of the status table, default all) for every state.

    ``system`` is the backend's (queued, running) answer; it is asked for only if some job
    could be on the system.
    """
    st = reg.status
    take = (lambda a: a) if pos is None else (lambda a: a[pos])
    submitted = ~np.isnan(take(st["submitted"].to_numpy()))
    started_t = ~np.isnan(take(st["started"].to_numpy()))
    done_t = ~np.isnan(take(st["done"].to_numpy()))
    error = take(st["error"].notna().to_numpy())
    done = done_t & ~error
    queued = np.zeros(submitted.size, bool)
    running = np.zeros(submitted.size, bool)
    candidates = np.flatnonzero(submitted & ~done_t)
    if candidates.size:
        q, r = on_system(reg) if system is None else system
        if q or r:
            batch = take(st["batch_id"].to_numpy())[candidates].astype(str)
            queued[candidates] = np.isin(batch, list(q)) if q else False
            running[candidates] = np.isin(batch, list(r)) if r else False
            queued &= ~running
    system_m = queued | running
    expired = submitted & ~done_t & ~system_m
    return {
        "submitted": submitted,
        "started": started_t | running,
        "done": done,
        "error": error,
        "queued": queued,
        "running": running,
        "expired": expired,
        "system": system_m,
        "terminated": done_t,
    }


def select(reg, state: str, ids: np.ndarray | None = None, negate: bool = False) -> np.ndarray:
    """Ids (among ``ids``, default all) in ``state`` (or not, with ``negate``)."""
    sel = reg.job_ids if ids is None else ids
    m = masks(reg, None if ids is None else reg.pos(ids))[state]
    return sel[~m if negate else m]


def done_mask(reg, ids: np.ndarray) -> np.ndarray:
    """Which of ``ids`` finished without error (no backend call)."""
    st = reg.status
    pos = reg.pos(ids)
    return st["done"].notna().to_numpy()[pos] & st["error"].isna().to_numpy()[pos]


def forget_runs(reg, pos: np.ndarray) -> None:
    """Clear the previous run of jobs at status rows ``pos`` from the status table (in memory).

    The results of those runs are the caller's to delete, once the new state is saved.
    """
    st = reg.status
    for col in ("submitted", "started", "done", "mem_used", "resource_id"):
        set_rows(st, pos, col, np.nan)
    for col in ("error", "batch_id", "log_file", "job_hash"):
        set_rows(st, pos, col, None)
    reg.mark_dirty("status")


def terminated_ids(reg, pos: np.ndarray) -> np.ndarray:
    """Job ids at rows ``pos`` whose run ended (done or failed): those that may have a result."""
    st = reg.status
    return st["job_id"].to_numpy()[pos[~np.isnan(st["done"].to_numpy()[pos])]]
