"""Job state: the one place that says whether a job is submitted, done, failed, on the system or expired.

What the tables say (submitted/started/done/error times) plus what the backend says right now
(queued/running batch ids, corrected for the worker pool). Every verb that needs a job's state
asks here.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..persistence.tables import STATUS_FLOAT, STATUS_KEPT, STATUS_OBJECT, is_empty_view, null_mask, set_rows
from ..workerpool.pool import pool_state

log = logging.getLogger("batchtools")

STATES = ("submitted", "started", "done", "error", "queued", "running", "expired", "system", "terminated", "held")


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


def _member(values: np.ndarray, names: set[str]) -> np.ndarray:
    """Which of ``values`` are in ``names``: a hash lookup each (np.isin sorts both, which costs
    ~40x more for 10,000 batch ids, and wait_for_jobs asks many times a second)."""
    if not names:
        return np.zeros(len(values), bool)
    return np.fromiter(map(names.__contains__, values), bool, len(values))


def _table_masks(st, take=lambda a: a) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(submitted, started, ended, failed) as the status table ``st`` alone says them (over the
    rows ``take`` picks)."""
    return (~np.isnan(take(st["submitted"].to_numpy())), ~np.isnan(take(st["started"].to_numpy())),
            ~np.isnan(take(st["done"].to_numpy())), take(~null_mask(st["error"].to_numpy())))


def masks(reg, pos: np.ndarray | None = None, system: tuple[set, set] | None = None) -> dict[str, np.ndarray]:
    """Boolean arrays (over the ``pos`` rows of the status table, default all) for every state.

    ``system`` is the backend's (queued, running) answer; it is asked for only if some job
    could be on the system.

    A job *held* on its dependencies (:mod:`batchtools.core.dependencies`) counts as submitted,
    and is neither on the system nor expired.

    A job counts as *running* when its scheduler job runs and the job itself started (or is the
    only unfinished job of its scheduler job): the other jobs of a running chunk, and jobs a pool
    worker claimed but has not started, count as *queued*. A job submitted less than the
    backend's ``scheduler_latency`` ago that the scheduler does not list yet counts as queued
    too (schedulers list new jobs with a delay), not as expired.
    """
    st = reg.status
    take = (lambda a: a) if pos is None else (lambda a: a[pos])
    submitted, started_t, done_t, error = _table_masks(st, take)
    held_col = st["held"].to_numpy()  # submitted, waiting on dependencies: not on the system
    holding = not is_empty_view(held_col)
    held = take(~np.isnan(held_col)) if holding else np.zeros(submitted.size, bool)
    done = done_t & ~error
    queued = np.zeros(submitted.size, bool)
    running = np.zeros(submitted.size, bool)
    candidates = np.flatnonzero(submitted & ~done_t & ~held if holding else submitted & ~done_t)
    listed_here = False
    if candidates.size:
        listed_here = system is None
        q, r = on_system(reg) if system is None else system
        if q or r:
            batch = np.array(list(map(str, take(st["batch_id"].to_numpy())[candidates])), dtype=object)
            in_q = _member(batch, q)
            in_r = _member(batch, r)
            if in_r.any():
                names, inverse, counts = np.unique(batch[in_r], return_inverse=True, return_counts=True)
                alone = np.zeros(candidates.size, bool)
                alone[in_r] = counts[inverse] == 1
                runs = in_r & (started_t[candidates] | alone)
            else:
                runs = in_r
            running[candidates] = runs
            queued[candidates] = (in_q | in_r) & ~runs
        latency = getattr(reg.cluster_functions, "scheduler_latency", 0) or 0
        if latency:
            young = np.zeros(submitted.size, bool)
            young[candidates] = (time.time() - take(st["submitted"].to_numpy())[candidates]) < latency
            queued |= young & ~running
    system_m = queued | running
    expired = submitted & ~done_t & ~system_m
    if holding:
        expired &= ~held
    if expired.any() and listed_here and reg.sync():
        # the reports were merged before the listing: a job that ended in between (its report
        # written before it ended) is neither listed nor merged; merged now, it is not expired
        return masks(reg, pos, (q, r))
    if expired.any():
        found = adopt_results(reg, np.flatnonzero(expired) if pos is None else pos[expired])
        if found.any():
            hit = np.flatnonzero(expired)[found]
            done_t[hit] = done[hit] = started_t[hit] = True
            expired[hit] = False
    return {
        "submitted": submitted,
        "started": started_t | running,  # running implies started
        "done": done,
        "error": error,
        "queued": queued,
        "running": running,
        "expired": expired,
        "system": system_m,
        "terminated": done_t,
        "held": held,
    }


def table_counts(st) -> dict[str, int]:
    """What the status table ``st`` alone says (:data:`batchtools.core.jobstate.counts.TABLE_COUNTS`): counts
    as :func:`masks` gives them, and how many submitted jobs have not finished."""
    submitted, started_t, done_t, error = _table_masks(st)
    return {"defined": int(submitted.size), "submitted": int(submitted.sum()), "started": int(started_t.sum()),
            "done": int((done_t & ~error).sum()), "error": int(error.sum()),
            "unfinished": int((submitted & ~done_t).sum())}


def adopt_results(reg, rows: np.ndarray) -> np.ndarray:
    """Jobs at status ``rows`` that left the system without reporting but whose result exists
    finished: their run wrote the result, then died before its status row was flushed (a result
    of an earlier run is never in place while a later one is pending: it is set aside at
    resubmission). They are recorded as done (in memory; saved with the next save). Returns which
    of ``rows`` had a result."""
    ids = reg.status["job_id"].to_numpy()[rows]
    store = reg.store
    have = np.isin(ids, store.ids()) if ids.size > 256 else np.fromiter(
        (store.exists(i) for i in ids.tolist()), dtype=bool, count=ids.size)
    if have.any():
        st = reg.status
        hit = rows[have]
        when = np.array([t or time.time() for t in store.modified_many(ids[have].tolist())], dtype=float)
        set_rows(st, hit, "done", when)
        started = st["started"].to_numpy()[hit]
        set_rows(st, hit, "started", np.where(np.isnan(started), when, started))
        reg.mark_dirty("status")
        log.info("jobs %s left the system without reporting, but their results exist: recorded as done",
                 ids[have][:10].tolist())
    return have


def select(reg, state: str, ids: np.ndarray | None = None, negate: bool = False) -> np.ndarray:
    """Ids (among ``ids``, default all) in ``state`` (or not, with ``negate``)."""
    sel = reg.job_ids if ids is None else ids
    m = masks(reg, None if ids is None else reg.pos(ids))[state]
    return sel[~m if negate else m]


def done_mask(reg, ids: np.ndarray) -> np.ndarray:
    """Which of ``ids`` finished without error (no backend call)."""
    st = reg.status
    pos = reg.pos(ids)
    return ~np.isnan(st["done"].to_numpy()[pos]) & null_mask(st["error"].to_numpy()[pos])


def forget_runs(reg, pos: np.ndarray) -> None:
    """Clear the previous run of jobs at status rows ``pos`` from the status table (in memory).

    The results of those runs are the caller's to delete, once the new state is saved.
    """
    st = reg.status
    for col in STATUS_FLOAT:
        set_rows(st, pos, col, np.nan)
    for col in STATUS_OBJECT:
        if col not in STATUS_KEPT:  # the user's name for the job, its dependencies: not part of a run
            set_rows(st, pos, col, None)
    reg.mark_dirty("status")


def terminated_ids(reg, pos: np.ndarray) -> np.ndarray:
    """Job ids at rows ``pos`` whose run ended (done or failed): those that may have a result."""
    st = reg.status
    return st["job_id"].to_numpy()[pos[~np.isnan(st["done"].to_numpy()[pos])]]
