"""A pool worker on a node: claim the next jobs from the registry, run them, repeat.

Started like any job collection (``python -m batchtools.worker FILE``) whose collection carries
``pool`` settings instead of jobs. Each claimed job runs exactly as in an ordinary chunk (same
seeding, log section, result file and status updates); the updates are written under the hash of
the batch the job was enqueued with, so the master merges them like any other.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import traceback
from dataclasses import dataclass

from ..core.contract.collection import JobCollection
from ..core.persistence.files import atomic_write_bytes, make_dir, read_pickle
from ..core.persistence.layout import Layout
from ..core.results.store import ResultStore
from ..core.workerpool.claims import ClaimLog, Fenced
from .checkpoint import STOP
from .execute import report_unreadable, run_job, store_of
from .runners import make_runner
from .session import TERMINATING, node_session, say
from .updates import UpdateBuffer
from .walltime import TimeBudget

# a claim takes at most this much expected work, so trivial jobs are claimed in bulk (one lock per
# many jobs) while long ones are claimed one at a time (the others keep the rest)
CLAIM_SECONDS = 0.05
# how often a worker running a claim of quick jobs reads the claim log for fences and cancellations
LOOK_INTERVAL = 0.02


@dataclass
class Batch:
    jc: JobCollection
    runner: object
    buffer: UpdateBuffer
    store: ResultStore


class PoolWorker:
    def __init__(self, jc: JobCollection, update_interval: float | None, sink: list | None,
                 began: float | None = None):
        self.jc = jc
        # start-up not reported yet (seconds): the worker's own until its first claim, then each
        # queue's set-up; the next job that starts reports it (so it is in no job's run time)
        self.began = time.time() if began is None else began
        self.startup = 0.0
        info = jc.pool or {}
        self.worker = info["worker"]
        self.heartbeat = float(info.get("heartbeat", 10.0))
        self.idle_timeout = float(info.get("idle_timeout", 0.0))
        self.max_claim = info.get("max_claim")
        self.n_workers = max(1, int(info.get("n_workers", 1)))
        self.layout = Layout(jc.file_dir)
        self.claims = ClaimLog(self.layout.pool)
        self.store = store_of(jc)
        self.update_interval = update_interval
        self.sink = sink
        self.batches: dict[str, Batch] = {}
        self.mean_runtime: float | None = None
        self.counts = {"done": 0, "error": 0}
        self.measure = bool(jc.resources.get("measure_memory"))
        self._stop = threading.Event()
        self.budget = TimeBudget(jc.resources)  # the worker's walltime: claim only jobs that fit
        self.collections: dict[str, JobCollection] = {}
        self.last_beat = time.monotonic()  # when this worker's heartbeat file was last touched
        self.beats_interrupted = False  # once beats stalled (paused process, slow disk), results go via the lock

    # ------------------------------------------------------------- background
    def _tick(self) -> None:
        interval = min(self.update_interval or self.heartbeat, self.heartbeat)
        next_beat = time.monotonic() + self.heartbeat
        while not self._stop.wait(interval):
            if self.update_interval:
                for b in list(self.batches.values()):
                    b.buffer.flush()
            if time.monotonic() >= next_beat:
                try:
                    os.utime(self.layout.worker_beat(self.worker))
                    now = time.monotonic()
                    if now - self.last_beat > 2 * self.heartbeat:
                        self.beats_interrupted = True  # set before last_beat: a commit never sees a fresh
                    self.last_beat = now               # beat without knowing the gap before it
                except OSError:
                    pass
                next_beat = time.monotonic() + self.heartbeat

    # ------------------------------------------------------------- results
    def commit(self, job_id: int, token) -> None:
        """Make a staged result the job's result, unless the master declared this worker dead.

        The master fences a worker only after its heartbeat file went unchanged for more than
        three heartbeats. While beats have never been interrupted and the last one is less than
        two heartbeats old, no fence can have been written and the result is committed at once.
        Otherwise (the worker was paused, or the file server was slow) the claim log decides,
        under its lock, so a fenced worker's result can never replace the accepted one of the
        job's re-run.
        """
        if not self.beats_interrupted and time.monotonic() - self.last_beat < 2 * self.heartbeat:
            self.store.commit(token)
            return
        with self.claims.lock:
            self.claims.refresh()
            if self.claims.is_dead(self.worker):
                self.store.discard(token)
                raise Fenced(self.worker)
            self.store.commit(token)

    # ------------------------------------------------------------------ claims
    def claim_size(self, remaining: int) -> int:
        if self.mean_runtime is None:
            n = 1
        else:
            n = int(CLAIM_SECONDS / max(self.mean_runtime, 1e-6))
        n = min(n, math.ceil(remaining / (2 * self.n_workers)))  # leave the others their share
        if self.max_claim:
            n = min(n, int(self.max_claim))
        return max(1, n)

    def collection(self, queue: str) -> JobCollection:
        if queue not in self.collections:
            self.collections[queue] = read_pickle(self.layout.pool_queue(queue))
        return self.collections[queue]

    def estimate(self, queue: str, index: int) -> float | None:
        """The queued job's estimated run time (``submit_workers(ids=...)`` with a runtime column)."""
        try:
            return self.collection(queue).jobs[index].get("runtime")
        except Exception:  # unreadable: claim it, and its jobs fail naming the file
            return None

    def fits(self):
        """What ``claim`` asks about each job when this worker has a walltime (else None)."""
        return self.budget.fits(self.estimate) if self.budget.deadline is not None else None

    def batch(self, queue: str) -> Batch | None:
        if queue not in self.batches:
            t0 = time.time()
            try:
                jc = self.collection(queue)
            except Exception as e:  # every job of the batch fails, naming the file
                report_unreadable(str(self.layout.pool_queue(queue)), e)
                raise
            try:
                runner = make_runner(jc)
            except Exception as e:  # set-up failed: the claimed jobs error, the worker goes on
                traceback.print_exc()
                runner = e
            else:
                if jc.hooks.get("pre_do_collection"):
                    jc.hooks["pre_do_collection"](jc)
            self.batches[queue] = Batch(jc, runner, UpdateBuffer(self.layout, jc.job_hash, None, self.sink),
                                        store_of(jc, packed=True))
            self.startup += time.time() - t0
        return self.batches[queue]

    def run_claim(self, claim) -> bool:
        """Run the claimed jobs; False if this worker was fenced meanwhile."""
        b = self.batch(claim.queue)
        next_look = 0.0
        for spec in b.jc.jobs[claim.start:claim.start + claim.count]:
            now = time.monotonic()
            if now >= next_look:  # fenced? cancelled? (the commit checks the fence again where it matters)
                self.claims.refresh()
                next_look = now + LOOK_INTERVAL
            if self.claims.is_dead(self.worker) or TERMINATING.is_set():
                return False
            job_id = spec["job_id"]
            if job_id in self.claims.queues[claim.queue].cancelled:
                say(f"Skipping job {job_id}: cancelled")
                continue
            startup, self.startup = self.startup, 0.0
            if isinstance(b.runner, Exception):
                now = time.time()
                b.buffer.set(job_id, started=now, done=now, startup=startup,
                             error=f"Set-up failed: {type(b.runner).__name__}: {b.runner}")
                self.counts["error"] += 1
                continue
            t0 = time.perf_counter()
            try:
                ok = run_job(b.jc, spec, b.runner, b.store, b.buffer, self.measure, commit=self.commit,
                             startup=startup)
            except Fenced:
                say(f"Job {job_id} finished, but this worker was declared dead meanwhile: its result is discarded")
                return False
            took = time.perf_counter() - t0
            self.budget.observe(took)
            self.mean_runtime = took if self.mean_runtime is None else 0.8 * self.mean_runtime + 0.2 * took
            self.counts["done" if ok else "error"] += 1
        self.claims.take_claims()
        if self.sink is not None or not self.update_interval:
            b.buffer.flush()
        return True

    # --------------------------------------------------------------------- main
    def run(self) -> dict[str, int]:
        beat = self.layout.worker_beat(self.worker)
        make_dir(beat.parent)
        atomic_write_bytes(beat, f"{socket.gethostname()} {os.getpid()} {time.time():.3f}\n".encode())
        ticker = threading.Thread(target=self._tick, daemon=True)
        ticker.start()
        reason = "queue empty"
        try:
            with node_session(self.jc, f"Pool worker {self.worker}: claiming jobs"):
                idle_since, pause = time.monotonic(), 0.02
                self.startup = time.time() - self.began  # the process, the session: until the first claim
                while True:
                    if TERMINATING.is_set():
                        reason = "terminated by the scheduler"
                        break
                    try:
                        claim = None if STOP.is_set() else self.claims.claim(self.worker, self.claim_size, self.fits())
                    except Fenced:
                        reason = "declared dead by the master (missed heartbeats)"
                        break
                    if claim is None and (STOP.is_set() or (self.budget.deadline and self.claims.remaining())):
                        reason = (f"drained: no job left fits the {self.budget.left():.0f}s left of its walltime"
                                  if not STOP.is_set() else "drained: the scheduler's warning came")
                        break
                    if claim is None:
                        if pause == 0.02:  # nothing left for now: report what ran at once, not at the next tick
                            for b in list(self.batches.values()):
                                b.buffer.flush()
                        if time.monotonic() - idle_since >= self.idle_timeout:
                            break
                        time.sleep(min(pause, max(self.idle_timeout - (time.monotonic() - idle_since), 0)))
                        pause = min(pause * 1.5, 1.0)
                        continue
                    if not self.run_claim(claim):
                        reason = ("terminated by the scheduler" if TERMINATING.is_set()
                                  else "declared dead by the master (missed heartbeats)")
                        break
                    idle_since, pause = time.monotonic(), 0.02
                for b in self.batches.values():
                    if not isinstance(b.runner, Exception) and b.jc.hooks.get("post_do_collection"):
                        b.jc.hooks["post_do_collection"](b.jc)
                say(f"Pool worker {self.worker} stops ({reason}): {self.counts['done']} done, "
                    f"{self.counts['error']} error")
        finally:
            self._stop.set()
            ticker.join()
            for b in self.batches.values():
                b.store.close()
                b.buffer.close()
            atomic_write_bytes(self.layout.worker_exit(self.worker),
                               f"{self.counts['done']} {self.counts['error']} {reason}\n".encode())
        return self.counts


def run_pool_worker(jc: JobCollection, update_interval: float | None, sink: list | None = None,
                    began: float | None = None) -> dict[str, int]:
    """Claim and run jobs until none is left (after ``idle_timeout`` seconds of waiting for more).
    A worker with several GPUs runs one claimer per device group at once (:mod:`.pool_slots`).
    ``began``: when the worker's start-up began (default: now)."""
    from .pool_slots import device_groups, run_slots

    groups = device_groups(jc)
    if len(groups) > 1 and sink is None:
        return run_slots(jc, update_interval, groups, PoolWorker, began)
    if groups:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(groups[0])
    return PoolWorker(jc, update_interval, sink, began).run()
