"""The result store: where a job's result lives, for the node that writes it and the master that reads it.

One small interface (:class:`ResultStore`): ``put``, ``get``, ``delete``, ``exists``, ``ids``,
with hooks that have defaults (set-aside results, packs, sweeping, clearing), so callers call
the store whatever store it is. :class:`FolderStore` keeps ``results/<job_id>.pkl`` in the
registry folder (the default); :class:`~batchtools.SQLiteStore` keeps one
SQLite database; a store other than these is one new subclass. A store's :attr:`~ResultStore.spec`
is saved with the registry (:func:`store_from_spec` makes it again on load), and the store is
pickled into every job collection, so the node writes through the same kind of object the master
reads through.

``put`` is ``stage`` + ``commit``: a writer that must check something at the last moment (a pool
worker asks the claim log whether it was fenced) stages the result, checks, then commits or
discards it, so a superseded run can never replace the accepted result.

A node that runs many jobs in one collection writes through :meth:`ResultStore.packed`:
:class:`FolderStore` appends small results to one pack file of the collection (:mod:`.packs`),
and the status table's ``job_hash`` decides which record counts. Readers see both kinds through
the same methods.

``stash``/``restore``/``drop`` set the results of a previous run aside while a resubmission is
being handed to the backend: a refused submission restores them, an accepted one drops them once
the new state is saved. Set-aside results are files ``results/.prev-<tag>-<id>.pkl`` whatever the
store (:class:`FolderStore` renames its file there), so a master killed in between loses nothing:
the next writeable session puts back those of a resubmission that never reached the backend.
"""

from __future__ import annotations

import importlib
import itertools
import logging
import os
import pickle
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..errors import CorruptFileError, ResultNotFoundError
from ..persistence.files import (
    NETWORK_FS,
    atomic_write_bytes,
    dumps,
    file_system_type,
    link_unnamed,
    read_pickle,
    unlink_quietly,
    write_new,
    write_unnamed,
)
from ..persistence.layout import Layout, is_data_file
from .packs import (
    NAME_PREFIX,
    PACK_LIMIT,
    DamagedRecord,
    PackIndex,
    PackWriter,
    hash_lookup,
    read_located,
    read_record,
)

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger("batchtools")


def _gzip():
    import gzip

    class Gzip:  # gzip at level 6, as R's saveRDS(compress = "gzip")
        @staticmethod
        def compress(data: bytes) -> bytes:
            return gzip.compress(data, compresslevel=6, mtime=0)

    return Gzip


def _bz2():
    import bz2

    return bz2


def _xz():
    import lzma

    return lzma


# compression name -> factory of a module-like object with compress(bytes)
COMPRESSORS: dict[str | None, Any] = {None: None, "gzip": _gzip, "bz2": _bz2, "xz": _xz}
# first bytes of a compressed file -> how to decompress it
_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\xfd7zXZ\x00", "xz"))


def decompress(data: bytes) -> bytes:
    """``data`` decompressed if it starts like a gzip, bzip2 or xz stream (a pickle never does)."""
    for magic, kind in _MAGIC:
        if data.startswith(magic):
            if kind == "gzip":
                import gzip

                return gzip.decompress(data)
            return COMPRESSORS[kind]().decompress(data)
    return data


def encode_value(value: Any, compress: str | None = None) -> bytes:
    """``value`` as the bytes of a result: pickled, compressed as ``compress`` says."""
    data = dumps(value)
    return data if compress is None else COMPRESSORS[compress]().compress(data)


class ResultStore(ABC):
    """Where results live. Subclass it to keep results elsewhere than in files of the registry folder.

    A store is made as ``cls(file_dir, **kwargs)`` for the registry folder ``file_dir``; its
    ``spec`` (the constructor and those keyword arguments) is saved with the registry, so a
    registry reopens with its store, and the store is pickled into every job collection, so a
    node writes through the same kind of store the master reads through. Seven methods are
    required (``stage``, ``commit``, ``discard``, ``get``, ``delete``, ``exists``, ``ids``); the
    others have defaults: results set aside during a resubmission (``stash``) are kept as files
    ``results/.prev-<tag>-<id>.pkl`` of the registry folder (durable: a master killed
    mid-resubmission loses no result), and the pack hooks (``packed``, ``drop_packs``,
    ``damaged``, ...) do nothing for a store that does not pack results.
    """

    #: whether the store writes results compressed as ``compress`` says (the configuration's ``compress``)
    compresses: bool = False
    compress: str | None = None
    #: the jobs' current hashes (ids -> object array), bound by the registry to its status table
    job_hashes: Callable[[np.ndarray], np.ndarray] | None = None

    def __init__(self, file_dir: str | os.PathLike, compress: str | None = None):
        self.layout = Layout(file_dir)
        if compress is not None and not self.compresses:
            raise ValueError(f"compress: {type(self).__name__} does not compress; pass compress=None")
        self.compress = check_compress(compress)

    @property
    def spec(self) -> dict[str, Any]:
        """How to make this store again for the registry folder, saved with the registry:
        ``{"constructor": "module:Class", "kwargs": {...}}``, rebuilt as ``Class(file_dir, **kwargs)``
        (``store_from_spec``). The compression is not part of it: it is a setting of the
        configuration file, as in R."""
        return {"constructor": f"{type(self).__module__}:{type(self).__qualname__}", "kwargs": {}}

    def __reduce__(self):
        # pickled into job collections: made again on the node from its spec (no open files or
        # connections travel), with the session's compression
        return (_remake, (self.spec, os.fspath(self.layout.file_dir), self.compress))

    # ------------------------------------------------------------ required
    @abstractmethod
    def stage(self, job_id: int, value: Any) -> Any:
        """Serialise ``value`` and write it where readers cannot see it yet; a token for commit/discard."""

    @abstractmethod
    def commit(self, token: Any) -> None:
        """Make a staged result the job's result (atomically replacing an older one)."""

    @abstractmethod
    def discard(self, token: Any) -> None:
        """Forget a staged result."""

    @abstractmethod
    def get(self, job_id: int) -> Any:
        """The result of ``job_id``; :class:`~batchtools.ResultNotFoundError` if there is none,
        :class:`~batchtools.CorruptFileError` if it cannot be read."""

    @abstractmethod
    def delete(self, job_ids: Iterable[int]) -> int:
        """Remove the results of ``job_ids`` that exist; how many were removed."""

    @abstractmethod
    def exists(self, job_id: int) -> bool:
        """Whether ``job_id`` has a result."""

    @abstractmethod
    def ids(self) -> np.ndarray:
        """Sorted ids of all jobs with a result."""

    # ------------------------------------------------------------ defaults
    def put(self, job_id: int, value: Any) -> None:
        """Write the result of ``job_id`` (atomically)."""
        self.commit(self.stage(job_id, value))

    def get_many(self, job_ids: Iterable[int]) -> list[Any]:
        """The results of ``job_ids``, in that order."""
        return [self.get(i) for i in job_ids]

    def modified(self, job_id: int) -> float | None:
        """When the result of ``job_id`` was written (seconds since the epoch), if the store knows."""
        return None

    def modified_many(self, job_ids: Iterable[int]) -> list[float | None]:
        """``modified()`` of each of ``job_ids``."""
        return [self.modified(i) for i in job_ids]

    def encode(self, value: Any) -> bytes:
        """``value`` as the bytes of a result (pickled, compressed as configured)."""
        return encode_value(value, self.compress)

    def raw(self, job_id: int) -> bytes:
        """The bytes stored for the result of ``job_id`` (as ``encode()`` made them);
        FileNotFoundError if there is none."""
        return self.encode(self.get(job_id))

    def put_raw(self, job_id: int, data: bytes) -> None:
        """Make ``data`` (bytes ``raw()`` returned) the result of ``job_id`` again."""
        self.put(job_id, pickle.loads(decompress(data)))

    def raw_many(self, job_ids: Iterable[int]) -> list[bytes | None]:
        """``raw()`` of each of ``job_ids``, in that order; None where a job has no readable result."""
        out: list[bytes | None] = []
        for i in job_ids:
            try:
                out.append(self.raw(i))
            except (OSError, LookupError, CorruptFileError):  # none (ResultNotFoundError), or unreadable
                out.append(None)
        return out

    def location(self, job_id: int) -> str:
        """Where the result of ``job_id`` is kept (for messages)."""
        return f"{self!r}, job {int(job_id)}"

    # set aside: durable files of the registry folder, whatever the store
    def stash_path(self, job_id: int, tag: str) -> str:
        return os.path.join(os.fspath(self.layout.dir("results")), f".prev-{tag}-{int(job_id)}.pkl")

    def stash(self, job_ids: Iterable[int], tag: str) -> list[int]:
        """Set the results of ``job_ids`` aside under ``tag`` (readers no longer see them); the ids
        moved. Durable: a master killed before ``restore()`` or ``drop()`` leaves them to
        ``load_registry``, which puts back those of a resubmission that never reached the backend."""
        moved = []
        for i in job_ids:
            try:
                data = self.raw(i)
            except FileNotFoundError:
                continue
            except CorruptFileError as e:  # nothing to keep: it goes, so the new run's result is the only one
                log.warning("%s; removed instead of set aside", e)
                self.delete([i])
                continue
            atomic_write_bytes(self.stash_path(i, tag), data)  # first kept, then removed: never neither
            self.delete([i])
            moved.append(int(i))
        return moved

    def restore(self, job_ids: Iterable[int], tag: str) -> None:
        """Put results set aside by ``stash()`` back."""
        for i in job_ids:
            path = self.stash_path(i, tag)
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
            except FileNotFoundError:
                continue
            self.put_raw(int(i), data)
            unlink_quietly([path])

    def drop(self, job_ids: Iterable[int], tag: str) -> None:
        """Forget results set aside by ``stash()``."""
        unlink_quietly(self.stash_path(i, tag) for i in job_ids)

    def stashed(self) -> list[tuple[str, int]]:
        """(tag, job id) of every result set aside and not yet restored or dropped."""
        try:
            with os.scandir(self.layout.dir("results")) as it:
                names = [e.name for e in it if e.name.startswith(".prev-") and e.name.endswith(".pkl")]
        except FileNotFoundError:
            return []
        out = []
        for name in names:
            tag, _, job_id = name[len(".prev-"):-len(".pkl")].rpartition("-")
            if tag and job_id.isdigit():
                out.append((tag, int(job_id)))
        return out

    # keeping the store
    def sweep(self, before: float) -> int:
        """Remove temporary files the store's writers left behind (a writer killed mid-way) older
        than ``before`` (seconds since the epoch); how many were removed (``sweep_registry``)."""
        try:
            with os.scandir(self.layout.dir("results")) as it:
                stale = [e.path for e in it if e.name.startswith(".tmp-") and e.stat().st_mtime < before]
        except FileNotFoundError:
            return 0
        return unlink_quietly(stale)

    def clear(self) -> None:
        """Remove every result, set-aside result and temporary file (``clear_registry``)."""
        self.delete(self.ids().tolist())
        unlink_quietly(self.stash_path(i, tag) for tag, i in self.stashed())
        self.sweep(float("inf"))

    # packing: hooks for a store that appends the small results of a collection to one file
    def packed(self, job_hash: str, shared: bool = False) -> ResultStore:
        """The store a node writes through while it runs the collection ``job_hash`` of many jobs
        (``shared``: one for the collections this process runs one after another); by default this store."""
        return self

    def own_view(self, job_hash: str) -> ResultStore:
        """The results an earlier run of the collection ``job_hash`` left, as the node running it
        reads them (a store that packs: that collection's own records, not the saved status table's
        view, which may not know the collection yet); by default this store."""
        return self

    def close(self) -> None:
        """A node is done with the store ``packed()`` gave it."""
        return None

    def close_packs(self) -> None:
        """The collections run in this process are done (a shared pack is closed)."""
        return None

    def drop_packs(self, keep: set[str]) -> int:
        """Remove packed results of collections whose hash is not in ``keep``; how many packs were removed."""
        return 0

    def damaged(self, job_ids: Iterable[int]) -> list[int]:
        """Those of ``job_ids`` whose result was damaged where it lies (``repair_registry`` marks them failed)."""
        return []

    def pack_damage(self) -> dict[str, int]:
        """Where the store holds bytes that are no readable result of a known job, and how many."""
        return {}

    def orphans(self, job_ids: Iterable[int]) -> dict[int, str]:
        """For those of ``job_ids`` with a result tagged with the collection that wrote it: that
        collection's hash, whatever the status table says (``repair_registry`` adopts them)."""
        return {}

    def packed_by(self, job_ids: list[int], job_hashes: list[str]) -> list[bool]:
        """Which of ``job_ids`` have a result tagged with the collection ``job_hashes`` says (one each)."""
        return [False] * len(job_ids)

    def unpacked_ids(self) -> np.ndarray:
        """Sorted ids of the jobs whose result is not tagged with the collection that wrote it."""
        return self.ids()


def check_compress(compress: str | None) -> str | None:
    if compress not in COMPRESSORS:
        raise ValueError(f"compress: must be one of {sorted(k for k in COMPRESSORS if k)} or None, got {compress!r}")
    return compress


def store_from_spec(spec: dict[str, Any] | None, file_dir: str | os.PathLike) -> ResultStore:
    """The store a registry saved (:attr:`ResultStore.spec`) made again for ``file_dir``; a registry
    saved without a spec (an older version) has a :class:`FolderStore`. A store that cannot be
    made here is a stand-in that refuses every operation with the reason (never another store:
    it would report the results as missing).

    >>> import tempfile
    >>> store_from_spec({"constructor": "batchtools.core.results.store:FolderStore", "kwargs": {}}, tempfile.mkdtemp())
    FolderStore('.../results')
    """
    if not spec:
        return FolderStore(file_dir)
    try:
        return _construct(spec, file_dir)
    except Exception as e:
        log.warning("could not make the registry's result store %s again: %s", spec["constructor"], e)
        return UnavailableStore(file_dir, spec, e)


def _construct(spec: dict[str, Any], file_dir: str | os.PathLike) -> ResultStore:
    module, _, name = spec["constructor"].partition(":")
    cls: Any = importlib.import_module(module)
    for part in name.split("."):
        cls = getattr(cls, part)
    return cls(file_dir, **spec.get("kwargs", {}))


def _remake(spec: dict[str, Any], file_dir: str, compress: str | None) -> ResultStore:
    """A store unpickled (on a node): made from its spec, or an error saying why not."""
    store = _construct(spec, file_dir)
    store.compress = compress
    return store


class UnavailableStore(ResultStore):
    """Stands in for a registry's store that cannot be made here (its module is missing): every
    operation fails with the reason; its spec stays the saved one."""

    def __init__(self, file_dir: str | os.PathLike, spec: dict[str, Any], error: Exception):
        super().__init__(file_dir)
        self._spec = spec
        self.why = (f"the registry's result store ({spec['constructor']}) cannot be made here: "
                    f"{type(error).__name__}: {error}. Make its module importable and load the registry again")

    @property
    def spec(self) -> dict[str, Any]:
        return self._spec

    def __repr__(self) -> str:
        return f"UnavailableStore({self._spec['constructor']!r})"

    def _refuse(self, *args, **kwargs):
        raise RuntimeError(self.why)

    compresses = True  # the configuration's compress is not what makes it unusable

    stage = commit = discard = get = delete = exists = ids = stashed = stash = restore = drop = _refuse
    get_many = modified_many = raw = put_raw = sweep = clear = _refuse


_HOST = socket.gethostname().split(".")[0]


def _unreadable(where: str, job_id, e: Exception, at: str = "") -> CorruptFileError:
    """The error for a result that cannot be read (its file, or its record in a pack), and the way out."""
    return CorruptFileError(
        f"{where}: the result of job {job_id}{at} cannot be read ({type(e).__name__}: {e}). "
        f"Run the job again: reset_jobs([{job_id}]) and submit_jobs([{job_id}]) (repair_registry finds "
        f"every damaged result); or pass missing_val=... to reduce the others")


class FolderStore(ResultStore):
    """Results as ``results/<job_id>.pkl`` files in the registry folder, pickled and optionally
    compressed (``compress``: None, ``"gzip"``, ``"bz2"`` or ``"xz"``, R's ``compress``). Reading
    recognises the compression of each file by its first bytes, so files of any setting mix.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); os.mkdir(os.path.join(d, "results"))
    >>> store = FolderStore(d)
    >>> store.put(2, {"x": 1}); store.get(2), store.exists(3), store.ids().tolist()
    ({'x': 1}, False, [2])
    >>> FolderStore(d, compress="xz").put(3, "small"); store.get(3)
    'small'
    """

    compresses = True

    def __init__(self, file_dir: str | os.PathLike, compress: str | None = None):
        super().__init__(file_dir, compress)
        self._dir = os.fspath(self.layout.dir("results")) + os.sep  # paths built by string: a hot path
        self._counter = itertools.count()
        self._unnamed = hasattr(os, "O_TMPFILE")
        # job_hashes (the jobs' current hashes) decide which packed record counts: bound by the
        # registry to its status table; unbound, the saved status table decides
        self.own_hash: str | None = None  # a node's view: only its own collection's records count
        self._packs: PackIndex | None = None
        self._saved_hashes: tuple | None = None
        self._writer: PackWriter | None = None  # shared by the collections run in this process

    def __repr__(self) -> str:
        return f"FolderStore({str(self.layout.dir('results'))!r})"

    def path(self, job_id: int) -> str:
        return f"{self._dir}{int(job_id)}.pkl"

    def packed(self, job_hash: str, shared: bool = False) -> ResultStore:
        """The store a node writes through while it runs the collection ``job_hash`` of many jobs:
        results up to 64 KiB are appended to a pack, larger ones get their own file. ``shared``:
        the collections run in this process one after another append to one pack (Interactive),
        until :meth:`close_packs`. On a network file system (NFS, SMB: another client may not see
        appended data before the writer closes the file) this store itself: one file per result."""
        if file_system_type(os.fspath(self.layout.file_dir)) in NETWORK_FS:
            return self
        if not shared:
            return PackedStore(self, job_hash, PackWriter(os.fspath(self.layout.dir("packs")), job_hash))
        if self._writer is None:
            # named after the submission (the collections of an in-process submission share the
            # start of their hashes), so a job's hash names the packs its result may be in
            self._writer = PackWriter(os.fspath(self.layout.dir("packs")), job_hash[:NAME_PREFIX])
        return PackedStore(self, job_hash, self._writer)

    def own_view(self, job_hash: str) -> FolderStore:
        """This store as the node running collection ``job_hash`` reads it: only that collection's
        packed records count (and result files)."""
        view = FolderStore(self.layout.file_dir, self.compress)
        view.own_hash = job_hash
        return view

    def close_packs(self) -> None:
        """Close the pack shared by the collections run in this process (the next one starts a new pack)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def stage(self, job_id: int, value: Any) -> tuple:
        return self.stage_bytes(job_id, self.encode(value))

    def stage_bytes(self, job_id: int, data: bytes) -> tuple:
        if self._unnamed:
            fd = write_unnamed(self._dir, data)
            if fd is not None:
                return fd, job_id, data
            self._unnamed = False  # NFS and some file systems have no unnamed files
        return self._stage_named(job_id, data), job_id, None

    def _tmp_name(self, job_id: int) -> str:
        # a name no other process uses (host and pid), so O_EXCL never has to retry
        return f"{self._dir}.tmp-{_HOST}-{os.getpid()}-{next(self._counter)}-{int(job_id)}"

    def _stage_named(self, job_id: int, data: bytes) -> str:
        tmp = self._tmp_name(job_id)
        write_new(tmp, data)
        return tmp

    def commit(self, token: tuple) -> None:
        staged, job_id, data = token
        if isinstance(staged, PackWriter):
            staged.append(job_id, *data)
            return
        final = self.path(job_id)
        if not isinstance(staged, str):  # an unnamed file
            fd = staged
            try:
                try:
                    if link_unnamed(fd, final):
                        return
                    self._unnamed = False  # no /proc to link through: named files from now on
                    staged = self._stage_named(job_id, data)
                except FileExistsError:  # the result of an earlier run: replaced atomically
                    staged = self._tmp_name(job_id)
                    link_unnamed(fd, staged)
            finally:
                os.close(fd)
        os.replace(staged, final)

    def discard(self, token: tuple) -> None:
        staged = token[0]
        if isinstance(staged, PackWriter):
            return
        if isinstance(staged, str):
            unlink_quietly([staged])
        else:
            os.close(staged)

    # ------------------------------------------------------------------ packs
    def _current_hashes(self, job_ids: list[int]) -> list | None:
        """The current hash of each of ``job_ids`` (None: no packed record counts for it), or None
        if every record counts (a folder without a status table)."""
        hashes = self._vector_hashes()
        if hashes is None:
            return None
        import numpy as np

        return hashes(np.array(job_ids, dtype=np.int64)).tolist()

    def _vector_hashes(self) -> Callable | None:
        """``ids -> their current hashes`` (see :meth:`_current_hashes`)."""
        if self.own_hash is not None:
            import numpy as np

            own = self.own_hash
            return lambda ids: np.full(len(ids), own, dtype=object)
        return self.job_hashes or self._saved_job_hashes()

    def _saved_job_hashes(self) -> Callable | None:
        """The hashes of the saved status table (a store used without its registry's session)."""
        path = self.layout.table("status")
        try:
            stamp = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            return None
        if self._saved_hashes is None or self._saved_hashes[0] != stamp:
            from ..persistence.columns import column  # NumPy: not on a node whose jobs do not use it

            st = read_pickle(path)
            self._saved_hashes = (stamp, hash_lookup(column(st, "job_id"), column(st, "job_hash")))
        return self._saved_hashes[1]

    def _pack_index(self, refresh: bool = True) -> PackIndex:
        """The index of the registry's packs (read on since the last call if ``refresh``)."""
        if self._packs is None:
            self._packs = PackIndex(os.fspath(self.layout.dir("packs")))
            refresh = True
        if refresh:
            self._packs.refresh()
        return self._packs

    def _record(self, job_id: int):
        """(pack, record number) of the packed result of ``job_id`` that counts, or None."""
        hashes = self._current_hashes([job_id])
        current = hashes[0] if hashes is not None else None
        found = self._pack_index(refresh=False).lookup(job_id, current, hashes is None)
        if found is None and (hashes is None or current is not None):
            found = self._pack_index().lookup(job_id, current, hashes is None)
        return found

    def _read_record(self, job_id: int, found) -> Any:
        pf, k = found
        try:
            data = read_record(pf, k)
        except FileNotFoundError:  # its pack was swept meanwhile: its result, if any, is elsewhere now
            return self._look_again(job_id)
        except DamagedRecord as e:
            raise _unreadable(pf.path, job_id, e, f" (at byte {pf.offsets[k]})") from e
        return self._decode(job_id, found, data)

    def _look_again(self, job_id: int) -> Any:
        self._pack_index()
        found = self._record(job_id)
        return self._read_record(job_id, found) if found else self._read_file(job_id)

    @staticmethod
    def _decode(job_id: int, found, data: bytes) -> Any:
        try:
            return pickle.loads(data if data[:1] == b"\x80" else decompress(data))  # b"\x80": a pickle
        except Exception as e:
            raise _unreadable(found[0].path, job_id, e, f" (at byte {found[0].offsets[found[1]]})") from e

    def _read_file(self, job_id: int) -> Any:
        """The result file of ``job_id``; a missing one raises :meth:`missing`'s error."""
        try:
            return self.read(f"{self._dir}{int(job_id)}.pkl")
        except FileNotFoundError:
            raise self.missing(job_id) from None

    def missing(self, job_id: int) -> ResultNotFoundError:
        """The error for ``job_id`` having no result: which file and which packs were looked in, and,
        if a run of it is recorded, that its result is lost and what to do."""
        hashes = self._current_hashes([job_id])
        current = hashes[0] if hashes is not None else None
        path = self.path(job_id)
        if current is None:
            return ResultNotFoundError(f"{path}: job {job_id} has no result (no file, and no record in packs/"
                                       f"{'' if hashes is None else ' of a run the status table records'})")
        index = self._pack_index(refresh=False)
        packs = index.packs_of(current)
        if packs:
            where = f"the pack its collection appended to ({', '.join(pf.path for pf in packs)}) holds no record of it"
            damage = [f"{pf.name} has {sum(n for _, n in pf.damage)} unreadable bytes at byte {pf.damage[0][0]}"
                      for pf in packs if pf.damage]
            if damage:
                where += f" ({'; '.join(damage)}: its record may have been there)"
        else:
            where = (f"no pack its collection {current} appended to is left "
                     f"({self.layout.dir('packs')}{os.sep}{current[:NAME_PREFIX]}*.pack: deleted?)")
        return ResultNotFoundError(
            f"{path}: the result of job {job_id} is lost: it is neither in this file nor packed ({where}). "
            f"Run bt.repair_registry({str(self.layout.file_dir)!r}): it marks jobs whose results are lost "
            "or damaged as failed, to be submitted again (bt.submit_jobs(bt.find_errors())); or pass "
            "missing_val=... to reduce the others")

    def packed_by(self, job_ids: list[int], job_hashes: list[str]) -> list[bool]:
        """Which of ``job_ids`` have a packed record of the collection ``job_hashes`` says (one
        each), whatever the status table says: evidence that the collection ran them."""
        return [f is not None for f in self._pack_index().lookup_many(job_ids, job_hashes)]

    def pack_damage(self) -> dict[str, int]:
        """Packs holding bytes that are no readable record (a damaged header: the job whose result
        was there cannot be told), and how many such bytes each holds."""
        return {pf.path: sum(n for _, n in pf.damage) for pf in self._pack_index().files.values() if pf.damage}

    def damaged(self, job_ids: Iterable[int]) -> list[int]:
        """Those of ``job_ids`` whose packed result that counts was damaged where it lies
        (``repair_registry`` marks them as failed)."""
        ids = [int(i) for i in job_ids]
        if not ids:
            return []
        return self._pack_index().damaged_ids(ids, self._current_hashes(ids))

    def drop_packs(self, keep: set[str]) -> int:
        """Remove the packs of collections whose hash is not in ``keep`` (none of their records can
        count any more); how many were removed."""
        index = self._pack_index()
        gone = unlink_quietly(index.dead(keep))
        index.refresh()
        return gone

    def orphans(self, job_ids: Iterable[int]) -> dict[int, str]:
        """For those of ``job_ids`` with a packed result: the hash of their last record, whatever
        the status table says (``repair_registry`` adopts results whose submission it lost)."""
        last = self._pack_index().last_hashes()
        return {int(i): last[int(i)] for i in job_ids if int(i) in last}

    def location(self, job_id: int) -> str:
        """The file that holds the result of ``job_id`` (its pack, or its own file)."""
        found = self._record(job_id)
        return found[0].path if found is not None else self.path(job_id)

    # ------------------------------------------------------------------ reading
    def raw(self, job_id: int) -> bytes:
        """The bytes stored for the result of ``job_id`` (pickled, compressed as it was written)."""
        found = self._record(job_id)
        if found is not None:
            return read_record(*found)
        with open(self.path(job_id), "rb") as fh:
            return fh.read()

    def get(self, job_id: int) -> Any:
        found = self._record(job_id)
        if found is not None:
            return self._read_record(job_id, found)
        return self._read_file(job_id)

    @staticmethod
    def read(path: str) -> Any:
        fd = os.open(path, os.O_RDONLY)
        try:
            chunks = []
            while True:
                b = os.read(fd, 1 << 20)
                if not b:
                    break
                chunks.append(b)
        finally:
            os.close(fd)
        try:
            return pickle.loads(decompress(chunks[0] if len(chunks) == 1 else b"".join(chunks)))
        except Exception as e:
            raise _unreadable(path, os.path.basename(path)[:-4], e) from e

    def raw_many(self, job_ids: Iterable[int]) -> list[bytes | None]:
        """``raw()`` of each of ``job_ids`` (None: none, or unreadable), their packs looked up at once."""
        ids = [int(i) for i in job_ids]
        index = self._pack_index()
        out: list[bytes | None] = [None] * len(ids)
        if index.files:
            pack_no, rec_no, packs = index.locate(ids, self._current_hashes(ids))
            failed = read_located(packs, pack_no, rec_no, out, bytes)  # an unreadable record stays None
            unpacked = (pack_no < 0).nonzero()[0].tolist()
        else:
            failed, unpacked = {}, range(len(ids))
        for k in unpacked:
            if k not in failed:
                try:
                    with open(self.path(ids[k]), "rb") as fh:
                        out[k] = fh.read()
                except OSError:
                    pass
        return out

    def get_many(self, job_ids: Iterable[int]) -> list[Any]:
        """The results of ``job_ids``, in that order; packed ones are read pack by pack, in windows
        holding the records asked for (memory grows with the results read, not with the packs)."""
        index = self._pack_index()
        ids = [int(i) for i in job_ids]
        if not index.files:
            return [self._read_file(i) for i in ids]
        pack_no, rec_no, packs = index.locate(ids, self._current_hashes(ids))
        out: list[Any] = [None] * len(ids)
        loads = pickle.loads
        failed = read_located(packs, pack_no, rec_no, out, lambda data: loads(decompress(data)),
                              (0x80, loads))  # b"\x80": a pickle
        unpacked = (pack_no < 0).nonzero()[0].tolist()
        for k in sorted({*failed, *unpacked}):  # what was not read from a pack, in order
            i = ids[k]
            if k not in failed:  # no packed record counts: its own file
                out[k] = self._read_file(i)
                continue
            e, pf = failed[k], packs[pack_no[k]]
            if isinstance(e, FileNotFoundError):  # its pack was swept meanwhile
                out[k] = self._look_again(i)
            else:  # damaged where it lies, or its bytes are no pickle
                raise _unreadable(pf.path, i, e, f" (at byte {pf.offsets[rec_no[k]]})") from e
        return out

    def delete(self, job_ids: Iterable[int]) -> int:
        """Remove the result files of ``job_ids``. Packed results are not removed here: they stop
        counting when the job's hash in the status table changes (reset, resubmission, removal),
        and :meth:`drop_packs` removes packs of which no record counts."""
        return unlink_quietly(self.path(i) for i in job_ids)

    def put_raw(self, job_id: int, data: bytes) -> None:
        self.commit(self.stage_bytes(job_id, data))

    def stash(self, job_ids: Iterable[int], tag: str) -> list[int]:
        moved = []
        for i in job_ids:
            try:
                os.replace(self.path(i), self.stash_path(i, tag))
                moved.append(int(i))
            except FileNotFoundError:
                pass
        return moved

    def restore(self, job_ids: Iterable[int], tag: str) -> None:
        for i in job_ids:
            try:
                os.replace(self.stash_path(i, tag), self.path(i))
            except FileNotFoundError:
                pass

    def clear(self) -> None:
        """Remove every file of ``results/`` and ``packs/``."""
        self.close_packs()
        for sub in ("results", "packs"):
            try:
                with os.scandir(self.layout.dir(sub)) as it:
                    unlink_quietly([e.path for e in it if e.is_file()])
            except FileNotFoundError:
                pass
        self._packs = None

    def exists(self, job_id: int) -> bool:
        return self._record(job_id) is not None or os.path.exists(self.path(job_id))

    def modified(self, job_id: int) -> float | None:
        return self.modified_many([job_id])[0]

    def modified_many(self, job_ids: Iterable[int]) -> list[float | None]:
        ids = [int(i) for i in job_ids]
        found = self._pack_index().lookup_many(ids, self._current_hashes(ids))
        out: list[float | None] = []
        for i, f in zip(ids, found):
            if f is not None:
                out.append(f[0].times[f[1]])
                continue
            try:
                out.append(os.stat(self.path(i)).st_mtime)
            except FileNotFoundError:
                out.append(None)
        return out

    def file_ids(self) -> np.ndarray:
        """Sorted ids of the jobs with a result file (not a packed result)."""
        import numpy as np  # here, not at the top: the node path starts faster without NumPy

        try:
            with os.scandir(self.layout.dir("results")) as it:
                names = [e.name[:-4] for e in it if is_data_file(e.name)]
        except FileNotFoundError:
            names = []
        return np.sort(np.array([int(n) for n in names if n.isdigit()], dtype=np.int64))

    unpacked_ids = file_ids

    def ids(self) -> np.ndarray:
        import numpy as np

        files = self.file_ids()
        index = self._pack_index()
        if not index.files:
            return files
        hashes = self._vector_hashes()
        packed = index.valid_ids(hashes)
        return np.union1d(files, packed)


class PackedStore(ResultStore):
    """A node's view of a :class:`FolderStore` while it runs the collection ``job_hash``: results
    up to 64 KiB are appended to the collection's pack, larger ones are written as their own file;
    reading sees only this collection's records (a restarted collection skips jobs it finished)."""

    def __init__(self, base: FolderStore, job_hash: str, writer: PackWriter):
        self.base = base
        self.layout = base.layout
        self.compress = base.compress
        self.job_hash = job_hash
        self.writer = writer
        self._view: FolderStore | None = None

    @property
    def view(self) -> FolderStore:
        """The store as this collection reads it (made when first needed: most collections never read)."""
        if self._view is None:
            self._view = self.base.own_view(self.job_hash)
        return self._view

    def __repr__(self) -> str:
        return f"PackedStore({self.base!r}, {self.job_hash!r})"

    def stage(self, job_id: int, value: Any) -> tuple:
        return self._stage_bytes(job_id, self.base.encode(value))

    def _stage_bytes(self, job_id: int, data: bytes) -> tuple:
        if len(data) <= PACK_LIMIT:
            return self.writer, job_id, (self.job_hash, data)
        return self.base.stage_bytes(job_id, data)

    def put_raw(self, job_id: int, data: bytes) -> None:
        self.commit(self._stage_bytes(job_id, data))  # as it is encoded (not decoded and encoded again)

    def commit(self, token: tuple) -> None:
        self.base.commit(token)

    def discard(self, token: tuple) -> None:
        self.base.discard(token)

    def close(self) -> None:
        """Close this collection's pack (a shared one stays open for the next collection)."""
        if self.writer is not self.base._writer:
            self.writer.close()

    def get(self, job_id: int) -> Any:
        return self.view.get(job_id)

    def delete(self, job_ids: Iterable[int]) -> int:
        return self.view.delete(job_ids)

    def exists(self, job_id: int) -> bool:
        return self.view.exists(job_id)

    def ids(self) -> np.ndarray:
        return self.view.ids()
