"""Settling what a session that died left behind, when the registry is opened next.

1. An unfinished mutating call is rolled back (:func:`batchtools.core.persistence.txn.recover`; writeable
   sessions only, before the tables are read).
2. The submission journal is replayed (:mod:`batchtools.core.contract.journal`): chunks a dead session
   handed to its backend but had not saved in the status table yet are recorded.
3. Results set aside for a resubmission (``store.stash``) are dropped if that submission was
   recorded, and put back otherwise.

A read-only session does 2 and 3 in memory only and changes no file. While the writeable
session is alive (it is submitting right now), a read-only session records only the chunks its
backend accepted, quietly: the others are being handed over, not lost.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ..contract import journal as journal_mod
from ..contract.protocol import JOB_ID
from ..persistence.lease import holder_alive, read_lease
from ..persistence.tables import set_rows
from . import attempts
from .resources import resource_id
from .state import forget_runs
from .sync import list_updates, read_updates, update_hash

log = logging.getLogger("batchtools")


def writer_alive(reg) -> bool:
    """Whether ``reg`` is a read-only view of a registry whose writeable session still runs."""
    if reg.writeable:
        return False
    info = read_lease(reg.file_dir)
    return info is not None and holder_alive(reg.file_dir, info)


def replay_journal(reg) -> int:
    """Record the journal's chunks the status table does not know yet; the number of jobs recorded."""
    records = journal_mod.pending(journal_mod.read(reg.layout.journal))
    if not records:
        return 0
    live = writer_alive(reg)
    if live:  # a submission in progress: what the backend accepted (or ran) so far, nothing else
        records = [r for r in records if r.get("evidence") or r["batch_id"] != journal_mod.UNKNOWN_BATCH]
    st = reg.status
    all_ids = reg.job_ids
    n = 0
    unknown_batches = 0
    proven = RunEvidence(reg, {h for r in records if r.get("evidence") for h in r["hash"].tolist()})
    for rec in records:
        ids = np.asarray(rec["ids"], dtype=np.int64)
        present = np.isin(ids, all_ids)
        pos = reg.pos(ids)
        hashes = _per_job(rec["hash"], ids.size)
        stale = present.copy()
        stale[present] = st["job_hash"].to_numpy()[pos[present]] != hashes[present]
        if rec.get("evidence") and stale.any():  # in-process: only the jobs that ran
            at = np.flatnonzero(stale)
            stale[at] = proven(ids[at], pos[at], hashes[at])
        if not stale.any():
            continue
        sel = pos[stale]
        forget_runs(reg, sel)
        set_rows(st, sel, "submitted", float(rec["submitted"] or time.time()))
        set_rows(st, sel, "job_hash", hashes[stale])
        batch = _per_job(rec["batch_id"], ids.size)[stale]
        set_rows(st, sel, "batch_id", np.array([str(b) for b in batch], dtype=object))
        logs = _per_job(rec["log_file"], ids.size)[stale]
        if any(x is not None for x in logs):
            set_rows(st, sel, "log_file", logs)
        if rec["resources"] is not None:
            if "res_of" in rec:  # distinct resources, and which each job had
                rid = np.array([float(resource_id(reg, r)) for r in rec["resources"]])
                set_rows(st, sel, "resource_id", rid[np.asarray(rec["res_of"])[stale]])
            else:
                set_rows(st, sel, "resource_id", float(resource_id(reg, rec["resources"])))
        attempts.on_replayed(reg, sel)
        unknown_batches += int((batch == journal_mod.UNKNOWN_BATCH).sum())
        n += int(sel.size)
    if n:
        reg.mark_dirty("status")
    if live:
        log.debug("registry %s: %d job(s) of a submission in progress, from %s", reg.file_dir, n,
                  reg.layout.journal.name)
        return n
    # a session whose lease this one took over with force=True lives on: it stops before its next hand-over
    ended = "was taken over" if reg.lease is not None and reg.lease.took_over_live else "died"
    if n:
        log.warning("registry %s: recorded %d job(s) a session had submitted before it %s, from %s",
                    reg.file_dir, n, ended, reg.layout.journal.name)
    if unknown_batches:
        log.warning("registry %s: %d of them were being handed to the backend when that session %s; "
                    "they count as done if they report, and as expired otherwise", reg.file_dir, unknown_batches,
                    ended)
    return n


def _per_job(value, n: int) -> np.ndarray:
    """A journal field as an object array of one value per job (one value for all, or a list)."""
    if isinstance(value, (list, np.ndarray)):
        return np.asarray(value, dtype=object)
    out = np.empty(n, dtype=object)
    out[:] = [value] * n
    return out


class RunEvidence:
    """What runs of in-process chunks left on disk, to tell which of their jobs ran before the
    session that ran them died: a packed record of the chunk's hash, a status update file of it,
    or a result file written for it (the previous run's result of a job that had one was set
    aside under the chunk's hash before the chunk ran, so a result file is this run's only then)."""

    def __init__(self, reg, hashes: set[str]):
        self.reg = reg
        self.updated: set[tuple[str, int]] = set()  # (hash, job id) of update rows
        self.stashed: set[tuple[str, int]] = set()
        self.files = np.empty(0, dtype=np.int64)
        if not hashes:
            return
        for update in read_updates(e for e in list_updates(reg) if update_hash(e.name) in hashes):
            if update.rows is not None:  # a damaged file is the next sync's to quarantine
                self.updated.update((update.job_hash, r[JOB_ID]) for r in update.rows)
        store = reg.store
        self.stashed = set(store.stashed())
        self.files = store.unpacked_ids()
        self.ended = ~np.isnan(reg.status["done"].to_numpy())

    def __call__(self, ids: np.ndarray, pos: np.ndarray, hashes: np.ndarray) -> np.ndarray:
        """Which of ``ids`` (at status rows ``pos``) ran in the chunks ``hashes`` (one per job)."""
        out = np.array(self.reg.store.packed_by(ids.tolist(), hashes.tolist()), dtype=bool)
        if self.updated:
            for k in np.flatnonzero(~out).tolist():
                out[k] = (hashes[k], int(ids[k])) in self.updated
        if self.files.size:
            for k in np.flatnonzero(~out & np.isin(ids, self.files)).tolist():
                out[k] = (hashes[k], int(ids[k])) in self.stashed or not self.ended[pos[k]]
        return out


def settle_stashes(reg) -> int:
    """Drop results set aside for recorded resubmissions; put back the others. Returns the number put back."""
    hashes = reg.status["job_hash"].to_numpy()
    restored = 0
    for tag, job_id in reg.store.stashed():
        pos = reg.pos(np.array([job_id]))
        known = pos[0] < len(hashes) and reg.job_ids[pos[0]] == job_id
        if known and hashes[pos[0]] != tag and not reg.store.exists(job_id):
            reg.store.restore([job_id], tag)
            restored += 1
        else:
            reg.store.drop([job_id], tag)
    if restored:
        log.warning("registry %s: put back %d result(s) of a resubmission that never reached the backend",
                    reg.file_dir, restored)
    return restored


def recover(reg) -> None:
    """Steps 2 and 3 of the module docstring (step 1 runs before the tables are read)."""
    replay_journal(reg)
    if reg.writeable:
        settle_stashes(reg)
        if reg.is_dirty("status", "resources"):
            reg.save(meta=False)
        journal_mod.Journal(reg.layout.journal).clear()
