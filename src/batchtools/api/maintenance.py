"""Keeping a registry: saving, syncing, sweeping, clearing, removing it, and exporting objects to the nodes."""

from __future__ import annotations

import logging
import os
import shutil
import time
from typing import Any

import pandas as pd

from ..core import registry as core
from ..core.dependencies import SOURCE
from ..core.jobstate.cleanup import drop_unused_resources, obsolete_external_dirs, obsolete_logs, remove_dirs
from ..core.jobstate.state import done_mask, masks
from ..core.jobstate.usage import record_usage
from ..core.persistence.files import make_dir, unlink_quietly
from ..core.persistence.pickling import pickle_by_value
from ..core.registry import RegistryState, resolve
from ..core.workerpool.pool import pool_state
from .heal import heal, release, wanted
from .wait import wait_for_jobs

log = logging.getLogger("batchtools")


def save_registry(reg: RegistryState | None = None) -> None:
    """Write the registry's settings and tables to disk (atomically)."""
    reg = resolve(reg)
    with reg.mutation("save the registry"):
        reg.save(tuple(reg.tables))


def sync_registry(reg: RegistryState | None = None) -> bool:
    """Merge the status updates written by nodes into the tables. True if anything changed.

    Every status query syncs by itself; the backend's ``pre_sync``/``post_sync`` hooks run
    around every sync. An explicit sync also saves the merged status at once (queries save it
    at most every second) and removes the merged update files, and it does what
    ``wait_for_jobs`` does for jobs that died: resubmits those a :class:`~batchtools.RetryPolicy`
    covers, lets checkpointed jobs go on, and looks after the worker pool (submits the workers
    the scheduler refused so far as it accepts them, keeps a healing pool going, cancels workers
    still queued once no job is left to claim), and submits held jobs whose dependencies are done
    (see ``submit_jobs(after=)``). With a scheduler that keeps accounting (Slurm's
    ``sacct``), it records what ended jobs used (one call).
    """
    reg = resolve(reg)
    changed = reg.sync() > 0
    changed |= record_usage(reg) > 0  # what ended jobs used, as the scheduler accounted it
    if wanted(reg):  # retries by reason, checkpointed jobs, a healing pool: needs the scheduler's word
        m = masks(reg)
        changed |= heal(reg, None, m["error"] | m["expired"]).size > 0
    changed |= release(reg).size > 0  # held jobs whose dependencies are done
    if reg.writeable and reg.status_unsaved:
        reg.save_state()
    return changed


def sweep_registry(reg: RegistryState | None = None) -> dict[str, int]:
    """Remove what no job needs any more, as R's ``sweepRegistry``: results of jobs not done,
    result packs of which no record counts any more (their collection was reset or submitted
    again), logs no job refers to, job collection files, the external folders of jobs not
    submitted (``job.external_dir``), resource rows no job refers to, and stale temporary files.
    Returns the counts removed.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: x, x=[1])
    >>> _ = bt.submit_jobs([1], resources={"walltime": 60}); _ = bt.submit_jobs([1], resources={"walltime": 120})
    >>> bt.sweep_registry()["resources"]  # the first submission's resources
    1
    """
    reg = resolve(reg)
    reg.assert_writeable("sweep the registry")
    reg.sync()
    st = reg.status
    ids = reg.job_ids
    keep_results = set(ids[done_mask(reg, ids)].tolist())
    hashes = set(st["job_hash"].dropna())
    active = set(st.loc[masks(reg)["system"], "job_hash"].dropna())
    pool = pool_state(reg)
    live_workers = pool.live_workers() if pool else set()

    def files(sub):
        d = reg.layout.dir(sub)
        return list(os.scandir(d)) if d.is_dir() else []

    with reg.mutation("sweep the registry"):
        unused = drop_unused_resources(reg)
        if unused:
            reg.save(("resources",), meta=False)
    stale = time.time() - 3600
    removed = {
        "results": reg.store.delete(i for i in reg.store.ids().tolist() if i not in keep_results),
        "packs": reg.store.drop_packs(hashes | reg.inflight),
        "logs": unlink_quietly(obsolete_logs(reg)),
        "jobs": unlink_quietly(e.path for e in files("jobs") if e.name.split(".")[0] not in active
                               and e.name.split(".")[0] not in live_workers),
        "external": remove_dirs(obsolete_external_dirs(reg)),
        "resources": unused,
        "tmp": reg.store.sweep(stale) + unlink_quietly(
            e.path for sub in ("updates", "jobs", "logs", ".")
            for e in files(sub) if e.name.startswith(".tmp-") and e.stat().st_mtime < stale),
    }
    log.info("sweep_registry removed %s", removed)
    return removed


def clear_registry(reg: RegistryState | None = None) -> None:
    """Remove every job (definitions, status, results, logs) but keep the registry's settings."""
    reg = resolve(reg)
    with reg.mutation("clear the registry"):
        reg.tables = reg.definitions.empty_tables()
        reg.extra = {**reg.extra, **reg.definitions.initial_extra()}
        reg.extra.pop("code_files", None)
        reg.extra.pop("preload", None)
        reg.extra.pop(SOURCE, None)
        reg.save(tuple(reg.tables))
        reg.session.pool = None
        reg.after_commit(lambda: _remove_job_files(reg))


def _remove_job_files(reg: RegistryState) -> None:
    reg.store.clear()  # results, packed and set aside, through the store whatever it is
    for sub in ("logs", "jobs", "updates", "problems", "algorithms", "external"):
        d = reg.layout.dir(sub)
        if d.is_dir():
            unlink_quietly(e.path for e in os.scandir(d) if e.is_file())
    remove_dirs(obsolete_external_dirs(reg))  # the jobs' external folders
    unlink_quietly([reg.layout.user_function, reg.layout.more_args])
    shutil.rmtree(reg.layout.pool, ignore_errors=True)


def remove_registry(wait: float = 0, reg: RegistryState | None = None) -> str:
    """Delete the registry's directory. Jobs still running keep running but lose their output.
    ``wait``: seconds to wait for running jobs first. Returns the removed path."""
    reg = resolve(reg)
    reg.assert_writeable("remove the registry")
    if wait:
        wait_for_jobs(timeout=wait, reg=reg)
    path = str(reg.file_dir)
    shutil.rmtree(path, ignore_errors=True)
    if core._default is reg:
        core._default = None
    return path


def batch_export(export: dict[str, Any] | None = None, unexport=(), reg: RegistryState | None = None) -> pd.DataFrame:
    """Make objects available as globals of the mapped function on every node.

    Returns the exported names (DataFrame with ``name`` and ``uri``).

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> bt.batch_export({"factor": 3})["name"].tolist()
    ['factor']
    """
    reg = resolve(reg)
    export = export or {}
    if not isinstance(export, dict):
        raise TypeError("export: must be a dict name -> object, e.g. {'data': df}")
    if isinstance(unexport, str):
        unexport = [unexport]
    for name in list(export) + list(unexport):
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"export/unexport: {name!r} is not a valid Python identifier")
    payloads = {}
    for name, obj in export.items():  # all of them first: a call that fails exports nothing
        try:
            payloads[name] = pickle_by_value(obj, "export").payload
        except TypeError as e:
            cause = e.__cause__ or e
            raise TypeError(f"export: {name!r} cannot be serialised ({type(cause).__name__}: {cause}); nothing was "
                            "exported. Export values that can be pickled (no locks, open files or connections)") \
                from None
    if export or unexport:
        with reg.mutation("export objects"):
            make_dir(reg.layout.dir("exports"))
            for name, data in payloads.items():
                reg.write_bytes(reg.layout.export(name), data)
            reg.delete_after(reg.layout.export(n) for n in unexport)
    d = reg.layout.dir("exports")
    names = sorted(e.name[:-4] for e in os.scandir(d) if e.name.endswith(".pkl")) if d.is_dir() else []
    return pd.DataFrame({"name": names, "uri": [str(reg.layout.export(n)) for n in names]})

