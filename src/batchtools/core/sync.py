"""Merging the nodes' status updates into the status table (master only)."""

from __future__ import annotations

import logging
import os
import pickle

import numpy as np

from .protocol import FLOAT_FIELDS, JOB_ID, TEXT_FIELDS
from .tables import set_rows

log = logging.getLogger("batchtools")


def list_updates(reg) -> list[os.DirEntry]:
    directory = reg.layout.dir("updates")
    try:
        with os.scandir(directory) as it:
            return sorted(
                (e for e in it if e.name.endswith(".pkl") and not e.name.startswith(".")),
                key=lambda e: e.name,
            )
    except FileNotFoundError:
        return []


def sync_updates(reg) -> int:
    """Read every update file once, apply it to ``status`` and delete it.

    An update row only applies while the job still carries the hash of the
    collection that wrote it, so a stale file from before a reset is ignored.
    On a read-only registry the merge happens in memory and files stay.
    Returns the number of files merged.
    """
    entries = list_updates(reg)
    if not entries and not reg.pending_updates:
        return 0
    rows: list = []
    hashes: list[str] = []
    merged: list[str] = []
    later = [(h, d) for h, d in reg.pending_updates if h in reg.inflight]
    pending = [(h, d) for h, d in reg.pending_updates if h not in reg.inflight]
    reg.pending_updates[:] = later
    entries = [e for e in entries if e.name.split("-", 1)[0] not in reg.inflight]
    for job_hash, data in pending:
        rows.extend(data)
        hashes.extend([job_hash] * len(data))
    for entry in entries:
        try:
            with open(entry.path, "rb") as fh:
                data = pickle.load(fh)
        except (OSError, EOFError, pickle.UnpicklingError) as e:
            log.debug("skipping unreadable update %s: %s", entry.path, e)
            continue
        job_hash = entry.name.split("-", 1)[0]
        rows.extend(data)
        hashes.extend([job_hash] * len(data))
        merged.append(entry.path)
    if rows:
        _apply(reg, rows, np.array(hashes, dtype=object))
    if reg.writeable:
        reg.save(("status",), meta=False)
        for path in merged:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    log.debug("sync: merged %d update files and %d in-process batches (%d rows)", len(merged), len(pending), len(rows))
    return len(merged) + len(pending)


def _apply(reg, rows: list, hashes: np.ndarray) -> None:
    job_ids = np.fromiter((r[JOB_ID] for r in rows), dtype=np.int64, count=len(rows))
    all_ids = reg.job_ids
    pos = np.searchsorted(all_ids, job_ids)
    exists = pos < all_ids.size
    exists[exists] = all_ids[pos[exists]] == job_ids[exists]
    status = reg.status
    current = status["job_hash"].to_numpy()
    keep = exists.copy()
    keep[exists] = current[pos[exists]] == hashes[exists]
    if not keep.any():
        return
    idx = np.flatnonzero(keep)
    pos = pos[idx]
    for col, i in FLOAT_FIELDS:
        values = np.fromiter((rows[k][i] for k in idx), dtype=float, count=idx.size)
        ok = ~np.isnan(values)
        if ok.any():
            set_rows(status, pos[ok], col, values[ok])
    for col, i in TEXT_FIELDS:
        values = np.array([rows[k][i] for k in idx], dtype=object)
        has = np.array([v is not None for v in values], dtype=bool)
        if has.any():
            set_rows(status, pos[has], col, values[has])
    reg.mark_dirty("status")
