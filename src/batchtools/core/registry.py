"""The registry's state: one directory, its settings and its tables.

This module owns persistence (``registry.pkl`` plus one pickle per table) and the
in-memory state. The public classes (:class:`batchtools.Registry`,
:class:`batchtools.ExperimentRegistry`) add the user verbs as methods on top of
:class:`RegistryState`; the verbs themselves live in :mod:`batchtools.api`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .backend import run_hook
from .errors import ReadOnlyRegistryError
from .files import read_pickle, write_pickle
from .ids import as_id_array, check_ids
from .kinds import definitions_for
from .layout import Layout
from .pool import sync_pool
from .store import FolderStore, ResultStore
from .sync import sync_updates
from .tables import TABLES

log = logging.getLogger("batchtools")

FORMAT_VERSION = 1


class RegistryState:
    """A registry's state: job definitions, seeds, resources, status; logs and results on disk.

    Users get it as :class:`batchtools.Registry` from :func:`batchtools.make_registry` or
    :func:`batchtools.load_registry`.
    """

    kind = "map"

    def __init__(self, file_dir: str | os.PathLike, writeable: bool = True):
        self.layout = Layout(file_dir)
        self.writeable = writeable
        self.temporary = False
        self.seed: int = 1
        self.work_dir: str = os.getcwd()
        self.packages: tuple[str, ...] = ()
        self.source: tuple[str, ...] = ()
        self.load: tuple[str, ...] = ()
        self.cluster_functions: Any = None
        self.default_resources: dict[str, Any] = {}
        self.max_concurrent_jobs: int | None = None
        self.conf_file: str | None = None
        # batch_map bookkeeping: which par columns are passed positionally, does fun take `job`
        self.positional: list[str] = []
        self.pass_job: bool = False
        self.definitions = definitions_for(self)
        self.extra: dict[str, Any] = self.definitions.initial_extra()
        self.tables: dict[str, pd.DataFrame] = self.definitions.empty_tables()
        self.store: ResultStore = FolderStore(self.layout.file_dir)
        self._dirty: set[str] = set()
        # status rows of jobs run inside this process (Interactive), merged by sync like update files
        self.pending_updates: list[tuple[str, list]] = []
        # job hashes submitted but not yet recorded in ``status``: sync keeps their updates for later
        self.inflight: set[str] = set()
        self._pool = None  # master-side worker pool state (core.pool), loaded when first needed

    # ------------------------------------------------------------------ state
    @property
    def file_dir(self) -> Path:
        return self.layout.file_dir

    @property
    def status(self) -> pd.DataFrame:
        return self.tables["status"]

    @status.setter
    def status(self, df: pd.DataFrame) -> None:
        self.tables["status"] = df
        self._dirty.add("status")

    @property
    def defs(self) -> pd.DataFrame:
        return self.tables["defs"]

    @defs.setter
    def defs(self, df: pd.DataFrame) -> None:
        self.tables["defs"] = df
        self._dirty.add("defs")

    @property
    def job_ids(self) -> np.ndarray:
        return self.status["job_id"].to_numpy()

    def mark_dirty(self, *names: str) -> None:
        self._dirty.update(names)

    def ids(self, ids, default: np.ndarray | None = None, arg: str = "ids") -> np.ndarray:
        """Normalise and check ``ids`` (None -> ``default``, else all jobs)."""
        if ids is None:
            return self.job_ids.copy() if default is None else np.asarray(default, dtype=np.int64)
        return check_ids(self.job_ids, as_id_array(ids, arg), arg)

    def pos(self, ids: np.ndarray) -> np.ndarray:
        """Row positions in ``status`` of (existing, sorted) job ids."""
        return np.searchsorted(self.job_ids, ids)

    def assert_writeable(self, action: str) -> None:
        if not self.writeable:
            raise ReadOnlyRegistryError(
                f"Cannot {action}: the registry at {self.file_dir} was loaded read-only. "
                f"Load it with load_registry({str(self.file_dir)!r}, writeable=True) to change it."
            )

    # ------------------------------------------------------------ persistence
    def meta(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "kind": self.kind,
            "seed": self.seed,
            "work_dir": self.work_dir,
            "packages": self.packages,
            "source": self.source,
            "load": self.load,
            "positional": self.positional,
            "pass_job": self.pass_job,
            "extra": self.extra,
            "saved": time.time(),
        }

    def set_meta(self, meta: dict[str, Any]) -> None:
        for key in ("seed", "work_dir", "packages", "source", "load", "positional", "pass_job", "extra"):
            if key in meta:
                setattr(self, key, meta[key])

    def save(self, tables: tuple[str, ...] | None = None, meta: bool = True) -> None:
        """Write the settings and the changed tables atomically.

        ``defs`` is written before ``status``: the status table decides which jobs
        exist, so a crash in between leaves at most an unreferenced definition.
        """
        self.assert_writeable("save the registry")
        names = [t for t in TABLES if t in self.tables and t in (tables if tables is not None else self._dirty)]
        for name in names:
            write_pickle(self.layout.table(name), self.tables[name])
            self._dirty.discard(name)
        if meta:
            write_pickle(self.layout.meta, self.meta())

    def read_tables(self) -> None:
        for name in TABLES:
            path = self.layout.table(name)
            if path.exists():
                self.tables[name] = read_pickle(path)
        self._dirty.clear()

    def sync(self) -> int:
        """Merge what the nodes reported (update files, pool claims) into the status table,
        running the backend's ``pre_sync``/``post_sync`` hooks around it, as every sync does.
        Returns the number of update batches merged."""
        run_hook(self, "pre_sync")
        claimed = sync_pool(self)
        merged = sync_updates(self)
        if claimed and not merged and self.writeable:
            self.save(("status",), meta=False)
        run_hook(self, "post_sync")
        return merged

    # ------------------------------------------------------------------- repr
    def __repr__(self) -> str:
        cf = getattr(self.cluster_functions, "name", None)
        return (
            f"{type(self).__name__}(file_dir={str(self.file_dir)!r}, jobs={len(self.status)}, "
            f"seed={self.seed}, cluster_functions={cf!r}, writeable={self.writeable})"
        )


_default: RegistryState | None = None


def get_default_registry() -> RegistryState:
    """The registry used when ``reg=None``: the last one made or loaded with ``make_default=True``."""
    if _default is None:
        raise ValueError(
            "reg: no default registry. Create one with make_registry() or load_registry(), "
            "or pass reg=... explicitly."
        )
    return _default


def set_default_registry(reg: RegistryState) -> None:
    """Make ``reg`` the default registry for calls with ``reg=None``."""
    global _default
    assert_registry(reg)
    _default = reg


def assert_registry(reg, writeable: bool = False, experiment: bool = False) -> RegistryState:
    """Check that ``reg`` is a Registry (optionally writeable / an ExperimentRegistry)."""
    if not isinstance(reg, RegistryState):
        raise TypeError(f"reg: expected a Registry, got {type(reg).__name__}")
    if writeable:
        reg.assert_writeable("change it")
    if experiment:
        require_kind(reg, "experiment", "this")
    return reg


def require_kind(reg: RegistryState, kind: str, what: str) -> None:
    """Refuse ``what`` on a registry of another kind, saying which kind of registry it needs."""
    if reg.kind != kind:
        how = {"experiment": "make_experiment_registry()", "map": "make_registry()"}[kind]
        needs = "an experiment registry" if kind == "experiment" else "a plain registry"
        raise TypeError(f"reg: {what} needs {needs}; create one with {how}")


def resolve(reg: RegistryState | None) -> RegistryState:
    return get_default_registry() if reg is None else assert_registry(reg)
