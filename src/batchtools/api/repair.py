"""``repair_registry``: rebuild a registry's state from the evidence on disk."""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import CorruptFileError, RegistryNotFoundError
from ..core.files import read_table
from ..core.journal import Journal
from ..core.layout import Layout
from ..core.lease import Lease
from ..core.protocol import DONE, ERROR, JOB_ID, valid_rows
from ..core.recovery import replay_journal, settle_stashes
from ..core.registry import RegistryState
from ..core.state import adopt_results
from ..core.store import FolderStore
from ..core.tables import TABLES, new_status, set_rows
from ..core.txn import recover as recover_unfinished_change

log = logging.getLogger("batchtools")

MISSING_RESULT = "result file missing (found by repair_registry); submit the job again"
DAMAGED_RESULT = "packed result damaged where it lies (found by repair_registry); submit the job again"


def _read_or_previous(path: Path, name: str, report: dict) -> object | None:
    """A table, its previous version if it is unreadable, or None if neither can be read."""
    for candidate in (path, Path(f"{path}.prev")):
        try:
            value = read_table(candidate, name)
        except FileNotFoundError:
            continue
        except CorruptFileError as e:
            report["unreadable"].append(str(candidate))
            log.warning("%s", e)
            continue
        if candidate != path:
            report["from_previous"].append(name)
        return value
    return None


def _merge_all_updates(reg: RegistryState, report: dict) -> None:
    """Apply every status update file, also those of runs the (older) status does not know."""
    directory = reg.layout.dir("updates")
    if not directory.is_dir():
        return
    st = reg.status
    hashes = st["job_hash"].to_numpy(copy=True)  # written below (a view of the table is read-only)
    done = st["done"].to_numpy()
    for entry in sorted(os.scandir(directory), key=lambda e: e.stat().st_mtime):
        if not entry.is_file() or not entry.name.endswith(".pkl") or entry.name.startswith("."):
            continue
        try:
            with open(entry.path, "rb") as fh:
                rows = pickle.load(fh)
        except Exception:
            rows = None
        if not valid_rows(rows):
            continue  # quarantined by the sync that follows
        job_hash = entry.name.split("-", 1)[0]
        for row in rows:
            ids = reg.job_ids
            p = int(np.searchsorted(ids, row[JOB_ID]))
            if p >= ids.size or ids[p] != row[JOB_ID]:
                continue
            # a finished run the status does not know (the status is older than the evidence)
            if hashes[p] != job_hash and np.isnan(done[p]) and row[DONE] == row[DONE]:
                set_rows(st, np.array([p]), "job_hash", job_hash)
                set_rows(st, np.array([p]), "submitted", float(row[DONE]))
                hashes[p] = job_hash
                report["from_updates"] += 1
                if row[ERROR] is not None:
                    set_rows(st, np.array([p]), "error", row[ERROR])
    reg.mark_dirty("status")


def repair_registry(file_dir: str | os.PathLike) -> dict:
    """Rebuild the state of the registry in ``file_dir`` from what is on disk, and save it.

    For a registry whose table is unreadable (a crash of the file system, a full disk, a file
    edited by hand), or whose status no longer matches its files: takes the writeable lease
    (refused while another live session holds it), rolls back an unfinished change, reads each
    table or, if it is unreadable, its previous version (``<table>.pkl.prev``), replays the
    submission journal, merges every status update file (quarantining garbage ones), records
    jobs with a result file as done, and marks jobs recorded as done whose result file (or packed
    record) is gone or whose packed record was damaged where it lies as failed ("result file
    missing", "packed result damaged"), so ``find_errors()`` lists them for resubmission (packs
    with stretches of no known job, a record whose header was damaged, are listed under
    ``damaged_packs``: the jobs whose results were there are among the missing ones). Returns a
    report of what it did.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: x, x=[1, 2]); _ = bt.submit_jobs([1]); _ = bt.submit_jobs([2])
    >>> import os; os.remove(reg.store.location(2))
    >>> bt.repair_registry(reg.file_dir)["missing_results"]
    [2]
    """
    layout = Layout(file_dir)
    if not layout.meta.exists():
        raise RegistryNotFoundError(f"file_dir: {str(file_dir)!r} holds no registry (no registry.pkl)")
    report: dict = {"unreadable": [], "from_previous": [], "journal": 0, "from_updates": 0, "adopted": 0,
                    "missing_results": [], "damaged_results": [], "damaged_packs": {}}
    lease = Lease(layout.file_dir)
    lease.acquire()
    try:
        recover_unfinished_change(layout.file_dir)
        meta = _read_or_previous(layout.meta, "settings", report)
        if meta is None:
            raise CorruptFileError(f"{layout.meta}: the registry's settings are unreadable and have no readable "
                                   "previous version; the registry cannot be repaired (its jobs' definitions "
                                   "depend on them). Make a new registry.")
        reg = RegistryState(layout.file_dir, writeable=True, kind=meta.get("kind", "map"))
        reg.set_meta(meta)
        for name in TABLES:
            path = layout.table(name)
            if not path.exists() and not Path(f"{path}.prev").exists():
                continue
            table = _read_or_previous(path, name, report)
            if table is not None:
                reg.tables[name] = table
            elif name == "status" and reg.kind == "map" and "defs" in reg.tables and len(reg.defs):
                ids = reg.defs["def_id"].to_numpy()
                reg.tables["status"] = new_status(ids, ids)  # map jobs: job i is definition i
                report["from_previous"].append("status (rebuilt from the definitions)")
            elif name in ("resources", "tags"):
                report["from_previous"].append(f"{name} (lost: started empty)")
            else:
                raise CorruptFileError(f"{path}: the registry's {name} table and its previous version are "
                                       "unreadable; the jobs' definitions are lost. Make a new registry.")
        reg.mark_dirty(*reg.tables)
        reg.lease = lease
        report["journal"] = replay_journal(reg)
        _merge_all_updates(reg, report)
        reg.sync()  # merges what applies, quarantines garbage files
        st = reg.status
        open_ = np.flatnonzero(st["done"].isna().to_numpy())  # a result is evidence even if no submission is known
        _adopt_packed_hashes(reg, open_)
        if open_.size:
            found = open_[adopt_results(reg, open_)]
            submitted = st["submitted"].to_numpy()[found]
            set_rows(st, found, "submitted", np.where(np.isnan(submitted), st["done"].to_numpy()[found], submitted))
            report["adopted"] = int(found.size)
        done = np.flatnonzero(st["done"].notna().to_numpy() & st["error"].isna().to_numpy())
        have = np.isin(st["job_id"].to_numpy()[done], reg.store.ids())
        lost = done[~have]
        if lost.size:
            set_rows(st, lost, "error", MISSING_RESULT)
            report["missing_results"] = st["job_id"].to_numpy()[lost].tolist()
        if isinstance(reg.store, FolderStore):  # a packed record damaged in place is listed, not readable
            damaged = reg.store.damaged(st["job_id"].to_numpy()[done[have]].tolist())
            if damaged:
                set_rows(st, reg.pos(np.array(damaged, dtype=np.int64)), "error", DAMAGED_RESULT)
                report["damaged_results"] = damaged
            report["damaged_packs"] = reg.store.pack_damage()  # bytes of no known job (their results: missing)
        settle_stashes(reg)
        reg.save(tuple(reg.tables))
        Journal(layout.journal).clear()
    finally:
        lease.release()
    log.warning("repaired registry %s: %s", layout.file_dir, report)
    return report


def _adopt_packed_hashes(reg: RegistryState, rows: np.ndarray) -> None:
    """Jobs at status ``rows`` with no submission on record but a packed result: their table lost
    the submission (an older table version), so the hash of their last record becomes theirs (a
    packed record counts only for its job's current hash)."""
    if not rows.size or not isinstance(reg.store, FolderStore):
        return
    st = reg.status
    hashes = st["job_hash"].to_numpy()
    rows = rows[pd.isna(hashes[rows])]
    found = reg.store.orphans(st["job_id"].to_numpy()[rows].tolist())
    if found:
        hit = rows[np.isin(st["job_id"].to_numpy()[rows], list(found))]
        set_rows(st, hit, "job_hash", np.array([found[i] for i in st["job_id"].to_numpy()[hit].tolist()], dtype=object))
