"""Result packs: many small results appended to one file, instead of one file each.

A node that runs many jobs (a chunk, a pool worker's queue, the jobs Interactive runs in the
master's own process) appends each small result to one file in ``packs/``, which only it writes
(named after the first collection that wrote to it, the time, host and process). A record is a
header (magic, CRC-32, job id, time, data length, hash length), the job hash of the collection
that ran the job, and the pickled result. Writing it is one ``write`` to an ``O_APPEND`` file,
about a tenth of the cost of creating, naming and closing a file per result.

Which record is a job's result is decided by the registry's status table, not by the pack: a
record counts only while the job's ``job_hash`` in the table is the record's. Resetting a job
clears its hash and resubmitting it gives it a new one, so results of earlier or superseded runs
stop counting at the moment the table that says so is saved, without the master ever rewriting a
pack a node may still append to. Among records of the current hash the last one counts (a
requeued collection may write a job twice: both are results of the same run specification).

Readers see a record only once it is whole: a record whose length runs past the end of the file
is the end of what can be read for now (a record being written, or the torn tail of a node killed
mid-write or of a full disk), and so is one whose checksum does not match unless a whole record
follows it (then it was damaged in place and only it is skipped). A writer that fails mid-record
cuts the file back and starts a new pack, so a torn record is always the last one of its file.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
import time
import zlib
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING

from .files import make_dir, write_all

if TYPE_CHECKING:
    import numpy as np

MAGIC = b"BTR2"
# magic, crc32 of everything after it, job id, time, data length, hash length; then hash, data
HEADER = struct.Struct("<4sIqdQH")
_BODY = struct.Struct("<qdQH")  # the checksummed part of the header
SUFFIX = ".pack"
# results up to this size go into packs; larger ones get their own file (readers of one large
# result then read only it)
PACK_LIMIT = 1 << 16

_HOST = socket.gethostname().split(".")[0]
_SERIAL = itertools.count()  # two writers of one process never pick the same name


def _crc(job_id: int, when: float, job_hash: bytes, data) -> int:
    body = _BODY.pack(job_id, when, len(data), len(job_hash))
    return zlib.crc32(data, zlib.crc32(job_hash, zlib.crc32(body)))


class PackWriter:
    """Appends results to one pack in ``directory``, opened at the first result (a forked child
    opens its own); ``name`` starts the file's name."""

    def __init__(self, directory: str, name: str):
        self.directory = directory
        self.name = name
        self._fd: int | None = None
        self._pid = 0
        self._size = 0

    def _open(self) -> int:
        name = f"{self.name}.{time.time_ns()}-{_HOST}-{os.getpid()}-{next(_SERIAL)}{SUFFIX}"
        path = os.path.join(self.directory, name)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:  # a registry made before packs existed
            make_dir(self.directory)
            fd = os.open(path, flags, 0o600)
        self._fd, self._pid, self._size = fd, os.getpid(), 0
        return fd

    def append(self, job_id: int, job_hash: str, data: bytes) -> None:
        """Append the result ``data`` of ``job_id`` run by the collection ``job_hash``; it is
        readable when this returns."""
        fd = self._fd if self._fd is not None and self._pid == os.getpid() else self._open()
        when = time.time()
        h = job_hash.encode()
        record = HEADER.pack(MAGIC, _crc(job_id, when, h, data), job_id, when, len(data), len(h)) + h + data
        try:
            write_all(fd, record)
        except BaseException:
            # a partial record (disk full, signal) must stay the last one of this file
            try:
                os.ftruncate(fd, self._size)
            except OSError:
                pass
            self.close()
            raise
        self._size += len(record)

    def close(self) -> None:
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None


def _record_at(buf, pos: int, hashes: dict) -> tuple | None:
    """(job id, time, hash, data start, data length, end) of a whole, intact record at ``pos``;
    None if it runs past the end of ``buf``; False if it is damaged."""
    n = len(buf)
    if pos + HEADER.size > n:
        return None
    magic, crc, job_id, when, length, hlen = HEADER.unpack_from(buf, pos)
    start = pos + HEADER.size + hlen
    end = start + length
    if magic != MAGIC:
        return False
    if end > n:
        return None
    h = bytes(buf[pos + HEADER.size:start])
    if _crc(job_id, when, h, buf[start:end]) != crc:
        return False
    job_hash = hashes.get(h)
    if job_hash is None:
        job_hash = hashes[h] = h.decode(errors="replace")
    return job_id, when, job_hash, start, length, end


class PackFile:
    """What has been read of one pack: its whole records' job ids, hashes, offsets, lengths and
    times (compact arrays: an index of a million results stays small)."""

    __slots__ = ("path", "parsed", "ids", "hashes", "offsets", "lengths", "times", "_names")

    def __init__(self, path: str):
        self.path = path
        self.parsed = 0
        self.ids = array("q")
        self.hashes: list[str] = []  # one shared string per hash
        self.offsets = array("q")
        self.lengths = array("q")  # -1: a record damaged in place
        self.times = array("d")
        self._names: dict[bytes, str] = {}

    def _add(self, job_id: int, job_hash: str, offset: int, length: int, when: float) -> None:
        self.ids.append(job_id)
        self.hashes.append(job_hash)
        self.offsets.append(offset)
        self.lengths.append(length)
        self.times.append(when)

    def read_on(self, size: int) -> bool:
        """Read the records written since the last call (the file is now ``size`` bytes); whether
        any was found."""
        if size <= self.parsed:
            return False
        with open(self.path, "rb") as fh:
            fh.seek(self.parsed)
            buf = memoryview(fh.read(size - self.parsed))
        pos, found = 0, False
        while True:
            rec = _record_at(buf, pos, self._names)
            if rec is None:
                break  # being written, or a torn tail: read again next time
            if rec is False:
                nxt = self._after_damage(buf, pos)
                if nxt is None:
                    break  # as above
                # damaged in place, but a whole record follows: kept as a damaged result of the job
                # its header names (length -1), which reading reports as corrupt, as a damaged file
                _, _, job_id, when, _, hlen = HEADER.unpack_from(buf, pos)
                h = bytes(buf[pos + HEADER.size:pos + HEADER.size + hlen]).decode(errors="replace")
                self._add(job_id, h, self.parsed + pos, -1, when)
                pos, found = nxt, True
                continue
            job_id, when, job_hash, start, length, pos = rec
            self._add(job_id, job_hash, self.parsed + start, length, when)
            found = True
        self.parsed += pos
        return found

    def _after_damage(self, buf, pos: int) -> int | None:
        """Where the record after a damaged one at ``pos`` starts, if its header's lengths lead to a
        whole record."""
        magic, _, _, _, length, hlen = HEADER.unpack_from(buf, pos)
        nxt = pos + HEADER.size + hlen + length
        return nxt if _record_at(buf, nxt, self._names) else None


class PackIndex:
    """The records of every pack in a registry's ``packs/`` folder, read incrementally.

    ``lookup(job_id, current)`` finds the job's record that counts, given the job's current hash in
    the status table (None: none counts); ``lookup_many`` does it for many jobs at once.
    """

    def __init__(self, directory: str):
        self.directory = directory
        self.files: dict[str, PackFile] = {}
        self._flat: tuple | None = None

    def refresh(self) -> None:
        """Read what nodes appended since the last refresh (new packs, longer packs, deleted ones)."""
        try:
            with os.scandir(self.directory) as it:
                entries = [(e.name, e.path, e.stat().st_size) for e in it if e.name.endswith(SUFFIX)
                           and not e.name.startswith(".")]
        except FileNotFoundError:
            entries = []
        changed = False
        seen = set()
        for name, path, size in entries:
            seen.add(name)
            pf = self.files.get(name)
            if pf is None:
                pf = self.files[name] = PackFile(path)
            try:
                changed |= pf.read_on(size)
            except FileNotFoundError:  # removed by sweep_registry meanwhile
                del self.files[name]
                changed = True
        for name in [n for n in self.files if n not in seen]:
            del self.files[name]
            changed = True
        if changed:
            self._flat = None

    def flat(self) -> tuple:
        """All records as arrays sorted by job id, each job's oldest first (pack names carry the
        writer's clock): (job ids, pack numbers, record numbers, hashes, packs)."""
        if self._flat is None:
            import numpy as np

            packs = [self.files[n] for n in sorted(self.files, key=lambda n: n.split(".", 1)[-1])]
            packs = [pf for pf in packs if len(pf.ids)]
            if packs:
                ids = np.concatenate([np.frombuffer(pf.ids, dtype=np.int64) for pf in packs])
                pack_no = np.repeat(np.arange(len(packs), dtype=np.int32), [len(pf.ids) for pf in packs])
                rec_no = np.concatenate([np.arange(len(pf.ids), dtype=np.int64) for pf in packs])
                hashes = np.empty(ids.size, dtype=object)
                hashes[:] = [h for pf in packs for h in pf.hashes]
                order = np.argsort(ids, kind="stable")
                self._flat = (ids[order], pack_no[order], rec_no[order], hashes[order], packs)
            else:
                empty = np.empty(0, dtype=np.int64)
                self._flat = (empty, empty.astype(np.int32), empty, np.empty(0, dtype=object), [])
        return self._flat

    def lookup(self, job_id: int, current: str | None, any_hash: bool = False) -> tuple[PackFile, int] | None:
        """(pack, record number) of the record of ``job_id`` that counts: the last of those of the
        job's ``current`` hash (``any_hash``: the last of all)."""
        return self.lookup_many([job_id], None if any_hash else [current])[0]

    def lookup_many(self, job_ids: list[int], current: list | None) -> list[tuple[PackFile, int] | None]:
        """:meth:`lookup` of each of ``job_ids`` with its current hash (``current`` None: any hash)."""
        import numpy as np

        ids, pack_no, rec_no, hashes, packs = self.flat()
        out: list[tuple[PackFile, int] | None] = [None] * len(job_ids)
        if not ids.size or not job_ids:
            return out
        q = np.asarray(job_ids, dtype=np.int64)
        lo, hi = np.searchsorted(ids, q, "left"), np.searchsorted(ids, q, "right")
        has = np.flatnonzero(hi > lo)
        last = hi[has] - 1
        if current is None:
            ok = np.ones(has.size, dtype=bool)
        else:
            cur = np.empty(len(job_ids), dtype=object)
            cur[:] = current
            ok = hashes[last] == cur[has]
        for i, j in zip(has[ok].tolist(), last[ok].tolist()):
            out[i] = (packs[pack_no[j]], int(rec_no[j]))
        for i in has[~ok].tolist():  # the last record is of another run: an earlier one may count
            for j in range(int(hi[i]) - 2, int(lo[i]) - 1, -1):
                if hashes[j] == current[i]:
                    out[i] = (packs[pack_no[j]], int(rec_no[j]))
                    break
        return out

    def valid_ids(self, job_hashes: Callable | None) -> np.ndarray:
        """Sorted ids of the jobs with a record that counts; ``job_hashes(ids)`` gives the jobs'
        current hashes (an object array; None: every record counts)."""
        import numpy as np

        ids, _, _, hashes, _ = self.flat()
        if job_hashes is not None and ids.size:
            ids = ids[hashes == job_hashes(ids)]
        return np.unique(ids)

    def last_hashes(self) -> dict[int, str]:
        """job id -> the hash of its last record (of any hash)."""
        import numpy as np

        ids, _, _, hashes, _ = self.flat()
        if not ids.size:
            return {}
        last = np.flatnonzero(np.append(ids[1:] != ids[:-1], True))
        return dict(zip(ids[last].tolist(), hashes[last].tolist()))

    def dead(self, keep: set[str]) -> list[str]:
        """Paths of the packs none of whose records has a hash in ``keep``."""
        return [pf.path for pf in self.files.values() if keep.isdisjoint(pf.hashes)]


def hash_lookup(table_ids: np.ndarray, table_hashes: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``ids -> their hashes`` (object array; None for ids not in the table) from a status table's
    sorted ``job_id`` and ``job_hash`` columns."""
    import numpy as np

    def hashes(ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        out = np.full(ids.size, None, dtype=object)
        if table_ids.size:
            pos = np.minimum(np.searchsorted(table_ids, ids), table_ids.size - 1)
            hit = table_ids[pos] == ids
            out[hit] = table_hashes[pos[hit]]
        return out

    return hashes


class DamagedRecord(ValueError):
    """A record whose checksum does not match."""


def read_record(pf: PackFile, k: int, cache: dict | None = None) -> bytes:
    """The data of record ``k`` of ``pf``; with ``cache`` (a dict), each pack is read once."""
    offset, length = pf.offsets[k], pf.lengths[k]
    if length < 0:
        raise DamagedRecord("its checksum does not match: the pack was damaged where it lies")
    if cache is not None:
        buf = cache.get(pf.path)
        if buf is None:
            with open(pf.path, "rb") as fh:
                buf = cache[pf.path] = fh.read(pf.parsed)
        data = buf[offset:offset + length]
    else:
        fd = os.open(pf.path, os.O_RDONLY)
        try:
            data = os.pread(fd, length, offset)
        finally:
            os.close(fd)
    if len(data) != length:
        raise EOFError(f"{pf.path}: the record of job {pf.ids[k]} ({length} bytes at {offset}) is cut short")
    return data
