"""The shared cache of results: results of jobs kept under their key (:mod:`.cache_key`), for
any registry to take instead of running an equal job again.

An entry is one file ``entries/<2 hex>/<key digest>.res`` of the cache folder, holding one record
of the pack format (:mod:`.packs`: header checksum, data checksum): the header's hash field holds
the entry's metadata (JSON: the key's digest and parts, a BLAKE2b digest of the data, where the
result came from), the data is the result as a result file holds it (pickled, compressed as
``compress`` says). Reading an entry checks both checksums, the digest and that it is the
entry of the key asked for: a damaged entry is a miss (a warning names the file, and the file is
removed), never another result; an intact entry this process cannot unpickle (a module it lacks)
is a miss with a warning too, and is kept.

Entries are never changed once published. A writer writes a file no reader can see (Linux
``O_TMPFILE``, or a ``.tmp-*`` file where the file system has none, e.g. NFS) and publishes it
with ``link``, which fails if the name exists: of two writers of one key the first wins, and equal
keys hold equal results, so nothing is lost; no entry is ever renamed over another (publishing
by ``link`` as the lease does, :mod:`.lease`). On NFS a ``link`` whose reply was lost, retried and
answered "exists" is judged by the temporary file's link count (the NFS-safe lock file test).

The cache is bounded: with ``max_size`` (bytes), :meth:`ResultCache.prune` removes the least
recently used entries until the rest fit, and ``put`` prunes whenever it has added a tenth of
``max_size`` since the last time. A hit records its time as the entry's access (and
modification) time: one ``utime`` call, kept on file systems mounted ``noatime`` too.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import pickle
import socket
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .cache_key import JobKey
from .persistence.files import link_unnamed, make_dir, unlink_quietly, write_new, write_unnamed
from .results.packs import HEADER, DamagedRecord, decode_record, encode_record, record_header
from .results.store import check_compress, decompress, encode_value

log = logging.getLogger("batchtools")

SUFFIX = ".res"
STALE = 3600.0  # a temporary file older than this (seconds) belongs to a writer that died
_HOST = socket.gethostname().split(".")[0]
_SERIAL = itertools.count()


class CacheWarning(UserWarning):
    """A damaged cache entry, taken as a miss."""


@dataclass(frozen=True)
class Hit:
    """A result found in the cache: ``value`` and ``origin`` (where it was computed: registry
    folder and job id, as the writer said); ``data``: the result as a result file holds it."""

    value: Any
    origin: dict[str, Any]
    path: str
    data: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class CacheEntry:
    """What the header of a cache entry says: key digest and parts, origin, size, last use."""

    digest: str
    parts: dict  # part name -> its hash (or a package's version)
    origin: dict  # the registry folder and job id that computed it
    size: int
    used: float
    path: str


@dataclass(frozen=True)
class CachePruned:
    """What pruning the cache did (``ResultCache.prune``, :func:`batchtools.prune_cache`): entries removed, bytes freed, entries and bytes kept."""

    removed: int
    freed: int
    kept: int
    size: int


class ResultCache:
    """Results under their job keys in the folder ``cache_dir`` (made if missing), shared by any
    number of registries, processes and hosts.

    >>> import tempfile
    >>> from batchtools.core.cache_key import JobKey
    >>> cache = ResultCache(tempfile.mkdtemp())
    >>> key = JobKey.of({"function": "f", "par:x": "1"})
    >>> cache.put(key, {"y": 2}, origin={"job_id": 1}), cache.get(key).value, key in cache
    (True, {'y': 2}, True)
    >>> cache.put(key, {"y": 2})  # already there: the first writer's entry stays
    False
    """

    def __init__(self, cache_dir: str | os.PathLike, max_size: int | None = None, compress: str | None = None):
        if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size <= 0):
            raise ValueError(f"max_size: must be a positive number of bytes or None, got {max_size!r}")
        self.dir = os.fspath(cache_dir)
        self.max_size = max_size
        self.compress = check_compress(compress)
        self._entries = os.path.join(self.dir, "entries")
        make_dir(self._entries)
        self._made: set[str] = set()  # shard folders made (or seen) by this process
        self._added = 0  # bytes put since the last prune (None: never pruned in this process)
        self._pruned = False

    def __repr__(self) -> str:
        return f"ResultCache({self.dir!r}, max_size={self.max_size})"

    def __len__(self) -> int:
        """The number of entries."""
        return sum(1 for path, _ in self._files() if path.endswith(SUFFIX))

    def path(self, digest: str) -> str:
        """The file of the entry of the key with ``digest``."""
        return os.path.join(self._entries, digest[:2], digest + SUFFIX)

    def __contains__(self, key: JobKey) -> bool:
        return os.path.exists(self.path(key.digest))

    # ------------------------------------------------------------------ writing
    def put(self, key: JobKey, value: Any, origin: dict[str, Any] | None = None) -> bool:
        """Keep ``value`` as the result of ``key``; False if the cache has it already (then the
        entry there stays: equal keys compute equal results)."""
        return self.put_raw(key, encode_value(value, self.compress), origin)

    def put_raw(self, key: JobKey, data: bytes, origin: dict[str, Any] | None = None) -> bool:
        """``put`` for a result already encoded as a result file holds it (``ResultStore.raw``)."""
        path = self.path(key.digest)
        if os.path.exists(path):
            return False
        meta = json.dumps({"key": key.digest, "parts": key.parts, "data": _checksum(data),
                           "origin": origin or {}}, sort_keys=True).encode()
        if len(meta) >= 1 << 16:
            raise ValueError(f"key: its {len(key.parts)} parts are too many to keep with the result")
        try:
            added = _publish(path, encode_record(0, time.time(), meta, data), self._made)
        except FileNotFoundError:  # its folder was removed meanwhile (a prune of another process)
            self._made.clear()
            added = _publish(path, encode_record(0, time.time(), meta, data), self._made)
        if added:
            self._added += len(data)
            if self.max_size is not None and (not self._pruned or self._added * 10 >= self.max_size):
                self.prune()
        return added

    # ------------------------------------------------------------------ reading
    def get(self, key: JobKey) -> Hit | None:
        """The cached result of ``key``, or None (a miss). A damaged entry is a miss: a
        :class:`CacheWarning` names its file, which is removed."""
        path = self.path(key.digest)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            st = os.fstat(fd)
            buf = _read_all(fd)
            try:
                _, _, meta_bytes, data = decode_record(buf)
                meta = json.loads(meta_bytes)
                if meta.get("key") != key.digest:
                    raise DamagedRecord(f"it holds the entry of another key ({meta.get('key')})")
                if meta.get("data") != _checksum(data):
                    raise DamagedRecord("its data does not match its digest")
            except (DamagedRecord, ValueError, AttributeError) as e:
                warnings.warn(f"{path}: damaged cache entry ({type(e).__name__}: {e}); taken as a miss and "
                              "removed, the job runs again", CacheWarning, stacklevel=2)
                self._remove_damaged(path, st.st_ino)
                return None
            try:
                value = pickle.loads(decompress(data))
            except Exception as e:  # intact, but not readable here (e.g. a module this process lacks)
                warnings.warn(f"{path}: cache entry cannot be read here ({type(e).__name__}: {e}); taken as a "
                              "miss, the entry is kept", CacheWarning, stacklevel=2)
                return None
            try:
                os.utime(fd)  # the last use (the file system's clock), for least recently used first
            except OSError:
                pass  # another user's entry: still a hit
        finally:
            os.close(fd)
        return Hit(value, meta.get("origin", {}), path, data)

    def _remove_damaged(self, path: str, ino: int) -> None:
        aside = f"{path}.damaged-{_HOST}-{os.getpid()}-{next(_SERIAL)}"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return  # another reader removed it
        try:
            if os.lstat(aside).st_ino != ino:  # a good entry published after the damaged one was removed
                try:
                    os.link(aside, path)
                except FileExistsError:
                    pass
        finally:
            unlink_quietly([aside])

    def entries(self) -> Iterator[CacheEntry]:
        """Every intact entry, read from its header (not its data); damaged ones are skipped."""
        for path, st in self._files():
            if path.endswith(SUFFIX):
                entry = _read_entry(path, st)
                if entry is not None:
                    yield entry

    def entry(self, key: JobKey) -> CacheEntry | None:
        """The entry of ``key`` as its header says (None: none, or damaged)."""
        path = self.path(key.digest)
        try:
            return _read_entry(path, os.stat(path))
        except OSError:
            return None

    def _files(self) -> Iterator[tuple[str, os.stat_result]]:
        try:
            shards = [e.path for e in os.scandir(self._entries) if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            return
        for shard in shards:
            try:
                with os.scandir(shard) as it:
                    found = list(it)
            except FileNotFoundError:
                continue
            for e in found:
                try:
                    yield e.path, e.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue

    # ------------------------------------------------------------------ bounding
    def size(self) -> int:
        """Bytes the entries take."""
        return sum(st.st_size for path, st in self._files() if path.endswith(SUFFIX))

    def prune(self, max_size: int | None = None) -> CachePruned:
        """Remove the least recently used entries until the rest take at most ``max_size`` bytes
        (default: the cache's ``max_size``; None: none), and temporary files of writers that died.

        >>> import tempfile
        >>> from batchtools.core.cache_key import JobKey
        >>> cache = ResultCache(tempfile.mkdtemp())
        >>> for i in range(3):
        ...     _ = cache.put(JobKey.of({"par:i": str(i)}), "x" * 1000)
        >>> p = cache.prune(max_size=2500); p.removed, p.kept
        (1, 2)
        """
        limit = self.max_size if max_size is None else max_size
        now = time.time()
        entries, stale = [], []
        for path, st in self._files():
            if path.endswith(SUFFIX):
                entries.append((st.st_atime, st.st_size, path))
            elif now - st.st_mtime > STALE or ".damaged-" in path:
                stale.append(path)
        unlink_quietly(stale)
        total = sum(e[1] for e in entries)
        removed = freed = 0
        if limit is not None and total > limit:
            for _, size, path in sorted(entries):
                if total - freed <= limit:
                    break
                if unlink_quietly([path]):
                    removed += 1
                    freed += size
        self._added, self._pruned = 0, True
        return CachePruned(removed, freed, len(entries) - removed, total - freed)


def _read_entry(path: str, st: os.stat_result) -> CacheEntry | None:
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEADER.size)
            if len(head) == HEADER.size:
                head += fh.read(HEADER.unpack_from(head)[6])
        meta = json.loads(record_header(head)[2])
        return CacheEntry(meta["key"], dict(map(tuple, meta["parts"])), meta.get("origin", {}), st.st_size, st.st_atime,
                     path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        log.debug("cache entry %s skipped: %s", path, e)
        return None


def _checksum(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def _publish(path: str, record: bytes, made: set | None = None) -> bool:
    """Give ``record`` the name ``path`` unless it exists (then False); readers never see it partial.
    ``made``: the folders made already (by this process: one ``mkdir`` per folder, not per entry)."""
    directory = os.path.dirname(path)
    if made is None or directory not in made:
        make_dir(directory)
        if made is not None:
            made.add(directory)
    fd = write_unnamed(directory, record)
    if fd is not None:
        try:
            if link_unnamed(fd, path):
                return True
        except FileExistsError:
            return False
        finally:
            os.close(fd)
    tmp = os.path.join(directory, f".tmp-{_HOST}-{os.getpid()}-{next(_SERIAL)}")
    try:
        write_new(tmp, record)
        try:
            os.link(tmp, path)
        except FileExistsError:
            # NFS: a retried link whose first reply was lost says "exists" though it was ours
            return os.stat(tmp).st_nlink >= 2
        return True
    finally:
        unlink_quietly([tmp])


# ---------------------------------------------------------------------- explaining a miss
_CODE = {"function": "the function changed (its code, or code or globals it uses)",
         "problem": "the problem changed (its data or code, or code or globals it uses)",
         "algorithm": "the algorithm changed (its code, or code or globals it uses)",
         "task": "the task changed (its data or resampling)",
         "learner": "the learner changed (its settings or code)"}
_NAMED = {"par": "parameter", "prob_par": "problem parameter", "algo_par": "algorithm parameter",
          "more_args": "more_args", "export": "export", "dependency_result": "the result of dependency job",
          "source_result": "the source result"}


def describe(part: str, mine: str | None, cached: str | None) -> str:
    """What the difference of one key part means, in words.

    >>> describe("par:x", "a", "b"), describe("package:numpy", "2.0", "1.26")
    ('parameter `x` changed', 'package numpy version changed (1.26 -> 2.0)')
    """
    prefix, _, name = part.partition(":")
    if prefix == "package" or part == "python":
        what = f"package {name}" if name else "Python"
        return f"{what} version changed ({cached or 'not named'} -> {mine or 'not named'})"
    if part in _CODE:
        return _CODE[part]
    if part in ("seed", "repl"):
        return f"{'the seed' if part == 'seed' else 'the replication'} changed"
    noun = f"{_NAMED.get(prefix, prefix)} `{name}`" if name else part
    if cached is None:
        return f"{noun} is new (the cached job has none)"
    if mine is None:
        return f"{noun} is gone (the cached job had it)"
    return f"{noun} changed"


@dataclass(frozen=True)
class CacheExplanation:
    """Why a key hits or misses the cache: ``hit``, the ``nearest`` cached entry and the
    ``differences`` from it (part name -> what it means)."""

    hit: bool
    nearest: CacheEntry | None = None
    differences: dict = field(default_factory=dict)  # part name -> what its difference means
    entries: int = 0
    job: str = ""  # what the explanation is of (e.g. "job 3"), and what it says first
    taken_from: str | None = None  # where its result came from, if it was taken from the cache

    def __str__(self) -> str:
        head = f"{self.job}: " if self.job else ""
        if self.taken_from is not None:
            head += f"done from the cache (the result of {self.taken_from}); "
        origin = self.nearest.origin if self.nearest is not None else {}
        where = f" (job {origin.get('job_id')} of {origin.get('registry')})" if origin else ""
        if self.hit:
            return f"{head}hit: the cache holds this job's result{where}"
        if self.nearest is None:
            return f"{head}miss: the cache is empty"
        lines = [f"{head}miss: of {self.entries} cached results the nearest{where} differs in "
                 f"{len(self.differences)} part(s):"]
        lines += [f"  - {msg}" for msg in self.differences.values()]
        return "\n".join(lines)


def explain(key: JobKey, cache: ResultCache) -> CacheExplanation:
    """Which parts of ``key`` differ from the nearest entry of ``cache`` (the one with the fewest
    differing parts; among those the one with the fewest differing parameters, then the most
    recently used).

    >>> import tempfile
    >>> from batchtools.core.cache_key import JobKey
    >>> cache = ResultCache(tempfile.mkdtemp())
    >>> _ = cache.put(JobKey.of({"function": "f", "par:x": "1", "seed": "3"}), 1)
    >>> print(explain(JobKey.of({"function": "f", "par:x": "2", "seed": "3"}), cache))
    miss: of 1 cached results the nearest differs in 1 part(s):
      - parameter `x` changed
    """
    if key in cache:
        return CacheExplanation(True, cache.entry(key))
    mine = key.as_dict()
    best: tuple | None = None
    n = 0
    for entry in cache.entries():
        n += 1
        names = mine.keys() | entry.parts.keys()
        diff = sorted(p for p in names if mine.get(p) != entry.parts.get(p))
        # of equally near entries, that of the same parameters (the same job elsewhere, whose
        # seed or code changed) rather than another job that happens to share the seed
        rank = (len(diff), sum(p.partition(":")[0] in _NAMED or p == "repl" for p in diff), -entry.used)
        if best is None or rank < best[0]:
            best = (rank, entry, diff)
    if best is None:
        return CacheExplanation(False)
    _, entry, diff = best
    return CacheExplanation(False, entry, {p: describe(p, mine.get(p), entry.parts.get(p)) for p in diff}, n)
