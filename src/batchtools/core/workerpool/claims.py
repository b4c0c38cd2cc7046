"""The worker pool's claim area: an append-only log guarded by a file lock.

Layout inside the registry (``pool/``)::

    queue/<queue>.pkl   JobCollection of one enqueued batch, jobs in claim order (master)
    claims.log          one record per line, appended only while holding claims.lock:
                          Q <queue> <n>                 master: batch <queue> of n jobs is open
                          C <queue> <start> <count> <w> worker w takes jobs start .. start+count-1
                                                        (usually the next ones; a worker near its walltime
                                                        may take later ones that fit its remaining time)
                          X <queue> <id>,<id>,...       master: jobs cancelled (killed/reset) before they ran
                          D <w>                         master: worker w was declared dead; it must stop
                                                        (and so must its device slots, claimers <w>.s<k>)
    claims.lock         the lock file (``filelock``: fcntl locks, released by the kernel if a holder dies)
    workers/<w>.beat    a worker's heartbeat, touched every few seconds   (paths: Layout)
    workers/<w>.exit    written by a worker that ends normally
    state.pkl           master: workers (batch id, log file, settings) and queues

The lock is held only to read the new tail of the log and append one line, never while a job
runs. Every reader replays the log from its last offset, so the log alone says which job was
claimed by whom: two workers can never take the same job, and nothing is kept in memory that a
crash could lose. A line cut short by a crash is cut off by the next writer before it appends.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("batchtools")


@dataclass
class Claim:
    queue: str
    start: int
    count: int
    worker: str


@dataclass
class QueueState:
    n: int
    cursor: int = 0  # every job before it is claimed
    cancelled: set[int] = field(default_factory=set)
    taken: set[int] = field(default_factory=set)  # jobs after the cursor claimed out of order

    def take(self, start: int, count: int) -> None:
        if start <= self.cursor:
            self.cursor = max(self.cursor, start + count)
        else:
            self.taken.update(range(start, start + count))
        while self.cursor in self.taken:
            self.taken.discard(self.cursor)
            self.cursor += 1

    @property
    def left(self) -> int:
        return self.n - self.cursor - len(self.taken)


SLOT = ".s"  # claimer id of a worker's device slot k: <worker>.s<k>


def worker_of(claimer: str) -> str:
    """The worker a claimer belongs to (a device slot's worker, or the claimer itself).

    >>> worker_of("worker1a.s2"), worker_of("worker1a")
    ('worker1a', 'worker1a')
    """
    return claimer.split(SLOT, 1)[0]


def slot_of(claimer: str) -> int | None:
    """The device slot number of a claimer (None: the worker itself)."""
    _, sep, k = claimer.partition(SLOT)
    return int(k) if sep and k.isdigit() else None


class Fenced(Exception):
    """This worker was declared dead by the master (missed heartbeats); it must not run more jobs."""


class ClaimLog:
    """Replays ``claims.log`` and appends to it under the lock.

    >>> import tempfile
    >>> log = ClaimLog(tempfile.mkdtemp())
    >>> log.enqueue("q1", 3)
    >>> log.claim("w1", lambda remaining: 2)
    Claim(queue='q1', start=0, count=2, worker='w1')
    >>> log.claim("w2", lambda remaining: 2)
    Claim(queue='q1', start=2, count=1, worker='w2')
    >>> log.claim("w1", lambda remaining: 2) is None
    True
    """

    def __init__(self, pool_dir: str | os.PathLike, lock_timeout: float = 600):
        self.dir = Path(pool_dir)
        self.path = self.dir / "claims.log"
        from filelock import FileLock  # here: the chunk nodes that import Fenced start faster without it

        self.lock = FileLock(str(self.dir / "claims.lock"), timeout=lock_timeout, mode=0o664)
        self.offset = 0
        self.queues: dict[str, QueueState] = {}  # in announcement order: older batches first
        self.dead: set[str] = set()
        self.new_claims: list[Claim] = []  # claims read since the caller last took them
        self.claimers: set[str] = set()  # workers that claimed something
        self.bad_lines = 0

    # ----------------------------------------------------------------- reading
    def refresh(self) -> bool:
        """Read complete lines appended since the last call; True if there were any."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return False
        end = data.rfind(b"\n") + 1
        if end == 0:
            return False
        for line in data[:end].decode(errors="replace").splitlines():
            try:
                self._apply(line.split())
            except (IndexError, ValueError):
                self.bad_lines += 1
                if self.bad_lines <= 3:
                    log.warning("%s: skipping a malformed line %r (not written by batchtools?)", self.path, line[:80])
        self.offset += end
        return True

    def _apply(self, rec: list[str]) -> None:
        kind = rec[0] if rec else ""
        if kind == "Q":
            self.queues.setdefault(rec[1], QueueState(int(rec[2])))
        elif kind == "C":
            claim = Claim(rec[1], int(rec[2]), int(rec[3]), rec[4])
            state = self.queues.get(claim.queue)
            if state is not None:
                state.take(claim.start, claim.count)
            self.new_claims.append(claim)
            self.claimers.add(worker_of(claim.worker))
        elif kind == "X":
            state = self.queues.get(rec[1])
            if state is not None and len(rec) > 2:
                state.cancelled.update(int(x) for x in rec[2].split(","))
        elif kind == "D":
            self.dead.add(rec[1])

    def is_dead(self, worker: str) -> bool:
        """Whether ``worker`` (or the worker whose device slot ``worker`` is) was declared dead."""
        return worker in self.dead or worker_of(worker) in self.dead

    def take_claims(self) -> list[Claim]:
        claims, self.new_claims = self.new_claims, []
        return claims

    def remaining(self) -> int:
        return sum(q.left for q in self.queues.values())

    # ----------------------------------------------------------------- writing
    def _append(self, lines: list[str]) -> None:
        """Append whole lines; the caller holds the lock and has just refreshed."""
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            if os.fstat(fd).st_size != self.offset:  # a writer died mid-line: drop its partial line
                os.ftruncate(fd, self.offset)
            data = "".join(line + "\n" for line in lines).encode()
            os.write(fd, data)
        finally:
            os.close(fd)
        for line in lines:
            self._apply(line.split())
        self.offset += len(data)

    def _locked_append(self, lines: list[str]) -> None:
        with self.lock:
            self.refresh()
            self._append(lines)

    def enqueue(self, queue: str, n: int) -> None:
        self._locked_append([f"Q {queue} {int(n)}"])

    def cancel(self, queue: str, job_ids: list[int]) -> None:
        if job_ids:
            self._locked_append([f"X {queue} {','.join(map(str, job_ids))}"])

    def fence(self, workers: list[str]) -> None:
        if workers:
            self._locked_append([f"D {w}" for w in workers])

    def claim(self, worker: str, count_for, fits=None) -> Claim | None:
        """Take the next unclaimed jobs (oldest batch first): ``count_for(remaining)`` of them.

        ``fits(queue, index, before)``, if given, returns the seconds of work claimed once the job
        at ``index`` of ``queue`` is added to ``before`` seconds claimed with it, or None if it
        would not fit the worker's remaining time: such jobs are left for others (later jobs
        that fit may be taken instead).
        Returns None when nothing (that fits) is left; raises :class:`Fenced` if this worker was
        declared dead.
        """
        with self.lock:
            self.refresh()
            if self.is_dead(worker):
                raise Fenced(worker)
            for queue, state in self.queues.items():
                if state.left <= 0:
                    continue
                want = max(1, int(count_for(self.remaining())))
                start, count = self._pick(queue, state, want, fits)
                if count:
                    self._append([f"C {queue} {start} {count} {worker}"])
                    return Claim(queue, start, count, worker)
        return None

    @staticmethod
    def _pick(queue: str, state: QueueState, want: int, fits) -> tuple[int, int]:
        """(start, count) of the next unclaimed run of at most ``want`` jobs (that fit)."""
        i = state.cursor
        while i < state.n:
            if i in state.taken:
                i += 1
                continue
            used = 0.0 if fits is None else fits(queue, i, 0.0)
            if used is None:
                i += 1
                continue
            count = 1
            while count < want and i + count < state.n and (i + count) not in state.taken:
                if fits is not None:
                    used = fits(queue, i + count, used)
                    if used is None:
                        break
                count += 1
            return i, count
        return i, 0


# --------------------------------------------------------------------- heartbeats
def fs_now(path: str | os.PathLike) -> float:
    """The file server's idea of "now" (touch ``path``, read its mtime), so heartbeat ages do not
    depend on the master's clock agreeing with the nodes'."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o664))
        os.utime(path)
        return os.stat(path).st_mtime
    except OSError:  # read-only registry: fall back to this machine's clock
        return time.time()
