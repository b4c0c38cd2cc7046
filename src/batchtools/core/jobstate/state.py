"""Job state: the one place that says whether a job is submitted, done, failed, on the system or expired.

What the tables say (submitted/started/done/error times) plus what the backend says right now
(queued/running batch ids, corrected for the worker pool). Every verb that needs a job's state
asks here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

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
        if pos is not None and reg.status is not st:  # a read-only session read the tables again
            return _masks_of(reg, st["job_id"].to_numpy()[pos], (q, r))
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


def _masks_of(reg, ids: np.ndarray, system: tuple[set, set]) -> dict[str, np.ndarray]:
    """:func:`masks` over the jobs ``ids`` in the status table as read again (their rows may have
    moved); a job the writeable session removed meanwhile is in no state."""
    all_ids = reg.job_ids
    at = np.minimum(np.searchsorted(all_ids, ids), max(all_ids.size - 1, 0))
    there = all_ids[at] == ids if all_ids.size else np.zeros(ids.size, bool)
    out = {}
    for name, m in masks(reg, at[there], system).items():
        out[name] = np.zeros(ids.size, bool)
        out[name][there] = m
    return out


def table_counts(st) -> dict[str, int]:
    """What the status table ``st`` alone says (:data:`batchtools.core.jobstate.counts.TABLE_COUNTS`): counts
    as :func:`masks` gives them, and how many submitted jobs have not finished."""
    return _count(st)[0]


def _count(st) -> tuple[dict[str, int], np.ndarray]:
    """:func:`table_counts` of ``st``, and the rows of its unfinished submitted jobs."""
    submitted, started_t, done_t, error = _table_masks(st)
    unfinished = np.flatnonzero(submitted & ~done_t)
    return {"defined": int(submitted.size), "submitted": int(np.count_nonzero(submitted)),
            "started": int(np.count_nonzero(started_t)), "done": int(np.count_nonzero(done_t & ~error)),
            "error": int(np.count_nonzero(error)), "unfinished": int(unfinished.size)}, unfinished


# the status columns the states are derived from
COUNTED = ("submitted", "started", "done", "error")


def _version(st) -> tuple:
    """What tells this version of ``st``'s counted columns from any other: each column's buffer,
    shape and strides. The counts cache holds the columns (as Series), so their buffers live on
    and no later array can have the same address, and pandas' copy-on-write gives a column a new
    array at an in-place write (``st.loc[i, "done"] = t``) while the cache shares it; a column
    replaced (:func:`set_rows`, a new frame) has another buffer. NumPy views of a frame's columns
    are read-only, so nothing writes into a buffer behind pandas' back."""
    out = []
    for c in COUNTED:
        a = st[c].to_numpy()
        out.append((a.__array_interface__["data"][0], a.shape, a.strides, a.dtype.str))
    return tuple(out)


@dataclass(eq=False)
class CountsCache:
    """One version of the status table's counts (``reg.session.status_counts``): the counted
    columns it was made from (held, see :func:`_version`), their version, the counts and the
    rows of unfinished submitted jobs."""

    held: tuple
    version: tuple
    counts: dict[str, int]
    unfinished: np.ndarray

    def __eq__(self, other) -> bool:
        return isinstance(other, CountsCache) and self.version == other.version and self.counts == other.counts

    __hash__ = None  # type: ignore[assignment]


def status_counts(reg) -> tuple[dict[str, int], np.ndarray]:
    """:func:`table_counts` of ``reg.status`` and the rows of its unfinished submitted jobs, counted
    once per version of the counted columns (kept in ``reg.session.status_counts``): a registry
    of 10,000,000 jobs answers ``get_status`` without ten passes over its rows. Any change of a
    counted column, by whatever path, is a new version (see :func:`_version`), so a count is
    never stale."""
    st = reg.status
    version = _version(st)
    cached = reg.session.status_counts
    if cached is not None and cached.version == version:
        return dict(cached.counts), cached.unfinished
    counts, unfinished = _count(st)
    unfinished.flags.writeable = False
    reg.session.status_counts = CountsCache(tuple(st[c] for c in COUNTED), version, counts, unfinished)
    return dict(counts), unfinished


def state_counts(reg) -> dict[str, int]:
    """Jobs in each state (the sums of :func:`masks` over all jobs, ``terminated`` left out),
    from the cached :func:`status_counts` and :func:`masks` over the unfinished submitted jobs
    only (no other job can be queued, running or expired, nor change its state here)."""
    counts, rows = status_counts(reg)
    zero = {"queued": 0, "running": 0, "expired": 0, "system": 0, "held": 0}  # only unfinished submitted jobs
    if not rows.size:
        return {k: counts[k] for k in ("submitted", "started", "done", "error")} | zero
    before = _version(reg.status)
    started_before = int(np.count_nonzero(~np.isnan(reg.status["started"].to_numpy()[rows])))
    m = masks(reg, rows)
    if _version(reg.status) != before:  # merged reports or adopted results changed rows: count them all
        m = masks(reg)
        return {k: int(np.count_nonzero(v)) for k, v in m.items() if k != "terminated"}
    out = {k: int(np.count_nonzero(v)) for k, v in m.items() if k in zero}
    out.update(submitted=counts["submitted"], error=counts["error"], done=counts["done"] + int(np.count_nonzero(m["done"])),
               started=counts["started"] - started_before + int(np.count_nonzero(m["started"])))
    return out


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
        if reg.cache_dir is not None:  # their reports, merged later, do not make them new: the cache adds them
            reg.session.adopted.update(ids[have].tolist())
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
