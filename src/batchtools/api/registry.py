"""Making, loading, saving, syncing, sweeping, clearing and removing registries."""

from __future__ import annotations

import atexit
import logging
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from ..core import registry as core
from ..core.config import apply_conf_file, find_conf_file
from ..core.errors import RegistryNotFoundError
from ..core.files import Layout, read_pickle, write_pickle
from ..core.registry import ExperimentRegistry, Registry, resolve

log = logging.getLogger("batchtools")


def _check_strings(value, arg: str, files: bool = False) -> tuple[str, ...]:
    if isinstance(value, (str, os.PathLike)):
        value = [value]
    try:
        items = tuple(os.fspath(v) for v in value)
    except TypeError:
        raise TypeError(f"{arg}: expected a list of {'file paths' if files else 'module names'}, "
                        f"got {type(value).__name__}") from None
    if files:
        missing = [p for p in items if not Path(p).is_file()]
        if missing:
            raise FileNotFoundError(f"{arg}: file(s) not found: {missing}")
        items = tuple(str(Path(p).absolute()) for p in items)
    return items


def _check_seed(seed) -> int:
    if seed is None:
        return random.randint(1, 100_000)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: must be an int (or None for a random one), got {type(seed).__name__}")
    return seed


def _check_new_dir(file_dir) -> Path:
    path = Path(file_dir)
    if path.exists():
        if (path / "registry.pkl").exists():
            raise FileExistsError(
                f"file_dir: {str(path)!r} already holds a registry. Open it with "
                f"load_registry({str(path)!r}, writeable=True), or remove it with remove_registry()."
            )
        if not path.is_dir() or any(path.iterdir()):
            raise FileExistsError(
                f"file_dir: {str(path)!r} exists and is not an empty folder; "
                "choose a new path (the registry creates the folder itself)."
            )
    return path


def _finish_setup(reg: Registry, work_dir, conf_file, packages, source, load) -> None:
    from ..backends.multicore import make_cluster_functions_multicore

    reg.cluster_functions = make_cluster_functions_multicore()
    reg.packages = _check_strings(packages, "packages")
    reg.source = _check_strings(source, "source", files=True)
    reg.load = _check_strings(load, "load", files=True)
    if conf_file is ...:
        conf_file = find_conf_file()
    apply_conf_file(reg, conf_file)
    if work_dir is not None:
        reg.work_dir = str(work_dir)
    if not Path(reg.work_dir).is_dir():
        raise FileNotFoundError(f"work_dir: {reg.work_dir!r} is not an existing directory")
    reg.work_dir = str(Path(reg.work_dir).absolute())


def _make(cls, file_dir, work_dir, conf_file, packages, source, load, seed, make_default) -> Registry:
    seed = _check_seed(seed)
    temporary = file_dir is None
    if temporary:
        file_dir = tempfile.mkdtemp(prefix="batchtools-registry-")
    else:
        file_dir = _check_new_dir(file_dir)
    existed = Path(file_dir).exists()
    reg = cls(file_dir)
    reg.seed = seed
    try:
        _finish_setup(reg, work_dir, conf_file, packages, source, load)
        reg.layout.make_dirs()
        reg.save(tuple(reg.tables))
    except BaseException:
        if temporary or not existed:
            shutil.rmtree(file_dir, ignore_errors=True)
        raise
    if temporary:
        reg.temporary = True
        atexit.register(shutil.rmtree, str(reg.file_dir), True)
    if make_default:
        core.set_default_registry(reg)
    log.info("Created registry in '%s' using cluster functions '%s'", reg.file_dir, reg.cluster_functions.name)
    return reg


def make_registry(file_dir: str | os.PathLike | None = "registry", work_dir: str | None = None,
                  conf_file: Any = ..., packages=(), source=(), load=(), seed: int | None = None,
                  make_default: bool = True) -> Registry:
    """Create a new registry in ``file_dir`` (``None``: a temporary one, removed at exit).

    ``packages`` are imported, ``source`` files executed and ``load`` pickles
    loaded on the node before jobs run. ``seed`` (default: random) is the base of
    every job's seed (``seed + job_id``). ``conf_file`` defaults to the first
    ``batchtools.conf.py`` found (see :func:`find_conf_file`); ``None`` uses none.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None, seed=42)
    >>> reg.seed
    42
    """
    return _make(Registry, file_dir, work_dir, conf_file, packages, source, load, seed, make_default)


def make_experiment_registry(file_dir: str | os.PathLike | None = "registry", work_dir: str | None = None,
                             conf_file: Any = ..., packages=(), source=(), load=(), seed: int | None = None,
                             make_default: bool = True) -> ExperimentRegistry:
    """Like :func:`make_registry`, for experiments (problems x algorithms).

    >>> import batchtools as bt
    >>> reg = bt.make_experiment_registry(file_dir=None, seed=1)
    >>> reg.kind
    'experiment'
    """
    return _make(ExperimentRegistry, file_dir, work_dir, conf_file, packages, source, load, seed, make_default)


def load_registry(file_dir: str | os.PathLike, work_dir: str | None = None, conf_file: Any = ...,
                  make_default: bool = True, writeable: bool = False) -> Registry:
    """Open an existing registry. ``writeable=False`` (the default, as in batchtools)
    allows queries only; pass ``writeable=True`` to submit, reset or change jobs.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> bt.load_registry(reg.file_dir).writeable
    False
    """
    if not isinstance(writeable, bool):
        raise TypeError("writeable: must be True or False")
    layout = Layout(file_dir)
    if not layout.file_dir.is_dir():
        raise RegistryNotFoundError(f"file_dir: {str(file_dir)!r} does not exist; create a registry with make_registry()")
    if not layout.meta.is_file():
        raise RegistryNotFoundError(f"file_dir: {str(file_dir)!r} holds no registry (no registry.pkl)")
    meta = read_pickle(layout.meta)
    cls = ExperimentRegistry if meta.get("kind") == "experiment" else Registry
    reg = cls(layout.file_dir, writeable=writeable)
    reg.set_meta(meta)
    reg.read_tables()
    stored_work_dir = reg.work_dir
    if not Path(stored_work_dir).is_dir():
        reg.work_dir = os.getcwd()
    _finish_setup(reg, work_dir, conf_file, reg.packages, [], [])
    reg.source, reg.load = meta.get("source", ()), meta.get("load", ())
    if writeable:
        reg.layout.make_dirs()
    reg.sync()
    if make_default:
        core.set_default_registry(reg)
    return reg


def save_registry(reg: Registry | None = None) -> None:
    """Write the registry's settings and tables to disk (atomically)."""
    reg = resolve(reg)
    reg.assert_writeable("save the registry")
    reg.save(tuple(reg.tables))


def sync_registry(reg: Registry | None = None) -> bool:
    """Merge the status updates written by nodes into the tables. True if anything changed."""
    from ..backends.base import run_hook

    reg = resolve(reg)
    run_hook(reg, "pre_sync")
    changed = reg.sync() > 0
    run_hook(reg, "post_sync")
    return changed


def _unlink_all(paths) -> int:
    n = 0
    for p in paths:
        try:
            os.unlink(p)
            n += 1
        except FileNotFoundError:
            pass
    return n


def sweep_registry(reg: Registry | None = None) -> dict[str, int]:
    """Remove files no job needs any more: results of jobs not done, orphaned logs,
    job collection files and stale temporary files. Returns the counts removed."""
    reg = resolve(reg)
    reg.assert_writeable("sweep the registry")
    reg.sync()
    st = reg.status
    done = st["done"].notna().to_numpy() & st["error"].isna().to_numpy()
    keep_results = {f"{i}.pkl" for i in st["job_id"].to_numpy()[done]}
    hashes = set(st["job_hash"].dropna())
    log_names = set(st["log_file"].dropna())  # pooled jobs log into their worker's file
    from .status import on_system_ids

    active_hashes = set(st.loc[st["job_id"].isin(on_system_ids(reg)), "job_hash"].dropna())
    from ..core.pool import pool_state

    pool = pool_state(reg)
    live_workers = {w for w, info in pool.workers.items() if info.get("state") not in ("exited", "stale")} if pool else set()

    def files(sub):
        d = reg.layout.dir(sub)
        return list(os.scandir(d)) if d.is_dir() else []

    stale = time.time() - 3600
    removed = {
        "results": _unlink_all(e.path for e in files("results")
                               if e.name not in keep_results and not e.name.startswith(".tmp-")),
        "logs": _unlink_all(e.path for e in files("logs") if e.name.split(".")[0].rsplit("-", 1)[0] not in hashes
                            and e.name.split(".")[0] not in hashes and e.name not in log_names),
        "jobs": _unlink_all(e.path for e in files("jobs") if e.name.split(".")[0] not in active_hashes
                            and e.name.split(".")[0] not in live_workers),
        "tmp": _unlink_all(e.path for sub in ("results", "updates", "jobs", "logs", ".")
                           for e in files(sub) if e.name.startswith(".tmp-") and e.stat().st_mtime < stale),
    }
    log.info("sweep_registry removed %s", removed)
    return removed


def clear_registry(reg: Registry | None = None) -> None:
    """Remove every job (definitions, status, results, logs) but keep the registry's settings."""
    from ..core.tables import empty_tables

    reg = resolve(reg)
    reg.assert_writeable("clear the registry")
    reg.tables = empty_tables(reg.kind == "experiment")
    if reg.kind == "experiment":
        reg.extra = {"problems": [], "algorithms": []}
    reg.save(tuple(reg.tables))
    for sub in ("results", "logs", "jobs", "updates", "problems", "algorithms", "external"):
        d = reg.layout.dir(sub)
        if d.is_dir():
            _unlink_all(e.path for e in os.scandir(d) if e.is_file())
    for name in ("user_function", "more_args"):
        p = getattr(reg.layout, name)
        if p.exists():
            p.unlink()
    shutil.rmtree(reg.layout.dir("pool"), ignore_errors=True)
    reg._pool = None


def remove_registry(wait: float = 0, reg: Registry | None = None) -> str:
    """Delete the registry's directory. Jobs still running keep running but lose their output.
    ``wait``: seconds to wait for running jobs first. Returns the removed path."""
    reg = resolve(reg)
    reg.assert_writeable("remove the registry")
    if wait:
        from .wait import wait_for_jobs

        wait_for_jobs(timeout=wait, reg=reg)
    path = str(reg.file_dir)
    shutil.rmtree(path, ignore_errors=True)
    if core._default is reg:
        core._default = None
    return path


def batch_export(export: dict[str, Any] | None = None, unexport=(), reg: Registry | None = None) -> pd.DataFrame:
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
    if export or unexport:
        reg.assert_writeable("export objects")
        reg.layout.dir("exports").mkdir(exist_ok=True)
    for name, obj in export.items():
        write_pickle(reg.layout.export(name), obj)
    for name in unexport:
        p = reg.layout.export(name)
        if p.exists():
            p.unlink()
    d = reg.layout.dir("exports")
    names = sorted(e.name[:-4] for e in os.scandir(d) if e.name.endswith(".pkl")) if d.is_dir() else []
    return pd.DataFrame({"name": names, "uri": [str(reg.layout.export(n)) for n in names]})
