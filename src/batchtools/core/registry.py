"""The registry's state: one directory, its settings and its tables.

This module owns persistence (``registry.pkl`` plus one pickle per table) and the
in-memory state. The public classes (:class:`batchtools.Registry`,
:class:`batchtools.ExperimentRegistry`) add the user verbs as methods on top of
:class:`RegistryState`; the verbs themselves live in :mod:`batchtools.api`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import pickle
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pandas as pd

from .._version import __version__
from .config import KEYS
from .contract.backend import run_hook
from .errors import CorruptFileError, LeaseError, ReadOnlyRegistryError
from .jobstate.counts import summary_bytes
from .jobstate.ids import as_id_array, check_ids
from .jobstate.kinds import KINDS, definitions_for
from .jobstate.state import masks, status_counts
from .jobstate.sync import sync_updates
from .persistence.files import atomic_write_bytes, file_identity, keep_previous, table_error, unlink_quietly
from .persistence.layout import FORMAT_VERSION, Layout
from .persistence.lease import Lease
from .persistence.tables import TABLES, encode_table, read_frame, shallow_copy, upgrade_status
from .persistence.txn import Transaction, committed_versions
from .results.packs import hash_lookup
from .results.store import ResultStore, store_from_spec
from .workerpool.pool import sync_pool

log = logging.getLogger("batchtools")

# tables a registry of an older format may lack: name -> the first format that always has it
TABLE_SINCE = {"attempts": 2}
REREAD_ROUNDS = 20  # reads of the tables in a row that found another version saved meanwhile, at most


def check_format(meta: dict, path: str | os.PathLike) -> int:
    """The format version of the settings ``meta`` read from ``path``; RuntimeError if this
    pybatchtools cannot read it (a newer one wrote it)."""
    if not isinstance(meta, dict) or meta.get("kind", "map") not in KINDS:
        raise table_error(path, "settings", f"cannot be read (it holds a {type(meta).__name__}, not a registry's "
                          "settings)")
    version = meta.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise table_error(path, "settings", f"names no valid format version ({version!r})")
    if version > FORMAT_VERSION:
        raise RuntimeError(
            f"{path}: the registry has format version {version}, written by a newer pybatchtools; this is "
            f"pybatchtools {__version__}, which reads format versions up to {FORMAT_VERSION}. Upgrade pybatchtools "
            "(e.g. pip install -U pybatchtools) to open it; nothing was changed")
    return version


class LostTable:
    """Stands in for a table whose file is missing or unreadable, in a read-only session (which
    shows what the other tables know): any use of it raises the error that names the file and
    the way out."""

    def __init__(self, error: CorruptFileError):
        self.message = str(error)

    def _fail(self, *args, **kwargs):
        raise CorruptFileError(self.message)

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        self._fail()

    __getitem__ = __len__ = __iter__ = __contains__ = _fail

    def __repr__(self) -> str:
        return f"LostTable({self.message!r})"


@dataclass
class SessionState:
    """What one session of a registry remembers besides the tables: caches, what it has already
    warned about or decided, reports merged but not saved yet. Never saved; a failed mutating
    call restores it (:meth:`RegistryState.mutation`). Every module keeps its session memory
    here, in a named field, rather than on the registry object."""

    pool: Any = None  # master-side worker pool state (core.pool.PoolState), loaded when first needed
    merged_unsaved: list[str] = field(default_factory=list)  # update files merged into memory, deleted once saved
    last_state_save: float = 0.0  # when the status table was last saved (sync saves at most every SAVE_INTERVAL)
    save_failed: bool = False  # a query's save failed (e.g. disk full): warned once, state kept in memory
    next_attempt: dict[int, int] | None = None  # job id -> the attempt its submission starts (core.attempts.continuing)
    heal_seen: set[tuple] = field(default_factory=set)  # (job id, job hash, attempt) of ended attempts already decided
    bad_updates: set[str] = field(default_factory=set)  # update files quarantined or warned about (core.sync)
    applied_updates: set[str] = field(default_factory=set)  # update files merged by a read-only session (core.sync)
    unknown_runs_warned: set[str] = field(default_factory=set)  # runs unknown to the status, warned about once
    usage_off: bool = False  # the scheduler keeps no accounting (core.usage)
    usage_given_up: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # jobs core.usage gave up on
    status_counts: Any = None  # counts of one version of the status table (core.jobstate.state.status_counts)
    backend: dict[str, Any] = field(default_factory=dict)  # per-backend scratch (see :meth:`scratch`)
    cache: Any = None  # the registry's ResultCache (core.cached.cache_of)
    cache_keys: dict[int, Any] = field(default_factory=dict)  # job id -> its cache key, as submitted (core.cached)
    adopted: set[int] = field(default_factory=set)  # jobs recorded done from their result, for the cache (core.cached)

    def scratch(self, name: str, factory: Callable[[], Any] = dict) -> Any:
        """The session memory of backend ``name`` (made by ``factory`` when first asked for), e.g.
        the Slurm jobs already released from their requeue hold.

        >>> s = SessionState()
        >>> s.scratch("slurm")["1@1"] = None
        >>> s.scratch("slurm")
        {'1@1': None}
        """
        if name not in self.backend:
            self.backend[name] = factory()
        return self.backend[name]

    def snapshot(self) -> SessionState:
        """A copy to restore after a failed call: containers copied, so changing them in place does
        not change the copy (the pool state's own undo is :meth:`RegistryState.mutation`'s)."""
        out = SessionState(**{f.name: getattr(self, f.name) for f in fields(self)})
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (set, list, dict)) and f.name != "backend":
                setattr(out, f.name, copy.copy(value))
        out.backend = copy.deepcopy(self.backend)
        return out


class RegistryState:
    """A registry's state: job definitions, seeds, resources, status; logs and results on disk.

    Users get it as :class:`batchtools.Registry` from :func:`batchtools.make_registry` or
    :func:`batchtools.load_registry`.
    """

    kind = "map"

    def __init__(self, file_dir: str | os.PathLike, writeable: bool = True, kind: str | None = None):
        if kind is not None:
            self.kind = kind
        self.layout = Layout(file_dir)
        self.writeable = writeable
        self.temporary = False
        self.seed: int = 1
        self.work_dir: str = os.getcwd()
        self.packages: tuple[str, ...] = ()
        self.source: tuple[str, ...] = ()
        self.load: tuple[str, ...] = ()
        self._cluster_functions: Any = None
        self.default_resources: dict[str, Any] = {}
        self.max_concurrent_jobs: int | None = None
        # the shared cache of results (core/cached.py): saved with the registry
        self._cache_dir: str | None = None
        self._cache_max_size: int | None = None
        # settings of the configuration file for this session (see core/config.py KEYS)
        self.temp_dir: str | None = None
        self.sleep: Any = None
        self.expire_after: int | None = None
        self.conf_file: str | None = None
        # seconds between two progress lines when stderr is not a terminal (None: the default, 30)
        self.progress_interval: float | None = None
        # batch_map bookkeeping: which par columns are passed positionally, does fun take `job`
        self.positional: list[str] = []
        self.pass_job: bool = False
        self.definitions = definitions_for(self)
        self.extra: dict[str, Any] = self.definitions.initial_extra()
        self.tables: dict[str, pd.DataFrame] = self.definitions.empty_tables()
        self.format_version = FORMAT_VERSION  # of the folder as read (an older one is upgraded when saved)
        self.lost_tables: list[str] = []  # tables whose file is missing (read-only sessions only: see read_tables)
        self.show_partial = True  # a read-only session shows what is known when a table is lost (read_tables)
        self._store: ResultStore = self._bind(store_from_spec(None, self.layout.file_dir))  # the default
        self._dirty: set[str] = set()
        # status rows of jobs run inside this process (Interactive), merged by sync like update files
        self.pending_updates: list[tuple[str, list]] = []
        # job hashes submitted but not yet recorded in ``status``: sync keeps their updates for later
        self.inflight: set[str] = set()
        self.lease: Lease | None = None  # this session's writeable lease (writeable registries only)
        self._txn: Transaction | None = None  # the file undo log of the running mutating call
        # set once the registry exists on disk: changes of the cluster functions and the store are saved at once
        self.on_disk = False
        self._saved_counts: dict[str, int] | None = None  # counts of the status table on disk (status.counts)
        self._table_ids: dict[str, tuple | None] = {}  # the version of each table file read (read_tables)
        self.session = SessionState()  # what this session remembers besides the tables

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

    def is_dirty(self, *names: str) -> bool:
        """Whether any of the tables ``names`` changed in memory since it was last saved."""
        return any(n in self._dirty for n in names)

    @property
    def status_unsaved(self) -> bool:
        """Whether the status in memory is ahead of the one on disk (changed, or reports merged)."""
        return bool(self.session.merged_unsaved) or "status" in self._dirty

    def ids(self, ids, default: np.ndarray | None = None, arg: str = "ids", keep_order: bool = False) -> np.ndarray:
        """Normalise and check ``ids`` (None -> ``default``, else all jobs): sorted, or with
        ``keep_order`` in the order given; a duplicated or unknown id raises."""
        if ids is None:
            return self.job_ids.copy() if default is None else np.asarray(default, dtype=np.int64)
        return check_ids(self.job_ids, as_id_array(ids, arg), arg, keep_order=keep_order)

    def pos(self, ids: np.ndarray) -> np.ndarray:
        """Row positions in ``status`` of (existing, sorted) job ids."""
        return np.searchsorted(self.job_ids, ids)

    def assert_writeable(self, action: str) -> None:
        """Raise unless this session may change the registry: loaded writeable and still holding the
        lease (one ``stat``, so it is checked before every hand-over to a backend)."""
        if not self.writeable:
            if self.lease is not None and self.lease.taken_by is not None:  # not loaded read-only: taken over
                raise LeaseError(f"Cannot {action}: {self.lease.lost_message()}")
            raise ReadOnlyRegistryError(
                f"Cannot {action}: the registry at {self.file_dir} was loaded read-only. "
                f"Load it with load_registry({str(self.file_dir)!r}, writeable=True) to change it."
            )
        if self.lease is not None:
            try:
                self.lease.check()
            except LeaseError as e:
                self.writeable = False  # as R does with a stale session: read-only from now on
                raise LeaseError(f"Cannot {action}: {e}") from None

    def take_lease(self, force: bool = False) -> None:
        """Become the registry's one writeable session (see :mod:`batchtools.core.persistence.lease`)."""
        lease = Lease(self.file_dir)
        lease.acquire(force=force)
        self.lease = lease

    # ------------------------------------------------------------ mutations
    @contextlib.contextmanager
    def mutation(self, action: str) -> Iterator[None]:
        """Run a mutating call: on any error, memory and files are as they were before it.

        Files written through :meth:`write_bytes` / :meth:`save` inside are backed up first
        (:class:`~batchtools.core.persistence.txn.Transaction`); files to delete are deleted only on success
        (:meth:`delete_after`). Nested mutations join the outer one.
        """
        self.assert_writeable(action)
        if self._txn is not None:
            yield
            return
        saved = dict(self.__dict__)
        saved["tables"] = {k: shallow_copy(v) for k, v in self.tables.items()}
        saved["extra"] = copy.deepcopy(self.extra)
        saved["_dirty"] = set(self._dirty)
        saved["pending_updates"] = list(self.pending_updates)
        saved["inflight"] = set(self.inflight)
        saved["default_resources"] = dict(self.default_resources)
        saved["session"] = self.session.snapshot()
        pool = self.session.pool
        pool_saved = (copy.deepcopy(pool.workers), dict(pool.queues), pool.plan) if pool is not None else None
        self._txn = txn = Transaction(self.file_dir)
        try:
            yield
        except BaseException:
            txn.rollback()
            self.__dict__.clear()
            self.__dict__.update(saved)
            if pool is not None:
                pool.workers, pool.queues, pool.plan = pool_saved
            raise
        finally:
            self._txn = None
        txn.commit()

    def write_bytes(self, path: str | os.PathLike, data: bytes, fsync: bool = False) -> None:
        """Write a registry file atomically (undone if the running mutation fails)."""
        if self._txn is not None:
            self._txn.before_write(path)
        atomic_write_bytes(path, data, fsync=fsync)

    def _keep_previous(self, path: Path) -> None:
        if self._txn is not None:
            self._txn.before_write(f"{path}.prev")
        keep_previous(path)

    def write_pickle(self, path: str | os.PathLike, obj: Any) -> None:
        self.write_bytes(path, cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def delete_after(self, paths) -> None:
        """Delete ``paths`` once the running mutation succeeded (at once outside of one)."""
        paths = list(paths)
        if self._txn is not None:
            self._txn.after_commit(lambda: unlink_quietly(paths))
        else:
            unlink_quietly(paths)

    def after_commit(self, fn) -> None:
        """Run ``fn`` once the running mutation succeeded (at once outside of one)."""
        if self._txn is not None:
            self._txn.after_commit(fn)
        else:
            fn()

    def on_rollback(self, fn) -> None:
        """Run ``fn`` if the running mutation fails (undoing what the file undo log cannot)."""
        if self._txn is not None:
            self._txn.on_rollback(fn)

    @property
    def compress(self) -> str | None:
        """Compression of the result files jobs write (None, 'gzip', 'bz2', 'xz'; R's ``compress``)."""
        return self.store.compress

    @compress.setter
    def compress(self, value: str | None) -> None:
        try:
            value = KEYS["compress"].check(value)  # R's spellings too: "bzip2", True
        except ValueError as e:
            raise ValueError(f"compress: {e}") from None
        if value is not None and not self.store.compresses:
            raise ValueError(f"compress: the result store {self.store!r} does not compress; set compress=None")
        self.store.compress = value

    def relocate(self, file_dir: str | os.PathLike) -> None:
        """Point a registry that has written nothing yet at another folder."""
        compress = self.compress
        self.layout = Layout(file_dir)
        self._store = self._bind(store_from_spec(self._store.spec, self.layout.file_dir))
        self._store.compress = compress

    def _bind(self, store: ResultStore) -> ResultStore:
        """``store`` with packed results decided by this session's status table."""
        store.job_hashes = self._job_hashes
        return store

    @property
    def store(self) -> ResultStore:
        """Where the jobs' results live (a :class:`~batchtools.ResultStore`; default a
        :class:`~batchtools.FolderStore`, ``results/`` of the registry folder; or a
        :class:`~batchtools.SQLiteStore`). Set it before any job has a result; it is saved with the
        registry, which reopens with it.

        >>> import batchtools as bt
        >>> reg = bt.make_registry(file_dir=None)
        >>> reg.store = bt.SQLiteStore(reg.file_dir)
        >>> type(bt.load_registry(reg.file_dir).store).__name__
        'SQLiteStore'
        """
        return self._store

    @store.setter
    def store(self, store: ResultStore) -> None:
        if not isinstance(store, ResultStore):
            raise TypeError(f"store: expected a ResultStore (e.g. FolderStore(reg.file_dir)), got {type(store).__name__}")
        if not isinstance(getattr(store, "layout", None), Layout):
            raise TypeError(f"store: {store!r} knows no registry folder; its __init__ must call "
                            "super().__init__(file_dir)")
        if os.path.realpath(store.layout.file_dir) != os.path.realpath(self.file_dir):
            raise ValueError(f"store: {store!r} is made for the folder {str(store.layout.file_dir)!r}, not for this "
                             f"registry's {str(self.file_dir)!r}; make it with {type(store).__name__}(reg.file_dir)")
        try:
            cloudpickle.dumps(store.spec)
        except Exception as e:
            raise TypeError(f"store: its spec {store.spec!r} cannot be saved with the registry ({e}); "
                            "give the store's constructor arguments that can be pickled") from None
        old = self._store
        if store is not old and (old.ids().size or old.stashed()):
            raise ValueError(f"store: the registry's results are in {old!r}; a new store would not see them. "
                             "Choose the store before jobs run, or clear_registry() first")
        self.assert_writeable("change the result store")
        if store.compresses and store.compress is None:
            store.compress = old.compress  # the session's setting (the configuration's compress)
        self._store = self._bind(store)
        if self.on_disk:
            try:
                self.save((), meta=True)  # saved with the registry: later sessions and nodes use it
            except BaseException:
                self._store = old
                raise

    @property
    def cache_dir(self) -> str | None:
        """The folder of the shared cache of results this registry takes results from and adds
        results to (None: no cache); saved with the registry. See :func:`batchtools.explain_cache`.

        >>> import batchtools as bt, tempfile
        >>> reg = bt.make_registry(file_dir=None)
        >>> reg.cache_dir = tempfile.mkdtemp()
        >>> bt.load_registry(reg.file_dir).cache_dir == reg.cache_dir
        True
        """
        return self._cache_dir

    @cache_dir.setter
    def cache_dir(self, value: str | os.PathLike | None) -> None:
        self._set_setting("cache_dir", value)

    @property
    def cache_max_size(self) -> int | None:
        """The bound of the cache in bytes (set as a number or as ``"20G"``): the least recently used
        results go first when it is passed (None: unbounded); saved with the registry."""
        return self._cache_max_size

    @cache_max_size.setter
    def cache_max_size(self, value: int | str | None) -> None:
        self._set_setting("cache_max_size", value)

    def _set_setting(self, name: str, value: Any) -> None:
        """Set the saved setting ``name`` (checked as :data:`~.config.KEYS` says; saved at once once
        the registry is on disk, and left as it was if that fails)."""
        try:
            value = KEYS[name].check(value)
        except (TypeError, ValueError, OSError) as e:
            raise type(e)(f"{name}: {e}") from None
        attr = f"_{name}"
        old = getattr(self, attr)
        setattr(self, attr, value)
        if self.on_disk and value != old:
            try:
                self.save((), meta=True)
            except BaseException:
                setattr(self, attr, old)
                raise

    def _job_hashes(self, ids: np.ndarray) -> np.ndarray:
        """The current ``job_hash`` of ``ids`` (object array; None where a job has none or is unknown)."""
        return hash_lookup(self.job_ids, self.status["job_hash"].to_numpy())(ids)

    # ------------------------------------------------------ cluster functions
    @property
    def cluster_functions(self) -> Any:
        return self._cluster_functions

    @cluster_functions.setter
    def cluster_functions(self, cf: Any) -> None:
        check = getattr(cf, "check_registry", None)
        if check is not None:
            check(self)  # e.g. a path the backend's scheduler cannot take: say so now
        self._cluster_functions = cf
        if self.on_disk and self.writeable and self.lease is not None and not self.lease.lost:
            # the choice is saved with the registry, so any later session (and the command line) uses it
            try:
                self.save((), meta=True)
            except (OSError, LeaseError) as e:
                log.warning("could not save the cluster functions with the registry: %s", e)

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
            "cluster_functions": _storable(getattr(self.cluster_functions, "spec", None)),
            "store": self.store.spec,
            "cache_dir": self.cache_dir,
            "cache_max_size": self.cache_max_size,
            "saved": time.time(),
        }

    def set_meta(self, meta: dict[str, Any]) -> None:
        for key in ("seed", "work_dir", "packages", "source", "load", "positional", "pass_job", "extra"):
            if key in meta:
                setattr(self, key, meta[key])
        # as saved (checked when set; a folder not writable here is said when the cache is used)
        self._cache_dir, self._cache_max_size = meta.get("cache_dir"), meta.get("cache_max_size")
        self.format_version = meta.get("version", 1)
        # the store it was made with (a registry of an older version has none saved: a FolderStore)
        self._store = self._bind(store_from_spec(meta.get("store"), self.file_dir))

    def save(self, tables: tuple[str, ...] | None = None, meta: bool = True) -> None:
        """Write the settings and the changed tables atomically.

        ``defs`` is written before ``status``: the status table decides which jobs
        exist, so a crash in between leaves at most an unreferenced definition.
        """
        self.assert_writeable("save the registry")
        wanted = set(tables if tables is not None else self._dirty)
        if meta and self.format_version < FORMAT_VERSION:  # the settings will name the current format: its tables first
            wanted |= {t for t in self.tables if not self.layout.table(t).exists()}
        names = [t for t in TABLES if t in self.tables and t in wanted]
        for name in names:
            path = self.layout.table(name)
            data = pickle.dumps(encode_table(self.tables[name]), protocol=pickle.HIGHEST_PROTOCOL)
            self._keep_previous(path)
            self.write_bytes(path, data)
            self._dirty.discard(name)
            if name == "status":
                self.session.last_state_save = time.time()
                self._saved_counts = status_counts(self)[0]
                if self.session.merged_unsaved:  # what they said is saved now: the files can go
                    self.delete_after(self.session.merged_unsaved)
                    self.session.merged_unsaved = []
        if meta:
            self._keep_previous(self.layout.meta)
            self.write_pickle(self.layout.meta, self.meta())
            if self.format_version != FORMAT_VERSION:
                log.info("registry %s: upgraded from format version %d to %d", self.file_dir, self.format_version,
                         FORMAT_VERSION)
                self.format_version = FORMAT_VERSION
        if (names or meta) and self._saved_counts is not None:
            self._save_summary()
        self.session.save_failed = False

    def _save_summary(self) -> None:
        """The counts of the status table on disk (as this session read or last saved it), after
        each save (of any table: the summary names the version of every file it describes).
        Written like any registry file (a failed write fails the save, undone with the change); a
        summary left stale by a crash between the writes is never used."""
        files = [self.layout.meta.name, *(self.layout.table(t).name for t in self.tables)]
        self.write_bytes(self.layout.status_summary, summary_bytes(self.file_dir, self._saved_counts, files))

    def save_state(self) -> bool:
        """Save the status of a query (sync): on a full disk or lost permission, warn once and keep
        answering from memory (merged update files stay until a save succeeds). True if the
        state is on disk."""
        try:  # with the attempts a sync closed (a requeued run), if any
            self.save(("status", "attempts") if "attempts" in self._dirty else ("status",), meta=False)
            return True
        except LeaseError:
            raise
        except OSError as e:
            self._dirty.add("status")
            if not self.session.save_failed:
                log.warning("could not save the registry's status (%s); answering from memory, the status "
                            "files of the nodes are kept until a save succeeds", e)
            self.session.save_failed = True
            return False

    def read_tables(self) -> None:
        """Read the tables as last committed (a change in progress elsewhere is not seen half-done),
        all of one version: a table another session replaced while they were read is read again
        (:meth:`tables_changed`), so a new ``status`` is never paired with old definitions.

        A table whose file is missing (or unreadable) is an error naming it (CorruptFileError),
        never an empty table: a writeable session would save the empty one over the evidence. A
        read-only session (unless ``show_partial`` is off, as for the command line) shows what
        the other tables know, warning once: the lost table stands in as a :class:`LostTable`
        that raises the same error when used (the status table is needed for everything, so its
        loss is always an error). A table a registry of an older format may predate
        (:data:`TABLE_SINCE`) is empty when neither it nor its previous version exists."""
        self._read_tables([t for t in TABLES if t in self.tables], {})

    def _read_tables(self, names: list[str], lost: dict[str, CorruptFileError]) -> None:
        """Read the tables ``names`` (``lost``: the tables read before and found lost), again while
        another session replaces some of them, then settle what is lost."""
        for _ in range(REREAD_ROUNDS):
            committed = committed_versions(self.file_dir)
            for name in names:
                lost.pop(name, None)
                path = self.layout.table(name)
                self._table_ids[name] = None
                for source in (committed.get(str(path), path), path):  # a backup may vanish: then it committed
                    if source is None:
                        break
                    try:
                        self._table_ids[name] = file_identity(source)
                        self.tables[name] = read_frame(source, name)
                        break
                    except FileNotFoundError:
                        continue
                    except CorruptFileError as e:
                        lost[name] = e
                        break
                else:
                    if self.format_version >= TABLE_SINCE.get(name, 1) or Path(f"{path}.prev").exists():
                        lost[name] = table_error(path, name, "is missing")
            names = self.tables_changed()
            if not names:
                break
        else:
            log.warning("registry %s: the tables %s were replaced while they were read, %d times in a row; "
                        "showing the last versions read", self.file_dir, names, REREAD_ROUNDS)
        self.lost_tables = list(lost)
        for name, error in lost.items():
            if name == "status" or self.writeable or not self.show_partial:
                raise error
            if not isinstance(self.tables[name], LostTable):
                self.tables[name] = LostTable(error)
                log.warning("%s. Opened read-only: what the other tables say is shown, anything that needs the %s "
                            "table fails with this error", error, name)
        self.tables["status"] = upgrade_status(self.tables["status"])  # a registry of an older version
        self._saved_counts = status_counts(self)[0]
        self._dirty.clear()

    def tables_changed(self) -> list[str]:
        """The tables whose committed version is not the one this session read (another session
        saved them since): one ``open`` each, and one for the undo log's manifest."""
        committed = committed_versions(self.file_dir)
        changed = []
        for name, known in self._table_ids.items():
            path = self.layout.table(name)
            source = committed.get(str(path), path)
            now = None if source is None else file_identity(source)
            if now is None and source is not None and source != path:  # the backup vanished: the change committed
                now = file_identity(path)
            if now != known:
                changed.append(name)
        return changed

    def refresh(self) -> bool:
        """A read-only session: read the tables another session saved since this one read them
        (and the chunks its journal names, and the pool's claims, on them); True if any. The common
        case costs one ``open``: the status file is the one read (the reports the master merged are
        deleted only after it saved the status; a change of another table alone, e.g. tags, is seen
        with the next save of the status)."""
        status = self.layout.table("status")
        if file_identity(status) == self._table_ids.get("status", False):
            return False
        changed = self.tables_changed()
        if not changed:
            return False
        from .jobstate.recovery import replay_journal

        self._read_tables(changed, {n: CorruptFileError(t.message) for n, t in self.tables.items() if isinstance(t, LostTable)})
        replay_journal(self)
        self.session.pool = None  # the claims are applied to the new status again
        self.session.applied_updates.clear()  # reports merged into the old status: again, if still there
        return True

    def sync(self) -> int:
        """Merge what the nodes reported (update files, pool claims) into the status table,
        running the backend's ``pre_sync``/``post_sync`` hooks around it, as every sync does.
        Returns the number of update batches merged (at least 1 if a read-only session read
        tables again: its state changed).

        A read-only session checks, after listing the update files, that the tables it holds are
        still the ones committed, and reads them again if not: the writeable session deletes the
        update files it merged only after it saved the status holding them, so a session that
        read the status before that save and listed ``updates/`` after it would see neither."""
        run_hook(self, "pre_sync")
        refreshed = False
        for _ in range(REREAD_ROUNDS):
            claimed = sync_pool(self)
            if self.cache_dir is None:
                merged = sync_updates(self)
            else:  # the jobs this sync finds done add their results to the cache
                from .cached import publish_done

                was = ~np.isnan(self.status["done"].to_numpy())
                merged = sync_updates(self)
                publish_done(self, was)
            if self.writeable or not self.refresh():
                break
            refreshed = True
        else:
            log.warning("registry %s: the writeable session saved the tables %d times while this session merged "
                        "the reports; showing the last versions read", self.file_dir, REREAD_ROUNDS)
        if claimed and not merged and self.writeable:
            self.save_state()
        run_hook(self, "post_sync")
        return max(merged, int(refreshed))

    # ------------------------------------------------------------------- repr
    def __repr__(self) -> str:
        cf = getattr(self.cluster_functions, "name", None)
        counts = "".join(f", {k}={v}" for k, v in self.definitions.counts().items())
        return (
            f"{type(self).__name__}(file_dir={str(self.file_dir)!r}, jobs={len(self.status)}{counts}, "
            f"seed={self.seed}, cluster_functions={cf!r}, writeable={self.writeable})"
        )

    def __str__(self) -> str:
        """R's printout of a registry (``print(reg)``)."""
        rows = [("Backend", getattr(self.cluster_functions, "name", None)), ("File dir", self.file_dir),
                ("Work dir", self.work_dir), ("Jobs", len(self.status)),
                *((k.capitalize(), v) for k, v in self.definitions.counts().items()),
                ("Seed", self.seed), ("Writeable", self.writeable)]
        width = max(len(k) for k, _ in rows)
        return "\n".join([self.definitions.title, *(f"  {k:<{width}}: {v}" for k, v in rows)])


def _storable(spec: dict | None) -> dict | None:
    """A cluster-functions spec that can be saved (arguments such as a live client cannot: then none)."""
    if spec is None:
        return None
    try:
        cloudpickle.dumps(spec)
    except Exception as e:
        log.info("the cluster functions %s cannot be saved with the registry (%s); set them again after loading",
                 spec.get("constructor"), e)
        return None
    return spec


_default: RegistryState | None = None


def get_default_registry() -> RegistryState:
    """The registry used when ``reg=None``: the last one made or loaded with ``make_default=True``."""
    if _default is None:
        raise ValueError(
            "reg: no default registry. Create one with make_registry() or load_registry(), "
            "or pass reg=... explicitly."
        )
    return _default


def set_default_registry(reg: RegistryState | None) -> None:
    """Make ``reg`` the default registry for calls with ``reg=None``; ``None`` unsets it (as R's
    ``setDefaultRegistry(NULL)``).

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> bt.set_default_registry(None)
    >>> bt.get_default_registry()
    Traceback (most recent call last):
    ...
    ValueError: reg: no default registry. Create one with make_registry() or load_registry(), or pass reg=... explicitly.
    """
    global _default
    if reg is not None:
        assert_registry(reg)
    _default = reg


def assert_registry(reg, writeable: bool = False, experiment: bool = False, sync: bool = False,
                    running_ok: bool = True) -> RegistryState:
    """Check that ``reg`` is a Registry (optionally writeable / an ExperimentRegistry / with no job
    on the system: ``running_ok=False``), and with ``sync=True`` merge what the nodes reported,
    as R's ``assertRegistry`` (R's ``class = "ExperimentRegistry"`` is ``experiment=True``).

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> bt.assert_registry(reg, writeable=True, sync=True, running_ok=False) is reg
    True
    """
    if not isinstance(reg, RegistryState):
        raise TypeError(f"reg: expected a Registry, got {type(reg).__name__}")
    for name, flag in (("writeable", writeable), ("experiment", experiment), ("sync", sync),
                       ("running_ok", running_ok)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name}: must be True or False, got {flag!r}")
    if writeable:
        reg.assert_writeable("change it")
    if experiment:
        require_kind(reg, "experiment", "this")
    if not running_ok and masks(reg)["system"].any():
        raise ValueError("reg: this is not allowed while jobs of the registry are on the system; "
                         "wait_for_jobs() or kill_jobs() first")
    if sync:
        reg.sync()
    return reg


def require_kind(reg: RegistryState, kind: str, what: str) -> None:
    """Refuse ``what`` on a registry of another kind, saying which kind of registry it needs."""
    if reg.kind != kind:
        how = {"experiment": "make_experiment_registry()", "map": "make_registry()"}[kind]
        needs = "an experiment registry" if kind == "experiment" else "a plain registry"
        raise TypeError(f"reg: {what} needs {needs}; create one with {how}")


def resolve(reg: RegistryState | None) -> RegistryState:
    return get_default_registry() if reg is None else assert_registry(reg)
