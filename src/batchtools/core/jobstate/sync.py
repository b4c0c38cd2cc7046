"""Merging the nodes' status updates into the status table (master only)."""

from __future__ import annotations

import logging
import math
import operator
import os
import pickle
import time
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np

from ..contract.collection import BY_HAND
from ..contract.protocol import (
    ALL_JOBS,
    BASE_LENGTH,
    DONE,
    ENDED,
    EXTRA_FLOAT_FIELDS,
    FIELDS,
    FLOAT_FIELDS,
    JOB_ID,
    PROGRESS,
    PROGRESS_AT,
    PROGRESS_MESSAGE,
    REASON,
    RESTART,
    STARTED,
    TEXT_FIELDS,
    full_row,
    valid_rows,
)
from ..persistence.files import bulk_objects, make_dir
from ..persistence.layout import is_data_file
from ..persistence.tables import set_rows
from . import attempts
from .state import forget_runs

log = logging.getLogger("batchtools")
_first = operator.itemgetter(JOB_ID)
SAVE_INTERVAL = 1.0  # seconds between saves of the status table while reports keep coming
APPLY_BATCH = 250_000  # rows of update files applied at once, at least (a row read costs ~0.3 KB; each batch
# copies every status column it writes)


def list_updates(reg) -> list[os.DirEntry]:
    directory = reg.layout.dir("updates")
    try:
        with os.scandir(directory) as it:
            return sorted(
                (e for e in it if is_data_file(e.name)),
                key=lambda e: e.name,
            )
    except FileNotFoundError:
        return []


def update_hash(name: str) -> str:
    """The hash of the collection (or chunk) that wrote the update file ``name`` (``HASH-N.pkl``).

    >>> update_hash("3f2a-17.pkl")
    '3f2a'
    """
    return name.split("-", 1)[0]


class UpdateFile(NamedTuple):
    """One update file as read: its rows, or (``rows`` None) why it is no list of status rows."""

    path: str
    job_hash: str
    rows: list | None
    problem: str | None = None


def read_updates(entries: Iterable[os.DirEntry]) -> Iterator[UpdateFile]:
    """Read the update files ``entries`` (of :func:`list_updates`) one at a time: the one reader
    of the nodes' reports, for sync, repair and recovery. A file gone meanwhile (merged and
    deleted by another session) is skipped; a damaged one comes with ``rows`` None and the
    problem, for the caller to quarantine or skip."""
    for entry in entries:
        job_hash = update_hash(entry.name)
        try:
            with open(entry.path, "rb") as fh:
                data = pickle.load(fh)
        except FileNotFoundError:
            continue
        except Exception as e:
            yield UpdateFile(entry.path, job_hash, None, f"{type(e).__name__}: {e}")
            continue
        if valid_rows(data):
            yield UpdateFile(entry.path, job_hash, data)
        else:
            yield UpdateFile(entry.path, job_hash, None, "unexpected content")


def _quarantine(reg, path: str, why: str) -> None:
    """Move an unreadable update file aside (writeable) or warn about it once (read-only)."""
    seen = reg.session.bad_updates
    if path in seen:
        return
    seen.add(path)
    if reg.writeable:
        target = reg.layout.dir("updates") / "quarantine"
        make_dir(target)
        try:
            os.replace(path, target / os.path.basename(path))
        except OSError:
            pass
        log.warning("%s is not a status update (%s); moved it to %s. The jobs it was about show as expired "
                    "unless their results exist; see bt.repair_registry()", path, why, target)
    else:
        log.warning("%s is not a status update (%s); skipped", path, why)


def sync_updates(reg) -> int:
    """Read every update file once, apply it to ``status`` and, once the status holding it is
    saved, delete it.

    An update row only applies while the job still carries the hash of the collection that
    wrote it, so a stale file from before a reset is ignored. A file that is not a list of rows
    is quarantined (``updates/quarantine/``) with a warning. On a read-only registry the merge
    happens in memory and no file is touched. Returns the number of files merged.
    """
    entries = list_updates(reg)
    if not entries and not reg.pending_updates:
        return 0
    later = [(h, d) for h, d in reg.pending_updates if h in reg.inflight]
    pending = [(h, d) for h, d in reg.pending_updates if h not in reg.inflight]
    reg.pending_updates[:] = later
    entries = [e for e in entries if update_hash(e.name) not in reg.inflight]
    if not reg.writeable:  # files stay: read each one once, not at every sync
        seen = reg.session.applied_updates
    else:  # merged but not saved yet: already in memory
        seen = {os.path.basename(p) for p in reg.session.merged_unsaved}
    entries = [e for e in entries if e.name not in seen]
    with bulk_objects():
        merged, n_rows = _merge(reg, entries, pending)
    if not reg.writeable:
        reg.session.applied_updates.update(os.path.basename(p) for p in merged)
    else:
        # the files go once the status holding them is saved (save() deletes them); saved at most
        # every SAVE_INTERVAL while reports keep coming, so a fast poll does not rewrite a big table
        reg.session.merged_unsaved = reg.session.merged_unsaved + merged
        # rows handed over in memory (jobs run by this process) have no file behind them: saved at once
        if pending or (merged and time.time() - reg.session.last_state_save >= SAVE_INTERVAL):
            reg.save_state()
    log.debug("sync: merged %d update files and %d in-process batches (%d rows)", len(merged), len(pending), n_rows)
    return len(merged) + len(pending)


def _merge(reg, entries: list[os.DirEntry], pending: list) -> tuple[list[str], int]:
    """Apply the rows handed over in memory (``pending``) and those of the update files
    ``entries``: the paths of the files merged (those that were no status rows are quarantined)
    and the number of rows."""
    n_rows = 0
    rows: list = []
    hashes: list[str] = []
    merged: list[str] = []
    by_hand: set[str] = set()
    for job_hash, data in pending:
        rows.extend(data)
        hashes.extend([job_hash] * len(data))
        if job_hash.startswith(BY_HAND):
            by_hand.add(job_hash)
    for update in read_updates(entries):
        if update.rows is None:
            _quarantine(reg, update.path, update.problem)
            continue
        job_hash = update.job_hash
        if len(rows) >= APPLY_BATCH and job_hash != hashes[-1] and not by_hand:
            # many rows: applied in batches (memory), each ending where a collection's files end (files
            # are sorted by name, so all runs of a collection are in one batch: its requeues apply in order)
            _apply(reg, rows, np.array(hashes, dtype=object))
            n_rows += len(rows)
            rows, hashes = [], []
        rows.extend(update.rows)
        hashes.extend([job_hash] * len(update.rows))
        merged.append(update.path)
        if job_hash.startswith(BY_HAND):
            by_hand.add(job_hash)
    if rows:
        _apply(reg, rows, np.array(hashes, dtype=object), by_hand)
    return merged, n_rows + len(rows)


def _warn_unknown_runs(reg, job_ids: np.ndarray, hashes: np.ndarray, other: np.ndarray, current: np.ndarray,
                       pos: np.ndarray) -> None:
    """Rows of a run of a job the status records as never submitted are not applied (a run
    unknown to the status may be one of a reset job), but they are evidence the status lacks:
    said once per run, with the way to adopt it."""
    seen = reg.session.unknown_runs_warned
    runs: dict[str, list[int]] = {}
    for k in np.flatnonzero(other).tolist():
        if not isinstance(current[pos[k]], str) and hashes[k] not in seen:  # no hash: never submitted
            runs.setdefault(hashes[k], []).append(int(job_ids[k]))
    for job_hash, ids in runs.items():
        seen.add(job_hash)
        log.warning("%s: job(s) %s ran in collection %s, which the status does not know: it records them as never "
                    "submitted. The record of their submission is lost (the submission journal submissions.log "
                    "deleted or damaged, or an older status.pkl put back), or they were reset while they ran; "
                    "bt.repair_registry(%r) adopts what such runs left (their results, their errors)",
                    reg.layout.dir("updates") / f"{job_hash}-*.pkl", sorted(set(ids)), job_hash,
                    str(reg.file_dir))


def _expand_collection_rows(reg, rows: list, hashes: np.ndarray) -> tuple[list, np.ndarray]:
    """Rows for :data:`ALL_JOBS` become one row per unfinished job of their collection."""
    whole = [k for k, r in enumerate(rows) if r[JOB_ID] == ALL_JOBS]
    if not whole:
        return rows, hashes
    st = reg.status
    current = st["job_hash"].to_numpy()
    open_ = np.isnan(st["done"].to_numpy())
    out, out_h = [r for k, r in enumerate(rows) if rows[k][JOB_ID] != ALL_JOBS], [
        h for k, h in enumerate(hashes) if rows[k][JOB_ID] != ALL_JOBS]
    for k in whole:
        for job_id in st["job_id"].to_numpy()[(current == hashes[k]) & open_].tolist():
            out.append([job_id, *rows[k][1:]])
            out_h.append(hashes[k])
    return out, np.array(out_h, dtype=object)


def _apply(reg, rows: list, hashes: np.ndarray, by_hand: set[str] = frozenset()) -> None:
    rows, hashes = _expand_collection_rows(reg, rows, hashes)
    if not rows:
        return
    lengths = set(map(len, rows))
    extra = max(lengths) > BASE_LENGTH  # progress or GPU fields in some row
    if lengths != {len(FIELDS) if extra else BASE_LENGTH}:  # rows of older nodes, or some without extras
        rows = [full_row(r, extra) for r in rows]
    job_ids = np.fromiter(map(_first, rows), dtype=np.int64, count=len(rows))
    all_ids = reg.job_ids
    pos = np.searchsorted(all_ids, job_ids)
    exists = pos < all_ids.size
    exists[exists] = all_ids[pos[exists]] == job_ids[exists]
    status = reg.status
    if by_hand:
        _adopt_by_hand(reg, rows, hashes, pos, exists, by_hand)
    current = status["job_hash"].to_numpy()
    keep = exists.copy()
    keep[exists] = current[pos[exists]] == hashes[exists]
    _warn_unknown_runs(reg, job_ids, hashes, exists & ~keep, current, pos)
    if not keep.any():
        return
    idx = np.flatnonzero(keep)
    pos = pos[idx]
    # one tuple per field (a transposition in C), of the rows that apply
    fields = list(zip(*(rows if idx.size == len(rows) else [rows[k] for k in idx.tolist()])))
    restart = np.array(fields[RESTART], dtype=float)
    restart = np.where(np.isnan(restart), 0.0, restart)
    cur = status["restart"].to_numpy()[pos]
    cur = np.where(np.isnan(cur), 0.0, cur)
    reasons = np.empty(idx.size, dtype=object)
    reasons[:] = fields[REASON]
    requeued = reasons == "requeued"
    if not requeued.any() and (restart == cur).all():  # the usual case: one run per job
        _set_fields(reg, fields, pos, extra)
        return
    # the scheduler ran some collection again (a requeue): apply the runs in order; a run that
    # stopped to be requeued, or a newer run, closes the attempt before it
    fresh = restart >= cur
    idx, pos, restart, requeued = idx[fresh], pos[fresh], restart[fresh], requeued[fresh]
    for r in np.unique(restart):
        sel = restart == r
        p = pos[sel]
        behind = np.unique(p[_restart_of(status, p) < r])
        if behind.size:  # an earlier run ended without saying so (e.g. killed, then requeued by the scheduler)
            ran = ~np.isnan(status["started"].to_numpy()[behind])  # a job a run never started is no attempt
            attempts.archive(reg, behind[ran], "requeued", reason=_reason_or(status, behind[ran], "requeued"))
            attempts.next_run(reg, behind[ran], r)
            set_rows(status, behind[~ran], "restart", float(r))
        _set_fields(reg, list(zip(*[rows[k] for k in idx[sel].tolist()])), p, extra)
        stopped = sel & requeued
        if stopped.any():
            ended = np.fromiter((rows[k][ENDED] for k in idx[stopped]), dtype=float, count=int(stopped.sum()))
            done = np.fromiter((rows[k][DONE] for k in idx[stopped]), dtype=float, count=int(stopped.sum()))
            ps = pos[stopped][np.isnan(done)]
            ps, first = np.unique(ps, return_index=True)
            attempts.archive(reg, ps, "requeue", reason="requeued", ended=ended[np.isnan(done)][first])
            attempts.next_run(reg, ps, r + 1)


def _adopt_by_hand(reg, rows: list, hashes: np.ndarray, pos: np.ndarray, exists: np.ndarray,
                   by_hand: set[str]) -> None:
    """Make the collections run by hand (``by_hand``) the current run of their jobs that have no
    run pending (never submitted, or ended), as R records what ``doJobCollection`` reports: their
    previous run is forgotten, the hand-run counts as submitted when it started. A job with a run
    pending keeps it; the hand-run's report is ignored, with a warning."""
    status = reg.status
    current = status["job_hash"].to_numpy()
    ended = ~np.isnan(status["done"].to_numpy())
    first: dict[int, tuple[str, float]] = {}  # status row -> (hand hash, when it started)
    busy = set()
    for k in np.flatnonzero(exists & np.isin(hashes, list(by_hand))).tolist():
        p, h = int(pos[k]), hashes[k]
        if current[p] == h:
            continue
        if current[p] is not None and not ended[p]:
            busy.add(int(status["job_id"].to_numpy()[p]))
            continue
        when = rows[k][STARTED] if rows[k][STARTED] == rows[k][STARTED] else rows[k][DONE]
        h0, t0 = first.setdefault(p, (h, math.inf))  # a job run by hand twice: the first run seen counts
        if h0 == h and when < t0:
            first[p] = (h, when)
    if first:
        at = np.fromiter(first, dtype=np.int64, count=len(first))
        forget_runs(reg, at)
        set_rows(status, at, "job_hash", np.array([h for h, _ in first.values()], dtype=object))
        set_rows(status, at, "submitted", np.array([t if t < math.inf else time.time() for _, t in first.values()]))
    if busy:
        log.warning("jobs %s were run by hand (do_job_collection) while a run of theirs is pending; that "
                    "report is ignored. reset_jobs() or kill_jobs() them first", sorted(busy)[:10])


def _restart_of(status, pos: np.ndarray) -> np.ndarray:
    cur = status["restart"].to_numpy()[pos]
    return np.where(np.isnan(cur), 0.0, cur)


def _reason_or(status, pos: np.ndarray, default: str) -> np.ndarray:
    reasons = status["reason"].to_numpy()[pos]
    return np.array([r if r is not None else default for r in reasons], dtype=object)


def _set_fields(reg, fields: list, pos: np.ndarray, extra: bool = True) -> None:
    """Write the fields rows bring (``fields``: one tuple per field, a row's values at the same
    place in each; NaN / None: nothing new) to status rows ``pos`` (``extra``: the rows have the
    progress and GPU fields)."""
    status = reg.status
    reg.mark_dirty("status")
    if not pos.size:
        return
    for col, i in FLOAT_FIELDS + (EXTRA_FLOAT_FIELDS if extra else ()):
        values = np.array(fields[i], dtype=float)
        ok = ~np.isnan(values)
        if ok.any():
            set_rows(status, pos[ok], col, values[ok])
    for col, i in TEXT_FIELDS:
        values = np.empty(pos.size, dtype=object)
        values[:] = fields[i]
        has = values != None  # noqa: E711 (elementwise)
        if has.any():
            set_rows(status, pos[has], col, values[has])
    if extra:
        _set_progress(status, fields, pos)


def _set_progress(status, fields: list, pos: np.ndarray) -> None:
    """A job's last progress (time, value, message), as one: a report older than the one the
    table holds (update files read out of order) changes nothing, and of a job's reports the
    latest is applied last."""
    at = np.array(fields[PROGRESS_AT], dtype=float)
    new = ~np.isnan(at)
    if not new.any():
        return
    new &= ~(at <= status["progress_at"].to_numpy()[pos])
    sel = np.flatnonzero(new)
    sel = sel[np.argsort(at[sel], kind="stable")]
    value = [fields[PROGRESS][k] for k in sel.tolist()]
    set_rows(status, pos[sel], "progress_at", at[sel])
    set_rows(status, pos[sel], "progress", np.array([np.nan if v is None else v for v in value], dtype=float))
    set_rows(status, pos[sel], "progress_message", np.array([fields[PROGRESS_MESSAGE][k] for k in sel.tolist()],
                                                            dtype=object))
