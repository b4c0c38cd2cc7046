"""Result packs: many small results appended to one file, instead of one file each.

A node that runs many jobs (a chunk, a pool worker's queue, the jobs Interactive runs in the
master's own process) appends each small result to one file in ``packs/``, which only it writes
(named after the first collection that wrote to it, the time, host and process). A record is a
header (magic, the header's CRC-32, the data's CRC-32, job id, time, data length, hash length),
the job hash of the collection that ran the job, and the pickled result. Writing it is one
``write`` to an ``O_APPEND`` file, about a tenth of the cost of creating, naming and closing a file
per result. A pack holds at most :data:`PACK_CAP` bytes: the record that would pass it starts a
new pack, so no file grows without bound.

Which record is a job's result is decided by the registry's status table, not by the pack: a
record counts only while the job's ``job_hash`` in the table is the record's. Resetting a job
clears its hash and resubmitting it gives it a new one, so results of earlier or superseded runs
stop counting at the moment the table that says so is saved, without the master ever rewriting a
pack a node may still append to. Among records of the current hash the last one counts (a
requeued collection may write a job twice: both are results of the same run specification).

Readers see a record only once it is whole, and trust nothing a checksum does not cover. The
header's checksum covers every field of the header and the hash, so a record whose header is
damaged is never taken for a record of the job its damaged id names: it is skipped, and reading
goes on at the next record whose header is intact (the bytes in between are reported as damage
of the pack, of no known job). A record with an intact header whose data does not match the
data's checksum is a damaged result *of that job*, reported as such. A record that runs past the
end of the file is the end of what can be read for now (a record being written, or the torn tail
of a node killed mid-write or of a full disk), read again later. A writer that fails mid-record
cuts the file back and starts a new pack, so a torn record is always the last one of its file.
Reading a result checks its data against the checksum again, so a pack changed after it was
indexed never passes another job's bytes off as this one's result.

Packs are read in windows of at most :data:`BLOCK` bytes (or one record), never whole: memory to
index a pack or read ``k`` of its results does not grow with the pack's size.

Packs written before version 3 of the format (magic ``BTR2``: one checksum over the header's
fields, the hash and the data) are read as well; a damaged one of their records cannot be told
apart from a damaged header, so it is skipped like one.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
import struct
import time
import zlib
from array import array
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..persistence.files import make_dir, write_all

if TYPE_CHECKING:
    import numpy as np

MAGIC = b"BTR3"
# magic, crc32 of the fields after it and the hash, crc32 of the data, job id, time, data length,
# hash length; then the hash, then the data
HEADER = struct.Struct("<4sIIqdQH")
_FIELDS = struct.Struct("<IqdQH")  # the header after magic and header checksum
MAGIC2 = b"BTR2"  # version 2 (read, never written): one crc32 of the fields, the hash and the data
HEADER2 = struct.Struct("<4sIqdQH")
_BODY2 = struct.Struct("<qdQH")
_unpack = HEADER.unpack_from
crc32 = zlib.crc32
SUFFIX = ".pack"
# results up to this size go into packs; larger ones get their own file (readers of one large
# result then read only it)
PACK_LIMIT = 1 << 16
# a pack holds at most this many bytes: the record that would pass it starts a new pack
PACK_CAP = 64 << 20
# packs are read in windows of this size (or one record, if larger)
BLOCK = 1 << 20
# a window of at least this many bytes is indexed first at once (the intact records that follow
# each other from its start), then record by record from the first other bytes on
RUN_MIN = 64 << 10
# the pack names of a collection start with this many characters of its hash (the packs shared by
# the collections of one in-process submission: see ``journal.chunk_hash``)
NAME_PREFIX = 27

log = logging.getLogger("batchtools")
_HOST = socket.gethostname().split(".")[0]
_SERIAL = itertools.count()  # two writers of one process never pick the same name


def encode_record(job_id: int, when: float, job_hash: bytes, data: bytes) -> bytes:
    """One record of format version 3."""
    fields = _FIELDS.pack(zlib.crc32(data), job_id, when, len(data), len(job_hash))
    return MAGIC + struct.pack("<I", zlib.crc32(job_hash, zlib.crc32(fields))) + fields + job_hash + data


def decode_record(buf: bytes) -> tuple[int, float, bytes, bytes]:
    """``(job id, time, hash, data)`` of the one record of format version 3 that ``buf`` holds
    whole (a record kept in a file of its own); :class:`DamagedRecord` saying what is wrong if
    ``buf`` is not exactly one intact record."""
    if not buf.startswith(MAGIC):
        raise DamagedRecord("not a record (no magic)")
    res = _parse(buf, memoryview(buf), 0)
    if res[0] == BAD:
        raise DamagedRecord("its header does not match its checksum")
    if res[0] in (PENDING, SHORT):
        raise DamagedRecord(f"cut short ({len(buf)} bytes)")
    if res[0] == DAMAGED:
        raise DamagedRecord("its data does not match its checksum")
    _, job_id, when, h, start, length, end, _ = res
    if end != len(buf):
        raise DamagedRecord(f"{len(buf) - end} bytes after the record")
    return job_id, when, bytes(h), bytes(buf[start:end])


def record_header(buf: bytes) -> tuple[int, float, bytes, int]:
    """``(job id, time, hash, data length)`` of the record of format version 3 that ``buf``
    starts with (at least its header and hash; the data is not checked);
    :class:`DamagedRecord` if its header does not match its checksum or is cut short."""
    if not buf.startswith(MAGIC) or len(buf) < HEADER.size:
        raise DamagedRecord("not a record header")
    res = _parse(buf, memoryview(buf), 0)
    if res[0] == BAD or res[0] == SHORT:
        raise DamagedRecord("its header does not match its checksum" if res[0] == BAD else "cut short")
    if res[0] == PENDING:
        _, _, _, job_id, when, length, hlen = HEADER.unpack_from(buf, 0)
        return job_id, when, bytes(buf[HEADER.size:HEADER.size + hlen]), length
    return res[1], res[2], bytes(res[3]), res[5]


class PackWriter:
    """Appends results to packs in ``directory``, opened at the first result (a forked child
    opens its own); ``name`` starts the files' names. A pack that would grow past
    :data:`PACK_CAP` is closed and the record starts a new one."""

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
        record = encode_record(job_id, time.time(), job_hash.encode(), data)
        fd = self._fd if self._fd is not None and self._pid == os.getpid() else self._open()
        if self._size and self._size + len(record) > PACK_CAP:
            self.close()
            fd = self._open()
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


# what _parse finds at a position: a whole intact record; a record with an intact header whose
# data does not match its checksum; a record with an intact header whose data runs past the bytes
# at hand; too few bytes to tell; no record (a damaged header, or garbage)
OK, DAMAGED, PENDING, SHORT, BAD = range(5)


def _parse(buf: bytes, mv: memoryview, p: int) -> tuple:
    """What starts at ``buf[p:]``: ``(OK | DAMAGED, job id, time, hash, data start, length, end,
    data crc)``, ``(PENDING | SHORT, bytes needed from p)`` or ``(BAD,)``."""
    n = len(buf)
    if buf.startswith(MAGIC, p):
        start = p + HEADER.size
        if start > n:
            return SHORT, HEADER.size
        _, hcrc, dcrc, job_id, when, length, hlen = HEADER.unpack_from(buf, p)
        start += hlen
        if start > n:
            return SHORT, start - p
        h = buf[p + HEADER.size:start]
        if zlib.crc32(h, zlib.crc32(mv[p + 8:p + HEADER.size])) != hcrc:
            return (BAD,)
        end = start + length
        if end > n:
            return PENDING, end - p
        kind = OK if zlib.crc32(mv[start:end]) == dcrc else DAMAGED
        return kind, job_id, when, h, start, length, end, dcrc
    if buf.startswith(MAGIC2, p):
        start = p + HEADER2.size
        if start > n:
            return SHORT, HEADER2.size
        _, crc, job_id, when, length, hlen = HEADER2.unpack_from(buf, p)
        if length > PACK_LIMIT:  # no version 2 writer packed a larger result: a damaged header
            return (BAD,)
        start += hlen
        end = start + length
        if end > n:
            return SHORT, end - p
        h = buf[p + HEADER2.size:start]
        data = mv[start:end]
        if zlib.crc32(data, zlib.crc32(h, zlib.crc32(_BODY2.pack(job_id, when, length, hlen)))) != crc:
            return (BAD,)
        return OK, job_id, when, h, start, length, end, zlib.crc32(data)
    if n - p < len(MAGIC) and (MAGIC.startswith(buf[p:]) or MAGIC2.startswith(buf[p:])):
        return SHORT, len(MAGIC)
    return (BAD,)


def _intact_at(fd: int, at: int, size: int) -> bool:
    """Whether a record with an intact header starts at ``at`` (version 2: a whole intact record)."""
    need = HEADER.size
    while True:
        buf = os.pread(fd, min(size - at, need), at)
        res = _parse(buf, memoryview(buf), 0)
        if res[0] in (OK, DAMAGED, PENDING):
            return True
        if res[0] == SHORT and len(buf) < res[1] <= size - at:
            need = res[1]
            continue
        return False


def _resync(fd: int, start: int, size: int) -> int | None:
    """The first position at or after ``start`` where a record with an intact header starts, or
    None if there is none (yet)."""
    off = start
    while off < size:
        buf = os.pread(fd, min(BLOCK, size - off), off)
        c = buf.find(MAGIC[:3])
        while c >= 0:
            if _intact_at(fd, off + c, size):
                return off + c
            c = buf.find(MAGIC[:3], c + 1)
        if off + len(buf) >= size:
            return None
        off += len(buf) - 2  # a magic cut by the window's end is found in the next one
    return None


# HEADER as a NumPy record (packed, little-endian), to take the fields of many headers at once
_HEADER_DTYPE = [("magic", "S4"), ("hcrc", "<u4"), ("dcrc", "<u4"), ("id", "<i8"), ("when", "<f8"),
                 ("length", "<u8"), ("hlen", "<u2")]


class PackFile:
    """What has been read of one pack: its records' job ids, hashes, data offsets, lengths, data
    checksums and times (compact arrays: an index of a million results stays small), and the
    stretches of it that hold no readable record (damage)."""

    __slots__ = ("path", "name", "parsed", "ids", "hashes", "offsets", "lengths", "crcs", "times", "damage",
                 "_names")

    def __init__(self, path: str):
        self.path = path
        self.name = os.path.basename(path)
        self.parsed = 0
        self.ids = array("q")
        self.hashes: list[str] = []  # one shared string per hash
        self.offsets = array("q")
        self.lengths = array("q")  # -1: a record whose data was damaged where it lies
        self.crcs = array("I")
        self.times = array("d")
        self.damage: list[tuple[int, int]] = []  # (offset, length) of bytes that are no record
        self._names: dict[bytes, str] = {}

    def _add(self, rec: tuple, base: int, damaged: bool) -> None:
        _, job_id, when, h, start, length, _, dcrc = rec
        job_hash = self._names.get(h)
        if job_hash is None:
            job_hash = self._names[h] = h.decode(errors="replace")
        self.ids.append(job_id)
        self.hashes.append(job_hash)
        self.offsets.append(base + start)
        self.lengths.append(-1 if damaged else length)
        self.crcs.append(dcrc)
        self.times.append(when)

    def _add_heads(self, buf: bytes, heads: array, pos: int) -> None:
        """Add the intact records whose headers start at ``heads`` of ``buf`` (read at ``pos`` of
        the pack), their hashes already added: their fields taken from ``buf`` at once."""
        import numpy as np

        at = np.frombuffer(heads, dtype=np.int64)
        rows = np.frombuffer(buf, dtype=np.uint8)[at[:, None] + np.arange(HEADER.size)]
        f = rows.view(_HEADER_DTYPE)[:, 0]
        self._extend(f, pos + at + HEADER.size + f["hlen"])

    def _extend(self, f: np.ndarray, offsets: np.ndarray) -> None:
        """Add intact records: their headers' fields ``f`` (of :data:`_HEADER_DTYPE`) and data
        offsets (their hashes are added by the caller)."""
        import numpy as np

        self.ids.frombytes(f["id"].astype(np.int64).tobytes())
        self.offsets.frombytes(offsets.astype(np.int64).tobytes())
        self.lengths.frombytes(f["length"].astype(np.int64).tobytes())
        self.crcs.frombytes(f["dcrc"].astype(np.uint32).tobytes())
        self.times.frombytes(f["when"].astype(np.float64).tobytes())

    def _read_run(self, buf: bytes, mv: memoryview, pos: int) -> int:
        """Index the records of version 3 that start ``buf`` (read at ``pos`` of the pack) and
        follow each other whole and intact, their headers parsed at once; where the first other
        bytes start (0: none such), for the record-by-record loop to go on from."""
        import numpy as np

        a = np.frombuffer(buf, dtype=np.uint8)
        n, size_h = a.size, HEADER.size
        m = MAGIC
        cand = np.flatnonzero((a[:-3] == m[0]) & (a[1:-2] == m[1]) & (a[2:-1] == m[2]) & (a[3:] == m[3]))
        cand = cand[cand + size_h <= n]
        if not cand.size or cand[0] != 0:
            return 0
        f = a[cand[:, None] + np.arange(size_h)].view(_HEADER_DTYPE)[:, 0]
        hlen = f["hlen"].astype(np.int64)
        start = cand + size_h + hlen
        nxt = start + f["length"].astype(np.int64)
        # the run: records each starting where the one before ends (a magic inside a record's data
        # ends it: the loop goes on from there), whole in this window
        over, brk = np.flatnonzero(nxt > n), np.flatnonzero(nxt[:-1] != cand[1:])
        k = min(int(over[0]) if over.size else cand.size, int(brk[0]) + 1 if brk.size else cand.size)
        if k <= 0:
            return 0
        cand, start, nxt, hlen, f = cand[:k], start[:k], nxt[:k], hlen[:k], f[:k]
        c_l, s_l, e_l = cand.tolist(), start.tolist(), nxt.tolist()
        hok = np.array([crc32(mv[c + 8:s]) for c, s in zip(c_l, s_l)], dtype=np.uint32) == f["hcrc"]
        dok = np.array([crc32(mv[s:e]) for s, e in zip(s_l, e_l)], dtype=np.uint32) == f["dcrc"]
        bad = np.flatnonzero(~(hok & dok))
        if bad.size:  # the loop judges the first record that does not check, and what follows
            k = int(bad[0])
            if not k:
                return 0
            cand, start, nxt, hlen, f = cand[:k], start[:k], nxt[:k], hlen[:k], f[:k]
            c_l, s_l = c_l[:k], s_l[:k]
        # the records' hashes: one string per run of records with the same hash
        names, hashes = self._names, self.hashes
        if (hlen == hlen[0]).all():
            hb = a[(cand + size_h)[:, None] + np.arange(int(hlen[0]))]
            change = np.flatnonzero(np.r_[True, (hb[1:] != hb[:-1]).any(axis=1)]).tolist() + [k]
        else:
            change = list(range(k + 1))
        for i, j in zip(change[:-1], change[1:]):
            h = buf[c_l[i] + size_h:s_l[i]]
            job_hash = names.get(h)
            if job_hash is None:
                job_hash = names[h] = h.decode(errors="replace")
            hashes.extend(itertools.repeat(job_hash, j - i))
        self._extend(f, pos + start)
        return int(nxt[-1])

    def read_on(self, size: int) -> bool:
        """Read the records written since the last call (the file is now ``size`` bytes); whether
        anything new was found. A file shorter than what was read was cut short: it is read again."""
        if size < self.parsed:
            self.__init__(self.path)
        if size <= self.parsed:
            return False
        fd = os.open(self.path, os.O_RDONLY)
        try:
            return self._read(fd, size)
        finally:
            os.close(fd)

    def _read(self, fd: int, size: int) -> bool:
        pos, found, need = self.parsed, False, 0
        while pos < size:
            buf = os.pread(fd, min(size - pos, max(BLOCK, need)), pos)
            if not buf:
                break
            mv = memoryview(buf)
            n, p, need, stop = len(buf), 0, 0, False
            at_end = pos + n >= size
            # the usual records' header positions: their fields are taken from the window at once
            heads = array("q")
            add_head, add_hash = heads.append, self.hashes.append
            names = self._names
            h, job_hash, size_h = b"", "", HEADER.size
            if n >= RUN_MIN:  # a window of many records: the whole ones that follow each other, at once
                p = self._read_run(buf, mv, pos)
                found = p > 0
            while p < n:
                # the usual record (whole, intact, of this version) inline: indexing a million costs
                # a function call and a tuple less each; the header's checksum covers its fields and
                # the hash that follows them, one stretch of bytes (crc32 of a, then b = of a + b);
                # the hash is the one of the record before, most of the time
                if buf.startswith(MAGIC, p) and p + size_h <= n:
                    _, hcrc, dcrc, job_id, when, length, hlen = _unpack(buf, p)
                    at_h = p + size_h
                    start = at_h + hlen
                    end = start + length
                    if end <= n and crc32(mv[p + 8:start]) == hcrc and crc32(mv[start:end]) == dcrc:
                        if hlen != len(h) or not buf.startswith(h, at_h):
                            h = buf[at_h:start]
                            job_hash = names.get(h)
                            if job_hash is None:
                                job_hash = names[h] = h.decode(errors="replace")
                        add_head(p)
                        add_hash(job_hash)
                        p = end
                        found = True
                        continue
                if heads:
                    self._add_heads(buf, heads, pos)
                    del heads[:]
                rec = _parse(buf, mv, p)
                kind = rec[0]
                # a damaged last record may be one being written on a file system slow to show its
                # data: it is judged once something follows it
                if kind == OK or (kind == DAMAGED and pos + rec[6] < size):
                    self._add(rec, pos, kind == DAMAGED)
                    p, found = rec[6], True
                elif kind in (PENDING, SHORT) and not at_end:
                    need = rec[1]  # runs past this window: the next one starts at it
                    break
                elif kind in (PENDING, DAMAGED):
                    stop = True  # being written: read again next time
                    break
                else:  # no record starts here: skip to the next intact header
                    nxt = _resync(fd, pos + p + 1, size)
                    if nxt is None:
                        stop = True  # garbage at the end: a torn tail, or a header being written
                        break
                    self.damage.append((pos + p, nxt - pos - p))
                    log.warning("%s: %d bytes at byte %d hold no readable record (damaged where they lie); a "
                                "result that was there is reported lost. bt.repair_registry() marks such jobs as "
                                "failed, to be submitted again", self.path, nxt - pos - p, pos + p)
                    p, found = nxt - pos, True
            if heads:
                self._add_heads(buf, heads, pos)
            pos += p
            if stop:
                break
        self.parsed = pos
        return found


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
                shrunk = size < pf.parsed
                changed |= pf.read_on(size) | shrunk
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
        pack_no, rec_no, packs = self.locate(job_ids, current)
        return [None if p < 0 else (packs[p], r) for p, r in zip(pack_no.tolist(), rec_no.tolist())]

    def locate(self, job_ids, current) -> tuple[np.ndarray, np.ndarray, list[PackFile]]:
        """:meth:`lookup_many` as arrays: the pack number and record number of each of ``job_ids``
        (-1 for a job no record of which counts), and the packs those numbers index."""
        import numpy as np

        ids, pack_no, rec_no, hashes, packs = self.flat()
        n = len(job_ids)
        out_pack, out_rec = np.full(n, -1, dtype=np.int64), np.full(n, -1, dtype=np.int64)
        if not ids.size or not n:
            return out_pack, out_rec, packs
        q = np.asarray(job_ids, dtype=np.int64)
        lo, hi = np.searchsorted(ids, q, "left"), np.searchsorted(ids, q, "right")
        has = np.flatnonzero(hi > lo)
        last = hi[has] - 1
        if current is None:
            ok = np.ones(has.size, dtype=bool)
        else:
            cur = np.empty(n, dtype=object)
            cur[:] = current
            ok = hashes[last] == cur[has]
        out_pack[has[ok]] = pack_no[last[ok]]
        out_rec[has[ok]] = rec_no[last[ok]]
        for i in has[~ok].tolist():  # the last record is of another run: an earlier one may count
            for j in range(int(hi[i]) - 2, int(lo[i]) - 1, -1):
                if hashes[j] == current[i]:
                    out_pack[i], out_rec[i] = pack_no[j], rec_no[j]
                    break
        return out_pack, out_rec, packs

    def valid_ids(self, job_hashes: Callable | None) -> np.ndarray:
        """Sorted ids of the jobs with a record that counts; ``job_hashes(ids)`` gives the jobs'
        current hashes (an object array; None: every record counts)."""
        import numpy as np

        ids, _, _, hashes, _ = self.flat()
        if job_hashes is not None and ids.size:
            ids = ids[hashes == job_hashes(ids)]
        return np.unique(ids)

    def damaged_ids(self, job_ids: list[int], current: list | None) -> list[int]:
        """Those of ``job_ids`` whose record that counts (see :meth:`lookup_many`) was damaged
        where it lies."""
        found = self.lookup_many(job_ids, current)
        return [i for i, f in zip(job_ids, found) if f is not None and f[0].lengths[f[1]] < 0]

    def last_hashes(self) -> dict[int, str]:
        """job id -> the hash of its last record (of any hash)."""
        import numpy as np

        ids, _, _, hashes, _ = self.flat()
        if not ids.size:
            return {}
        last = np.flatnonzero(np.append(ids[1:] != ids[:-1], True))
        return dict(zip(ids[last].tolist(), hashes[last].tolist()))

    def packs_of(self, job_hash: str) -> list[PackFile]:
        """The packs the collection ``job_hash`` may have appended to (named after it, or after
        the in-process submission it belongs to)."""
        prefix = job_hash[:NAME_PREFIX]
        return [pf for name, pf in sorted(self.files.items()) if name.startswith(prefix)]

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
    """A record whose data does not match its checksum (or is cut short)."""


def read_record(pf: PackFile, k: int) -> bytes:
    """The data of record ``k`` of ``pf`` (one read of just that record), if it is what the record
    held when it was indexed."""
    length = pf.lengths[k]
    data = b""
    if length >= 0:
        fd = os.open(pf.path, os.O_RDONLY)
        try:
            data = os.pread(fd, length, pf.offsets[k])
        finally:
            os.close(fd)
        if len(data) == length and crc32(data) == pf.crcs[k]:
            return data
    raise _damage(pf, k, data)


def read_located(packs: list[PackFile], pack_no: np.ndarray, rec_no: np.ndarray, out: list,
                 decode: Callable[[bytes], object], plain: tuple[int, Callable[[bytes], object]] | None = None,
                 ) -> dict[int, Exception]:
    """The data of many records, as :meth:`PackIndex.locate` gives them, read pack by pack in windows
    of at most :data:`BLOCK` bytes holding the records asked for (memory: a window, whatever the
    pack's size): ``out[i] = decode(data of record rec_no[i] of packs[pack_no[i]])`` for each ``i``
    with a record (``pack_no[i] >= 0``); ``plain`` (a first byte, a function): data that starts with
    that byte goes to that function instead (a built-in one: no Python call per record). Returns
    the positions whose record could not be read or decoded, with the error (a gone pack:
    FileNotFoundError; a checksum that does not match: :class:`DamagedRecord`; what decoding raised)."""
    marker, fast = plain if plain is not None else (-1, decode)
    mark = bytes([marker]) if 0 <= marker < 256 else None
    import numpy as np

    failed: dict[int, Exception] = {}
    sel = np.flatnonzero(pack_no >= 0)
    if not sel.size:
        return failed
    sel = sel[np.argsort(pack_no[sel], kind="stable")]
    ps = pack_no[sel]
    bounds = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1], True])
    for g in range(bounds.size - 1):
        at = sel[bounds[g]:bounds[g + 1]]
        pf = packs[int(ps[bounds[g]])]
        recs = rec_no[at]
        offsets = np.frombuffer(pf.offsets, dtype=np.int64)[recs]
        order = np.argsort(offsets, kind="stable")
        at, recs, offsets = at[order], recs[order], offsets[order]
        lengths = np.frombuffer(pf.lengths, dtype=np.int64)[recs]
        # a damaged record (-1) adds nothing to read
        ends = offsets + np.maximum(lengths, 0)
        # windows: from a record's start to the end of the records after it that fit within BLOCK
        # bytes of it (at least one record each)
        reach = np.maximum.accumulate(ends)
        try:
            fd = os.open(pf.path, os.O_RDONLY)
        except FileNotFoundError as e:
            failed.update(dict.fromkeys(at.tolist(), e))
            continue
        try:
            a, m = 0, at.size
            while a < m:
                start = int(offsets[a])
                b = max(a + 1, int(np.searchsorted(reach, start + BLOCK, "right")))
                end = int(reach[b - 1])
                buf = os.pread(fd, end - start, start)
                w_at, w_recs = at[a:b].tolist(), recs[a:b]
                w_s, w_e = (offsets[a:b] - start).tolist(), (ends[a:b] - start).tolist()
                w_crc = np.frombuffer(pf.crcs, dtype=np.uint32)[w_recs].tolist()
                bad = []
                if len(buf) == end - start and lengths[a:b].min() >= 0:
                    # the usual window: every record whole, each checked against its checksum
                    for k, j, s, e, c in zip(range(b - a), w_at, w_s, w_e, w_crc):
                        data = buf[s:e]
                        if crc32(data) != c:
                            bad.append(k)
                            continue
                        try:
                            out[j] = fast(data) if data[:1] == mark else decode(data)
                        except Exception as err:
                            failed[j] = err
                else:
                    bad = range(b - a)
                for k in bad:
                    s, n, j = w_s[k], int(lengths[a + k]), w_at[k]
                    data = buf[s:s + n] if n >= 0 else b""
                    if n >= 0 and len(data) == n and crc32(data) == w_crc[k]:
                        try:
                            out[j] = fast(data) if data[:1] == mark else decode(data)
                        except Exception as err:
                            failed[j] = err
                    else:
                        failed[j] = _damage(pf, int(w_recs[k]), data)
                a = b
        finally:
            os.close(fd)
    return failed


def _damage(pf: PackFile, k: int, data: bytes) -> DamagedRecord:
    """Why ``data``, read for record ``k`` of ``pf``, is not its result."""
    length = pf.lengths[k]
    if length < 0:
        return DamagedRecord("its checksum does not match: the pack was damaged where it lies")
    if len(data) != length:
        return DamagedRecord(f"the pack was cut short: {len(data)} of its {length} bytes are left")
    return DamagedRecord("its data no longer matches its checksum: the pack was changed or damaged where it lies")
