"""Dependencies between jobs (issue 29): which jobs a job waits for, holding it, releasing it.

``submit_jobs(ids, after=dep_ids)`` stores, per job of ``ids``, the jobs it waits for in the
status table's ``after`` column (a sorted int64 array per job, None without dependencies: the
column is one None for a registry that never used it), saved with the tables, so every later
session honours them. A job whose dependencies are not all done when it is submitted is *held*:
it counts as submitted but is not handed to the backend; ``held`` (when) and ``hold_chunk``
(its chunk: jobs of one chunk are released together; :data:`HOLD_POOL` for the worker pool) and
``resource_id`` (the resources it was submitted with, retry policy included) keep its
submission. :func:`review` (run by ``wait_for_jobs`` and ``sync_registry`` through
``api/heal.release``) finds held jobs whose dependencies are all done (to be submitted as they
were asked for) and gives held jobs with a dependency that failed, expired, was never submitted
or was removed the reason ``dependency`` (neither an error nor expired: resubmitting the
dependency lifts it, and its success releases them).

A job of :func:`batch_map_results` also waits for its *source* job, in the source registry: the
registry's ``extra[SOURCE]`` names the source's folder (nothing is stored for other registries)
and each job's source job is its ``src_id`` parameter. :func:`waiting` and :func:`review` treat
it as one more dependency, read from the source registry opened read-only (its tables as last
committed and its nodes' update files, never written); a source job that failed, was never
submitted, was removed or is held for the reason ``dependency`` gives the reason ``dependency``.
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pandas as pd

from .jobstate.ids import as_id_array
from .jobstate.state import done_mask, forget_runs, masks, terminated_ids
from .persistence.files import read_table
from .persistence.layout import Layout
from .persistence.tables import is_empty_view, null_mask, set_rows
from .persistence.txn import committed_versions

log = logging.getLogger("batchtools")

HOLD_POOL = -1.0  # the hold_chunk of jobs held for the worker pool (submit_workers)
DEPENDENCY = "dependency"  # the reason of a held job whose dependency cannot be done as things stand
SOURCE = "map_results_source"  # reg.extra key: the folder of the registry whose results the jobs map (batch_map_results)


def source_ids(reg, pos: np.ndarray) -> np.ndarray | None:
    """The source job of each job at status rows ``pos`` (batch_map_results), None if the
    registry maps no other registry's results."""
    if not reg.extra.get(SOURCE):
        return None
    defs = reg.defs
    def_id = reg.status["def_id"].to_numpy()[pos]
    order = np.argsort(defs["def_id"].to_numpy(), kind="stable")
    at = order[np.searchsorted(defs["def_id"].to_numpy(), def_id, sorter=order)]
    return defs["src_id"].to_numpy()[at].astype(np.int64)


def _source_view(reg):
    """The source registry of ``reg``, read-only, synced: read again once its master saved its
    status table, else only the nodes' new update files are merged (in memory). None if its
    folder is gone."""
    from .registry import RegistryState, check_format

    memo = reg.session.scratch(SOURCE)
    path = reg.extra[SOURCE]
    view = memo.get("view")
    try:
        st = os.stat(view.layout.table("status") if view is not None else os.path.join(path, "registry.pkl"))
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if view is None or memo.get("stamp") != stamp:
            layout = Layout(path)
            meta = read_table(committed_versions(path).get(str(layout.meta), layout.meta) or layout.meta, "settings")
            check_format(meta, layout.meta)
            view = RegistryState(path, writeable=False, kind=meta.get("kind", "map"))
            view.set_meta(meta)
            view.read_tables()
            st = os.stat(view.layout.table("status"))
            memo["view"], memo["stamp"] = view, (st.st_ino, st.st_mtime_ns, st.st_size)
        view.sync()
    except (OSError, ValueError) as e:
        log.warning("the source registry %s of this registry's jobs (batch_map_results) cannot be read (%s): jobs "
                    "that wait for its results stay held", path, e)
        memo.clear()
        return None
    return view


def source_state(reg, src: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Over source job ids ``src``: (done, blocked: removed, failed, never submitted or held for
    the reason ``dependency`` there, failed: of those, failed)."""
    view = _source_view(reg)
    if view is None:
        return np.zeros(src.size, bool), np.ones(src.size, bool), np.zeros(src.size, bool)
    known = view.job_ids
    where = np.minimum(np.searchsorted(known, src), max(known.size - 1, 0))
    exists = known[where] == src if known.size else np.zeros(src.size, bool)
    pos = where[exists]
    st = view.status
    done, failed, blocked = np.zeros(src.size, bool), np.zeros(src.size, bool), ~exists
    done[exists] = done_mask(view, src[exists])
    failed[exists] = ~null_mask(st["error"].to_numpy()[pos])
    blocked[exists] = failed[exists] | np.isnan(st["submitted"].to_numpy()[pos]) | blocked_mask(view, pos)
    return done, blocked, failed


def stored_after(reg, pos: np.ndarray) -> list[np.ndarray | None]:
    """The stored dependencies of the jobs at status rows ``pos`` (None: none)."""
    col = reg.status["after"].to_numpy()
    if is_empty_view(col):
        return [None] * len(pos)
    return col[pos].tolist()


def _edges(reg) -> dict[int, np.ndarray]:
    """Every stored dependency: job id -> the ids it waits for."""
    col = reg.status["after"].to_numpy()
    if is_empty_view(col):
        return {}
    rows = np.flatnonzero(~null_mask(col))
    return dict(zip(reg.job_ids[rows].tolist(), col[rows].tolist()))


def check_after(reg, ids: np.ndarray, after) -> np.ndarray | None:
    """``after`` as sorted unique job ids (None stays None), refused before anything is written
    if it names jobs that do not exist (never defined, or removed), a job of ``ids`` itself, or
    makes a cycle with the stored dependencies."""
    if after is None:
        return None
    try:
        dep = np.unique(as_id_array(after, "after"))
    except TypeError as e:
        raise TypeError(f"{e} (after: the job ids the jobs of ids wait for, e.g. after=map_ids)") from None
    known = reg.job_ids
    where = np.minimum(np.searchsorted(known, dep), max(known.size - 1, 0))
    unknown = dep[(known[where] != dep) if known.size else np.ones(dep.size, bool)]
    if unknown.size:
        raise ValueError(f"after: job id(s) {_shown(unknown)} do not exist in this registry (never defined, or "
                         "removed); give ids of its jobs (e.g. find_jobs()) and submit again")
    itself = np.intersect1d(ids, dep)
    if itself.size:
        raise ValueError(f"after: job(s) {_shown(itself)} would wait for themselves; leave them out of after "
                         "(or out of ids)")
    edges, targets = _edges(reg), set(ids.tolist())
    seen: dict[int, int | None] = {int(d): None for d in dep.tolist()}  # reached job -> the job that waits for it
    frontier = list(seen)
    while frontier:
        hit = [j for j in frontier if j in targets]
        if hit:
            path, j = [hit[0]], seen[hit[0]]
            while j is not None:  # back to the job of after that (through stored dependencies) waits for it
                path.append(j)
                j = seen[j]
            raise ValueError(f"after: would make a cycle: job {hit[0]} would wait for job {path[-1]}, which already "
                             f"waits for it (stored: {' waits for '.join(map(str, path[::-1]))}); leave job "
                             f"{path[-1]} out of after")
        nxt = []
        for j in frontier:
            for d in edges.get(j, np.empty(0, np.int64)).tolist():
                if d not in seen:
                    seen[d] = j
                    nxt.append(d)
        frontier = nxt
    return dep


def check_not_waited_for(reg, gone: np.ndarray) -> None:
    """Refuse to remove the jobs ``gone`` while other jobs wait for them (a new job could get a
    removed one's id, and its dependants would wait for it)."""
    edges = _edges(reg)
    if not edges:
        return
    gone_set = set(np.asarray(gone).tolist())
    waiters = sorted(j for j, dep in edges.items() if j not in gone_set and gone_set.intersection(dep.tolist()))
    if waiters:
        raise ValueError(f"ids: jobs {_shown(np.array(waiters))} wait for some of them (submit_jobs(after=)); "
                         "remove those too, or reset_jobs() them and submit them with other dependencies first")


def _shown(ids: np.ndarray) -> str:
    return ", ".join(map(str, ids[:10].tolist())) + (" ..." if ids.size > 10 else "")


def store_after(reg, ids: np.ndarray, dep: np.ndarray) -> None:
    """Record ``dep`` as what each of ``ids`` waits for (in memory; an empty ``dep`` clears them).
    Every job shares one read-only array (pickled once)."""
    value = None
    if dep.size:
        value = np.array(dep, dtype=np.int64)
        value.flags.writeable = False
    cells = np.empty(ids.size, dtype=object)
    cells[:] = [value] * ids.size
    set_rows(reg.status, reg.pos(ids), "after", cells)
    reg.mark_dirty("status")


def waiting(reg, ids: np.ndarray, dep: np.ndarray | None = None) -> np.ndarray:
    """Which of ``ids`` wait for a dependency that is not done: one of ``dep`` (if given, else
    their stored ones) or their source job (batch_map_results)."""
    pos = reg.pos(ids)
    if dep is not None:
        out = np.full(ids.size, bool(dep.size) and not done_mask(reg, dep).all())
    else:
        out = np.zeros(ids.size, bool)
        for k, d in enumerate(stored_after(reg, pos)):
            if d is not None and d.size:
                out[k] = not done_mask(reg, d).all()
    src = source_ids(reg, pos)
    if src is not None and src.size:
        out |= ~source_state(reg, src)[0]
    return out


def hold(reg, ids: np.ndarray, chunks: np.ndarray, resource_ids: np.ndarray, pool: bool = False) -> None:
    """Hold ``ids`` (inside a mutation): submitted, not handed to the backend, each with its chunk
    (jobs of a chunk are released together) and resource id. Their previous runs are forgotten
    (results set aside, dropped once the mutation succeeded, put back if it fails)."""
    pos = reg.pos(ids)
    tag = f"hold{int(time.time() * 1e6)}"
    moved = reg.store.stash(terminated_ids(reg, pos).tolist(), tag)
    reg.on_rollback(lambda: reg.store.restore(moved, tag))
    reg.after_commit(lambda: reg.store.drop(moved, tag))
    forget_runs(reg, pos)
    st = reg.status
    now = time.time()
    set_rows(st, pos, "submitted", now)
    set_rows(st, pos, "held", now)
    set_rows(st, pos, "resource_id", np.asarray(resource_ids, dtype=float))
    if pool:
        set_rows(st, pos, "hold_chunk", HOLD_POOL)
    else:  # chunk numbers unique in the registry, so that chunks of two submissions stay apart
        base = np.nanmax(st["hold_chunk"].to_numpy(), initial=0.0) + 1
        set_rows(st, pos, "hold_chunk", base + pd.factorize(chunks, sort=True)[0])
    reg.mark_dirty("status")


def held_rows(reg) -> np.ndarray:
    """Status rows of the held jobs."""
    col = reg.status["held"].to_numpy()
    return np.empty(0, np.int64) if is_empty_view(col) else np.flatnonzero(~np.isnan(col))


def review(reg, system: tuple[set, set] | None = None) -> pd.DataFrame:
    """Look at every held job's dependencies: those whose dependencies are all done are returned
    (``job_id``, ``chunk``: ``hold_chunk``, ``resource_id``), to be submitted; a job whose
    chunk still has a job waiting stays held. Held jobs with a dependency that failed, expired,
    was never submitted or removed, or is held for such a reason itself, get the reason
    ``dependency`` (others lose it). ``system``: the backend's (queued, running) answer, if the
    caller has it."""
    rows = held_rows(reg)
    empty = pd.DataFrame({"job_id": np.empty(0, np.int64), "chunk": np.empty(0), "resource_id": np.empty(0)})
    if rows.size == 0:
        return empty
    st = reg.status
    src = source_ids(reg, rows)
    src_done, src_blocked, src_failed = (np.ones(rows.size, bool), np.zeros(rows.size, bool), np.zeros(0, bool)) \
        if src is None else source_state(reg, src)
    cells = stored_after(reg, rows)
    lengths = np.array([0 if c is None else c.size for c in cells], np.int64)
    flat = np.concatenate([c for c in cells if c is not None]) if lengths.any() else np.empty(0, np.int64)
    owner = np.repeat(np.arange(rows.size), lengths)
    deps = np.unique(flat)
    known = reg.job_ids
    where = np.minimum(np.searchsorted(known, deps), max(known.size - 1, 0))
    exists = known[where] == deps if known.size else np.zeros(deps.size, bool)
    good = np.zeros(deps.size, bool)
    bad = ~exists
    failed = ~exists  # removed, failed or expired (not merely never submitted)
    if exists.any():
        m = masks(reg, where[exists], system)
        if system is not None and m["expired"].any() and reg.sync():
            # a job that ended after the last merge and before the listing: merged now, it is not expired
            m = masks(reg, where[exists], system)
        good[exists] = m["done"]
        bad[exists] = m["error"] | m["expired"] | ~m["submitted"]
        failed[exists] = m["error"] | m["expired"]
    held_ids = reg.job_ids[rows]
    ok = np.isin(flat, deps[good])
    ready = (np.bincount(owner[~ok], minlength=rows.size) == 0) & src_done
    blocked = np.zeros(rows.size, bool)
    bad_ids = deps[bad]
    while True:  # a job held on a blocked job is blocked too
        now = (np.bincount(owner[np.isin(flat, bad_ids)], minlength=rows.size) > 0) | src_blocked
        if (now == blocked).all():
            break
        blocked = now
        bad_ids = np.union1d(bad_ids, held_ids[blocked])
    reason = st["reason"].to_numpy()[rows]
    want = np.where(blocked, DEPENDENCY, None).astype(object)
    keep = np.array([r != DEPENDENCY for r in reason.tolist()]) & ~blocked  # another reason stays
    want[keep] = reason[keep]
    if any(a is not b and a != b for a, b in zip(want.tolist(), reason.tolist())):
        newly = held_ids[blocked & (reason != DEPENDENCY)]
        if newly.size:  # a warning when something failed; a dependency not submitted yet may just come later
            log.log(logging.WARNING if failed.any() or src_failed.any() else logging.INFO,
                    "jobs %s stay held: a job they wait for failed, expired, was never submitted or was removed "
                    "(reason 'dependency'); (re)submit it, and they are submitted once it is done", _shown(newly))
        set_rows(st, rows, "reason", want)
        reg.mark_dirty("status")
    chunk = st["hold_chunk"].to_numpy()[rows]
    # a chunk goes only as a whole
    not_ready = np.unique(chunk[~ready & (chunk != HOLD_POOL)])
    ready &= ~np.isin(chunk, not_ready) | (chunk == HOLD_POOL)
    return pd.DataFrame({"job_id": held_ids[ready], "chunk": chunk[ready],
                         "resource_id": st["resource_id"].to_numpy()[rows[ready]]})


def blocked_mask(reg, pos: np.ndarray) -> np.ndarray:
    """Which jobs at status rows ``pos`` are held with the reason ``dependency``."""
    st = reg.status
    held = ~null_mask(st["held"].to_numpy()[pos])
    return held & (st["reason"].to_numpy()[pos] == DEPENDENCY)


def scheduler_enforces(reg) -> bool:
    """Whether the registry's backend holds a job until the jobs it waits for ended well
    (``capabilities.dependencies``: the scheduler gets the collection's ``after``)."""
    cf = reg.cluster_functions
    return bool(getattr(getattr(cf, "capabilities", None), "dependencies", False))


def scheduler_after(reg, ids: np.ndarray, system: tuple[set, set],
                    dep: np.ndarray | None = None) -> tuple[str, ...] | None:
    """The scheduler ids a chunk of ``ids`` can wait for on the scheduler: those of the
    dependencies (``dep``, else the stored ones) not done yet, if every one of them is on the
    system under a batch id of its own (not held, not in the worker pool's queues); None if one
    is not (the chunk is held)."""
    src = source_ids(reg, reg.pos(ids))
    if src is not None and not source_state(reg, src)[0].all():
        return None  # a source job of another registry: the scheduler cannot wait for it
    deps = [dep] if dep is not None else [d for d in stored_after(reg, reg.pos(ids)) if d is not None]
    if not deps:
        return ()
    dep = np.unique(np.concatenate(deps))
    dep = dep[~done_mask(reg, dep)]
    if dep.size == 0:
        return ()
    pos = reg.pos(dep)
    m = masks(reg, pos, system)
    st = reg.status
    batch = st["batch_id"].to_numpy()[pos]
    pooled = np.array([isinstance(h, str) and h.startswith("pool") for h in st["job_hash"].to_numpy()[pos].tolist()])
    if not (m["system"] & ~m["held"] & ~pooled).all() or any(b is None for b in batch.tolist()):
        return None
    return tuple(dict.fromkeys(map(str, batch.tolist())))


def stranded(reg, system: tuple[set, set] | None = None) -> np.ndarray:
    """Ids of jobs waiting on the scheduler (queued, not started) for a dependency that failed or
    expired: the scheduler will never start them (the master kills and holds them)."""
    col = reg.status["after"].to_numpy()
    if is_empty_view(col):
        return np.empty(0, np.int64)
    rows = np.flatnonzero(~null_mask(col))
    if rows.size == 0:
        return np.empty(0, np.int64)
    m = masks(reg, rows, system)
    rows = rows[m["queued"] & ~m["started"]]
    if rows.size == 0:
        return np.empty(0, np.int64)
    cells = col[rows].tolist()
    dep = np.unique(np.concatenate(cells))
    d = masks(reg, reg.pos(dep), system)
    bad = dep[d["error"] | d["expired"]]
    hit = [np.isin(c, bad).any() for c in cells] if bad.size else [False] * rows.size
    return reg.job_ids[rows[np.array(hit, bool)]]
