"""The result store: where a job's result lives, for the node that writes it and the master that reads it.

One small interface (:class:`ResultStore`): ``put``, ``get``, ``delete``, ``exists``, ``ids``.
:class:`FolderStore` keeps ``results/<job_id>.pkl`` in the registry folder; a store other than a
folder is one new subclass. A store is pickled into every job collection, so the node writes
through the same object the master reads through.

``put`` is ``stage`` + ``commit``: a writer that must check something at the last moment (a pool
worker asks the claim log whether it was fenced) stages the result, checks, then commits or
discards it, so a superseded run can never replace the accepted result.

``stash``/``restore``/``drop`` set the results of a previous run aside while a resubmission is
being handed to the backend: a refused submission restores them, an accepted one drops them once
the new state is saved. (The base class keeps stashed results in memory; a store that can move
them aside durably, like :class:`FolderStore`, overrides these.)
"""

from __future__ import annotations

import itertools
import os
import pickle
import socket
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .errors import CorruptFileError
from .files import dumps, link_unnamed, unlink_quietly, write_all, write_unnamed
from .layout import Layout, is_data_file

if TYPE_CHECKING:
    import numpy as np


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


class ResultStore(ABC):
    """Where results live. Subclass it to keep results elsewhere than in the registry folder."""

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
        """The result of ``job_id``; FileNotFoundError if there is none."""

    @abstractmethod
    def delete(self, job_ids: Iterable[int]) -> int:
        """Remove the results of ``job_ids`` that exist; how many were removed."""

    @abstractmethod
    def exists(self, job_id: int) -> bool:
        """Whether ``job_id`` has a result."""

    @abstractmethod
    def ids(self) -> np.ndarray:
        """Sorted ids of all jobs with a result."""

    def put(self, job_id: int, value: Any) -> None:
        """Write the result of ``job_id`` (atomically)."""
        self.commit(self.stage(job_id, value))

    def get_many(self, job_ids: Iterable[int]) -> list[Any]:
        """The results of ``job_ids``, in that order."""
        return [self.get(i) for i in job_ids]

    def modified(self, job_id: int) -> float | None:
        """When the result of ``job_id`` was written (seconds since the epoch), if the store knows."""
        return None

    def stash(self, job_ids: Iterable[int], tag: str) -> list[int]:
        """Set the results of ``job_ids`` aside under ``tag`` (readers no longer see them); the ids moved."""
        kept = self.__dict__.setdefault("_stashed", {})
        moved = []
        for i in job_ids:
            if self.exists(i):
                kept[(tag, int(i))] = self.get(i)
                moved.append(int(i))
        self.delete(moved)
        return moved

    def restore(self, job_ids: Iterable[int], tag: str) -> None:
        """Put results set aside by :meth:`stash` back."""
        kept = self.__dict__.get("_stashed", {})
        for i in job_ids:
            if (tag, int(i)) in kept:
                self.put(int(i), kept.pop((tag, int(i))))

    def drop(self, job_ids: Iterable[int], tag: str) -> None:
        """Forget results set aside by :meth:`stash`."""
        kept = self.__dict__.get("_stashed", {})
        for i in job_ids:
            kept.pop((tag, int(i)), None)

    def stashed(self) -> list[tuple[str, int]]:
        """(tag, job id) of every result set aside and not yet restored or dropped."""
        return list(self.__dict__.get("_stashed", {}))


_HOST = socket.gethostname().split(".")[0]


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

    def __init__(self, file_dir: str | os.PathLike, compress: str | None = None):
        self.layout = Layout(file_dir)
        self._dir = os.fspath(self.layout.dir("results")) + os.sep  # paths built by string: a hot path
        self._counter = itertools.count()
        if compress not in COMPRESSORS:
            raise ValueError(f"compress: must be one of {sorted(k for k in COMPRESSORS if k)} or None, got {compress!r}")
        self.compress = compress
        self._unnamed = hasattr(os, "O_TMPFILE")

    def __repr__(self) -> str:
        return f"FolderStore({str(self.layout.dir('results'))!r})"

    def __reduce__(self):  # pickled into job collections: only the folder (and compression) travel
        return (FolderStore, (str(self.layout.file_dir), self.compress))

    def path(self, job_id: int) -> str:
        return f"{self._dir}{int(job_id)}.pkl"

    def stage(self, job_id: int, value: Any) -> tuple:
        data = dumps(value)
        if self.compress is not None:
            data = COMPRESSORS[self.compress]().compress(data)
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
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                write_all(fd, data)
            finally:
                os.close(fd)
        except BaseException:
            unlink_quietly([tmp])
            raise
        return tmp

    def commit(self, token: tuple) -> None:
        staged, job_id, data = token
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
        if isinstance(staged, str):
            unlink_quietly([staged])
        else:
            os.close(staged)

    def get(self, job_id: int) -> Any:
        return self.read(self.path(job_id))

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
            job_id = os.path.basename(path)[:-4]
            raise CorruptFileError(
                f"{path}: the result of job {job_id} cannot be read ({type(e).__name__}: {e}). "
                f"Run the job again: reset_jobs([{job_id}]) and submit_jobs([{job_id}]); or pass "
                f"missing_val=... to reduce the others") from e

    def get_many(self, job_ids: Iterable[int]) -> list[Any]:
        return [self.read(f"{self._dir}{int(i)}.pkl") for i in job_ids]

    def delete(self, job_ids: Iterable[int]) -> int:
        return unlink_quietly(self.path(i) for i in job_ids)

    def stash_path(self, job_id: int, tag: str) -> str:
        return os.path.join(os.path.dirname(self.path(job_id)), f".prev-{tag}-{int(job_id)}.pkl")

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

    def drop(self, job_ids: Iterable[int], tag: str) -> None:
        unlink_quietly(self.stash_path(i, tag) for i in job_ids)

    def stashed(self) -> list[tuple[str, int]]:
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

    def exists(self, job_id: int) -> bool:
        return os.path.exists(self.path(job_id))

    def modified(self, job_id: int) -> float | None:
        try:
            return os.stat(self.path(job_id)).st_mtime
        except FileNotFoundError:
            return None

    def ids(self) -> np.ndarray:
        import numpy as np  # here, not at the top: the node path starts faster without NumPy

        try:
            with os.scandir(self.layout.dir("results")) as it:
                names = [e.name[:-4] for e in it if is_data_file(e.name)]
        except FileNotFoundError:
            return np.empty(0, np.int64)
        return np.sort(np.array([int(n) for n in names if n.isdigit()], dtype=np.int64))
