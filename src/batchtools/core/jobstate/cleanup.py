"""What no job needs any more: log files, resource rows and jobs' external folders, as R's
``sweepRegistry`` finds them. ``sweep_registry`` removes all of it; ``reset_jobs``,
``remove_experiments`` and ``clear_registry`` remove what they made obsolete (R runs its sweep
after each of them)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ..workerpool.pool import pool_state


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except FileNotFoundError:
        return []


def obsolete_logs(reg) -> list[str]:
    """Log files no job refers to (by its ``log_file`` or its collection's hash), except the logs
    of pool workers that are alive."""
    st = reg.status
    hashes = set(st["job_hash"].dropna())
    names = set(st["log_file"].dropna())  # pooled jobs log into their worker's file, Interactive into its session's
    pool = pool_state(reg)
    live = pool.live_workers() if pool else set()

    def needed(name: str) -> bool:
        stem = name.split(".")[0]
        return name in names or stem in hashes or stem.rsplit("-", 1)[0] in hashes | live or stem in live

    return [e.path for e in _entries(reg.layout.dir("logs")) if e.is_file() and not needed(e.name)]


def obsolete_external_dirs(reg) -> list[str]:
    """External folders (``job.external_dir``) of jobs that are not submitted (or do not exist)."""
    st = reg.status
    submitted = set(st["job_id"].to_numpy()[st["submitted"].notna().to_numpy()].tolist())
    return [e.path for e in _entries(reg.layout.dir("external"))
            if e.name.isdigit() and e.is_dir() and int(e.name) not in submitted]


def remove_dirs(paths) -> int:
    """Remove the folders among ``paths`` with everything in them; the number removed."""
    n = 0
    for p in paths:
        if os.path.isdir(p):
            shutil.rmtree(p, ignore_errors=True)
            n += 1
    return n


def drop_unused_resources(reg) -> int:
    """Remove the resource rows that neither a job nor an earlier attempt refers to (in memory;
    saved with the ``resources`` table). The number removed."""
    table = reg.tables["resources"]
    if not len(table):
        return 0
    used = np.concatenate([reg.status["resource_id"].to_numpy(), reg.tables["attempts"]["resource_id"].to_numpy()])
    keep = table["resource_id"].isin(used[~np.isnan(used)]).to_numpy()
    if keep.all():
        return 0
    reg.tables["resources"] = table[keep].reset_index(drop=True)
    reg.mark_dirty("resources")
    return int((~keep).sum())
