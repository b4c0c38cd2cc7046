"""``repair_registry``: rebuild a registry's state from the evidence on disk."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.contract.journal import Journal
from ..core.contract.protocol import DONE, ERROR, JOB_ID, log_outcomes
from ..core.errors import CorruptFileError, RegistryNotFoundError
from ..core.jobstate.kinds import SIDES
from ..core.jobstate.recovery import replay_journal, settle_stashes
from ..core.jobstate.state import adopt_results
from ..core.jobstate.sync import list_updates, read_updates
from ..core.persistence.layout import Layout
from ..core.persistence.lease import Lease
from ..core.persistence.tables import TABLES, append_rows, new_status, read_frame, set_rows, upgrade_status
from ..core.persistence.txn import MANIFEST
from ..core.persistence.txn import recover as recover_unfinished_change
from ..core.registry import RegistryState, check_format
from ..core.workerpool.pool import pool_state, rebuild

log = logging.getLogger("batchtools")

MISSING_RESULT = "result file missing (found by repair_registry); submit the job again"
DAMAGED_RESULT = "packed result damaged where it lies (found by repair_registry); submit the job again"
# a log named after its job collection: logs/<job_hash>.log, or <job_hash>-<task>.log of an array task
HASH_LOG = re.compile(r"^(job[0-9a-f]{32})(?:-\d+)?\.log$")


def _read_or_previous(path: Path, name: str, report: dict) -> object | None:
    """A table, its previous version if it is missing or unreadable, or None if neither can be read."""
    for candidate in (path, Path(f"{path}.prev")):
        try:
            value = read_frame(candidate, name)
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
    st = reg.status
    hashes = st["job_hash"].to_numpy(copy=True)  # kept current as rows are applied (a view is read-only)
    done = st["done"].to_numpy()
    if not reg.layout.dir("updates").is_dir():
        return
    for update in read_updates(sorted(list_updates(reg), key=lambda e: e.stat().st_mtime)):
        if update.rows is None:
            continue  # quarantined by the sync that follows
        job_hash = update.job_hash
        for row in update.rows:
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


def _lost(layout: Layout, name: str, what: str) -> CorruptFileError:
    return CorruptFileError(
        f"{layout.table(name)}: the registry's {name} table and its previous version are missing or unreadable, "
        f"or the version found is older than the jobs: {what}. This is never guessed: put {name}.pkl back (e.g. "
        f"from the copy the registry came from), or make a new registry. Meanwhile "
        f"load_registry({str(layout.file_dir)!r}) (read-only) shows what the other tables know")


def _settle_tables(reg: RegistryState, found: dict, report: dict) -> np.ndarray:
    """Put the tables read (``found``: name -> table or None) into ``reg``, each checked against
    the tables it describes: a table never loses rows the others refer to, and what cannot be
    rebuilt is an error naming it. Returns the status rows rebuilt from the definitions alone
    (no version of the status table knew them)."""
    layout, kind = reg.layout, reg.kind
    status, defs, designs = found.get("status"), found.get("defs"), found.get("designs")
    empty = reg.definitions.empty_tables()
    if defs is None:
        if status is None or len(status):
            jobs = "of every job" if status is None else f"of jobs {_some(status['job_id'])}"
            raise _lost(layout, "defs", f"the definitions (what each job computes) {jobs} are lost")
        defs = empty["defs"]
    if status is not None:
        unknown = ~np.isin(status["def_id"].to_numpy(), defs["def_id"].to_numpy())
        if unknown.any():
            raise _lost(layout, "defs", f"the definitions of jobs {_some(status['job_id'][unknown])} are missing")
    if kind == "experiment":
        rows = np.concatenate([defs["prob_row"].to_numpy(), defs["algo_row"].to_numpy()])
        if designs is None and len(defs):
            raise _lost(layout, "designs", "the problem and algorithm parameters of every job are lost")
        designs = empty["designs"] if designs is None else designs
        missing = ~np.isin(rows, designs["row_id"].to_numpy())
        if missing.any():
            raise _lost(layout, "designs", f"the parameters of design rows {_some(rows[missing])} are missing")
        reg.tables["designs"] = designs
    reg.tables["defs"] = defs
    rebuilt = np.empty(0, np.int64)
    def_ids = defs["def_id"].to_numpy()
    if kind == "map":  # job i is definition i: the status has one row per definition
        status = empty["status"] if status is None else upgrade_status(status)
        add = def_ids[~np.isin(def_ids, status["job_id"].to_numpy())]
        if add.size:
            status = append_rows(status, new_status(add, add))
            status = status.sort_values("job_id", ignore_index=True)
            rebuilt = np.flatnonzero(np.isin(status["job_id"].to_numpy(), add))
            report["rebuilt"].append(f"status of jobs {_some(add)} (from the definitions and the evidence on disk)")
    else:  # an experiment's job id and replication are kept only in the status table
        jobless = def_ids[~np.isin(def_ids, [] if status is None else status["def_id"].to_numpy())]
        if jobless.size:
            raise _lost(layout, "status", f"the job ids and replications of the experiments of definitions "
                                          f"{_some(jobless)} are lost (the definitions do not keep them)")
        status = empty["status"] if status is None else upgrade_status(status)
    reg.tables["status"] = status
    for name in ("resources", "tags", "attempts"):
        table = found.get(name)
        if table is None:
            report["lost"].append(name)
            table = empty[name]
        reg.tables[name] = table
    rid = status["resource_id"].to_numpy()
    gone = ~np.isnan(rid) & ~np.isin(rid, reg.tables["resources"]["resource_id"].to_numpy())
    if gone.any():  # shown as unknown, never as another submission's resources
        set_rows(status, np.flatnonzero(gone), "resource_id", np.nan)
        report["lost"].append(f"resources of jobs {_some(status['job_id'][gone])}")
    return rebuilt


def _some(ids, n: int = 10) -> str:
    ids = np.asarray(ids).tolist()
    return str(ids[:n])[:-1] + (f", ... ({len(ids) - n} more)]" if len(ids) > n else "]")


def _check_settings(reg: RegistryState, report: dict) -> None:
    """Settings restored from their previous version must know the jobs' definitions: a version
    older than ``batch_map`` does not say how the function is called (positional arguments, the
    ``job`` argument), one older than a problem or algorithm does not list it."""
    if reg.kind == "map":
        if len(reg.defs) and "code_files" not in reg.extra:
            raise CorruptFileError(
                f"{reg.layout.meta}: the registry's settings are lost and their previous version predates "
                "batch_map, so how the jobs call their function (positional arguments, the job argument) is lost. "
                "This is never guessed: put registry.pkl back (e.g. from the copy the registry came from)")
        return
    for side in SIDES.values():
        known = list(reg.extra.get(side.plural, []))
        for name in pd.unique(reg.defs[side.word]).tolist():
            if name not in known:
                path = side.path(reg.layout, name)
                if not path.exists():
                    raise CorruptFileError(f"{path}: the {side.word} {name!r} of the registry's jobs is missing")
                known.append(name)
                report["rebuilt"].append(f"settings: {side.word} {name!r} (from {path.name})")
        reg.extra = {**reg.extra, side.plural: known}


def _logs_evidence(reg: RegistryState, rows: np.ndarray, report: dict) -> None:
    """What the logs say of jobs at status ``rows`` that no status version, update file or result
    knows: a run that started (it counts as expired unless it reports), one that failed (with
    the message its log ends with), one that ended well (its result is checked like any other)."""
    st = reg.status
    rows = rows[np.isnan(st["submitted"].to_numpy()[rows])]
    if not rows.size:
        return
    wanted = set(st["job_id"].to_numpy()[rows].tolist())
    seen: dict[int, tuple[str, float, bool | None, str | None]] = {}
    try:
        entries = sorted((e for e in os.scandir(reg.layout.dir("logs")) if e.name.endswith(".log")),
                         key=lambda e: e.stat().st_mtime)
    except FileNotFoundError:
        entries = []
    for entry in entries:  # oldest first: a later run's word counts
        try:
            with open(entry.path, encoding="utf-8", errors="replace") as fh:
                outcomes = log_outcomes(fh)
            when = entry.stat().st_mtime
        except OSError:
            continue
        for job_id, (ok, error) in outcomes.items():
            if job_id in wanted:
                seen[job_id] = (entry.name, when, ok, error)
    for job_id, (name, when, ok, error) in seen.items():
        p = reg.pos(np.array([job_id]))
        for col in ("submitted", "started"):
            set_rows(st, p, col, when)
        set_rows(st, p, "log_file", name)
        m = HASH_LOG.match(name)
        if m:
            set_rows(st, p, "job_hash", m.group(1))
        if ok is not None:
            set_rows(st, p, "done", when)
        if ok is False:
            set_rows(st, p, "error", error)
    report["from_logs"] = len(seen)


def repair_registry(file_dir: str | os.PathLike) -> dict:
    """Rebuild the state of the registry in ``file_dir`` from what is on disk, and save it.

    For a registry whose table is missing or unreadable (a crash of the file system, a full
    disk, a copy that missed a file, a file edited by hand), or whose status no longer matches
    its files: takes the writeable lease (refused while another live session holds it), rolls
    back an unfinished change (as far as its undo log names files, if that was damaged: it is then
    listed under ``unreadable``), reads each table or, if it is missing or unreadable, its previous
    version (``<table>.pkl.prev``), and checks each against the tables it describes. What cannot
    be rebuilt is an error naming the file (never an empty table in place of one with rows):
    the job definitions, and the job ids of experiments, live only in their tables. A plain
    registry's status is rebuilt from its definitions where no version knows a job. Then it
    replays the submission journal, merges every status update file (quarantining garbage
    ones), records jobs with a result as done (and jobs whose status was rebuilt as their logs
    say: started, or failed with the log's message), marks jobs recorded as done whose result
    file (or packed record) is gone or whose packed record was damaged where it lies as failed
    ("result file missing", "packed result damaged", so ``find_errors()`` lists them for
    resubmission; packs with stretches of no known job, a record whose header was damaged, are
    listed under ``damaged_packs``: the jobs whose results were there are among the missing
    ones), and rebuilds a missing or damaged worker-pool state from the pool's files. Returns a
    report of what it did (``from_previous``, ``rebuilt``, ``lost``, ``pool``: what was not as
    saved).

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: x, x=[1, 2]); _ = bt.submit_jobs([1]); _ = bt.submit_jobs([2])
    >>> import os; os.remove(reg.store.location(2))
    >>> bt.repair_registry(reg.file_dir)["missing_results"]
    [2]
    """
    layout = Layout(file_dir)
    if not layout.meta.exists() and not Path(f"{layout.meta}.prev").exists():
        raise RegistryNotFoundError(f"file_dir: {str(file_dir)!r} holds no registry (no registry.pkl)")
    report: dict = {"unreadable": [], "from_previous": [], "rebuilt": [], "lost": [], "journal": 0,
                    "from_updates": 0, "from_logs": 0, "adopted": 0, "missing_results": [], "damaged_results": [],
                    "damaged_packs": {}, "pool": []}
    first = _read_or_previous(layout.meta, "settings", {"unreadable": [], "from_previous": []})
    if first is not None:  # a newer format is refused before anything is written
        check_format(first, layout.meta)
    lease = Lease(layout.file_dir)
    lease.acquire()
    try:
        damaged: list[str] = []  # lines of a damaged undo log: undone as far as it names files, tables checked below
        recover_unfinished_change(layout.file_dir, damaged=damaged)
        if damaged:
            report["unreadable"].append(str(layout.txn / MANIFEST))
        meta = _read_or_previous(layout.meta, "settings", report)
        if meta is None:
            raise CorruptFileError(f"{layout.meta}: the registry's settings are unreadable and have no readable "
                                   "previous version; the registry cannot be repaired (its jobs' definitions "
                                   "depend on them). Make a new registry.")
        check_format(meta, layout.meta)
        reg = RegistryState(layout.file_dir, writeable=True, kind=meta.get("kind", "map"))
        reg.set_meta(meta)
        found = {name: _read_or_previous(layout.table(name), name, report) for name in TABLES if name in reg.tables}
        rebuilt = _settle_tables(reg, found, report)
        if "settings" in report["from_previous"]:
            _check_settings(reg, report)
        reg.mark_dirty(*reg.tables)
        reg.lease = lease
        report["journal"] = replay_journal(reg)
        _merge_all_updates(reg, report)
        st = reg.status
        open_ = np.flatnonzero(st["done"].isna().to_numpy())  # a result is evidence even if no submission is known
        _adopt_packed_hashes(reg, open_)
        if open_.size:
            found_ = open_[adopt_results(reg, open_)]
            submitted = st["submitted"].to_numpy()[found_]
            set_rows(st, found_, "submitted", np.where(np.isnan(submitted), st["done"].to_numpy()[found_], submitted))
            report["adopted"] = int(found_.size)
        _logs_evidence(reg, rebuilt, report)
        pool = _repair_pool(reg, report)
        reg.sync()  # merges what applies, quarantines garbage files
        done = np.flatnonzero(st["done"].notna().to_numpy() & st["error"].isna().to_numpy())
        have = np.isin(st["job_id"].to_numpy()[done], reg.store.ids())
        lost = done[~have]
        if lost.size:
            set_rows(st, lost, "error", MISSING_RESULT)
            report["missing_results"] = st["job_id"].to_numpy()[lost].tolist()
        # a (packed) result damaged in place is listed, not readable
        damaged = reg.store.damaged(st["job_id"].to_numpy()[done[have]].tolist())
        if damaged:
            set_rows(st, reg.pos(np.array(damaged, dtype=np.int64)), "error", DAMAGED_RESULT)
            report["damaged_results"] = damaged
        report["damaged_packs"] = reg.store.pack_damage()  # bytes of no known job (their results: missing)
        settle_stashes(reg)
        reg.save(tuple(reg.tables))
        if pool is not None:
            pool.save()
        Journal(layout.journal).clear()
    finally:
        lease.release()
    log.warning("repaired registry %s: %s", layout.file_dir, report)
    return report


def _repair_pool(reg: RegistryState, report: dict):
    """The worker pool's state rebuilt from its evidence if it is missing (while the pool has
    queues) or unreadable; None if it is fine or there is no pool."""
    try:
        pool_state(reg)
        return None
    except CorruptFileError as e:
        report["unreadable"].append(str(reg.layout.pool_state))
        log.warning("%s", e)
    state, notes = rebuild(reg)
    reg.session.pool = state
    report["pool"] = [f"rebuilt {reg.layout.pool_state.relative_to(reg.file_dir)}: {len(state.workers)} worker(s), "
                      f"{len(state.queues)} queue(s)", *notes]
    return state


def _adopt_packed_hashes(reg: RegistryState, rows: np.ndarray) -> None:
    """Jobs at status ``rows`` with no submission on record but a packed result: their table lost
    the submission (an older table version), so the hash of their last record becomes theirs (a
    packed record counts only for its job's current hash)."""
    if not rows.size:
        return
    st = reg.status
    hashes = st["job_hash"].to_numpy()
    rows = rows[pd.isna(hashes[rows])]
    found = reg.store.orphans(st["job_id"].to_numpy()[rows].tolist())
    if found:
        hit = rows[np.isin(st["job_id"].to_numpy()[rows], list(found))]
        set_rows(st, hit, "job_hash", np.array([found[i] for i in st["job_id"].to_numpy()[hit].tolist()], dtype=object))
