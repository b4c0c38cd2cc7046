"""Settling what a session that died left behind, when the registry is opened next.

1. An unfinished mutating call is rolled back (:func:`batchtools.core.txn.recover`; writeable
   sessions only, before the tables are read).
2. The submission journal is replayed (:mod:`batchtools.core.journal`): chunks a dead session
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

from . import attempts
from . import journal as journal_mod
from .lease import holder_alive, read_lease
from .resources import resource_id
from .state import forget_runs
from .tables import set_rows

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
    if live:  # a submission in progress: what the backend accepted so far, nothing else
        records = [r for r in records if r["batch_id"] != journal_mod.UNKNOWN_BATCH]
    st = reg.status
    all_ids = reg.job_ids
    n = 0
    unknown_batches = 0
    for rec in records:
        ids = np.asarray(rec["ids"], dtype=np.int64)
        present = np.isin(ids, all_ids)
        pos = reg.pos(ids)
        stale = present.copy()
        stale[present] = st["job_hash"].to_numpy()[pos[present]] != rec["hash"]
        if not stale.any():
            continue
        sel = pos[stale]
        forget_runs(reg, sel)
        set_rows(st, sel, "submitted", float(rec["submitted"] or time.time()))
        set_rows(st, sel, "job_hash", rec["hash"])
        batch, logs = rec["batch_id"], rec["log_file"]
        if isinstance(batch, list):  # one batch id (and log) per array task, in job order
            set_rows(st, sel, "batch_id", np.array([str(b) for b in batch], dtype=object)[stale])
        else:
            set_rows(st, sel, "batch_id", str(batch))
        if isinstance(logs, list):
            set_rows(st, sel, "log_file", np.array(logs, dtype=object)[stale])
        elif logs is not None:
            set_rows(st, sel, "log_file", logs)
        if rec["resources"] is not None:
            set_rows(st, sel, "resource_id", float(resource_id(reg, rec["resources"])))
        attempts.on_replayed(reg, sel)
        unknown_batches += int(batch == journal_mod.UNKNOWN_BATCH) * int(sel.size)
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
        if "status" in reg._dirty or "resources" in reg._dirty:
            reg.save(meta=False)
        journal_mod.Journal(reg.layout.journal).clear()
