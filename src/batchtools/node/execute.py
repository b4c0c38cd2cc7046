"""Running jobs on the node: one job (seed, run, result, status rows, log markers), and a chunk.

Nodes write nothing but files named after their own job collection (log, updates) or their
own job ids (results), so they never contend for the registry's tables.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
import traceback
from typing import Any

from ..core.contract.collection import JobCollection
from ..core.contract.protocol import ALL_JOBS, FINISHED, MARK, job_ended, job_started
from ..core.persistence.files import open_append
from ..core.persistence.layout import Layout, layout_of
from ..core.results.store import ResultStore, store_from_spec
from ..core.workerpool.claims import Fenced
from . import gpu_usage, progress
from .checkpoint import NODE, REQUEUE, Evidence, Interrupt, restart_count
from .environment import array_index
from .runners import make_job, make_runner
from .session import TERMINATING, node_session, say, user_traceback
from .updates import UpdateBuffer

NAN = math.nan
CHECKPOINTED = ("Checkpointed before the time limit; it goes on from its checkpoint when resubmitted "
                "(wait_for_jobs and sync_registry do so)")


class MemorySampler:
    """Peak resident memory (MiB) of this process while a job runs, sampled with psutil."""

    def __init__(self, interval: float = 0.01):
        import psutil

        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        return self.peak / 2**20


def report_unreadable(path: str, error: BaseException, file_dir: str | None = None) -> None:
    """A collection file that cannot be read: say so in its log and fail all its jobs (the master
    knows which jobs carry its hash; this process does not). ``file_dir``: the registry (default:
    the one whose ``jobs/`` folder holds ``path``); the file is named ``<hash>.pkl``."""
    layout = Layout(file_dir or os.path.dirname(os.path.dirname(os.path.abspath(path))))
    job_hash = os.path.basename(path).rsplit(".", 1)[0]
    msg = (f"Job collection file {path} cannot be read ({type(error).__name__}: {error}); "
           "submit the jobs again")
    try:
        with open_append(layout.log(job_hash)) as fh:
            fh.write(f"{MARK}{msg}\n")
        buffer = UpdateBuffer(layout, job_hash)
        now = time.time()
        buffer.set(ALL_JOBS, started=now, done=now, error=msg)
        buffer.close()
    except OSError:
        pass


def store_of(jc: JobCollection, packed: bool = False, shared: bool = False) -> ResultStore:
    """The store the collection's jobs write to; with ``packed``, small results of the registry's
    store are appended to a pack if it packs them (for collections of many jobs; ``shared``: one
    pack for the collections this process runs one after another)."""
    store = jc.store if jc.store is not None else store_from_spec(None, jc.file_dir)
    return store.packed(jc.job_hash, shared) if packed else store


def run_job(jc: JobCollection, spec: dict[str, Any], runner, store: ResultStore, buffer: UpdateBuffer,
            measure: bool, commit=None, startup: float = 0.0, flush_end: bool = True) -> bool:
    """Run one job: seed, call, store the result, report its status. True if it succeeded.

    ``commit(job_id, token)`` decides whether a staged result becomes the job's result (a pool
    worker checks it was not fenced meanwhile); default: always. ``startup``: seconds of the
    collection's start-up this job waited for (reported with it, never in its run time), to which
    the runner's ``prepare(job)`` adds, if it has one: loading what the job needs and no earlier
    job of this process loaded (a problem, an algorithm, a task's data), before the job's clock starts.
    ``flush_end`` False: the job's end marker goes to the log with the next marker line flushed (a
    chunk's next job starts at once: one write per job, not two), unless the job failed.
    """
    job_id = spec["job_id"]
    job = make_job(jc, spec)
    job._buffer = buffer
    say(f"{job_started(job_id)}\n{MARK}Setting seed to {job.seed} ...")
    prepare = getattr(runner, "prepare", None)
    failed = None
    if prepare is not None:
        t0 = time.time()
        try:
            prepare(job)
        except Exception as e:  # the job fails with it, as it would have while running
            failed = e
        startup += time.time() - t0
    job.seed_rngs()
    restart = restart_count()
    buffer.set(job_id, started=time.time(), restart=restart, startup=startup)
    evidence = Evidence(jc.file_dir, job_id, jc.resources, restart)
    sampler = MemorySampler() if measure else None
    resources = jc.resources
    gpu = gpu_usage.sampler_for(resources) if resources.get("gpus") or resources.get("gpus_per_job") else None
    stall = resources.get("stall_timeout")
    if stall:
        progress.watch(job, buffer, stall)
    error = exc = None
    try:
        if failed is not None:
            raise failed
        value = runner(job)
        if job._watch is not None:
            job._watch.leave()  # no Stalled reaches the node's code from here on
        token = store.stage(job_id, value)
        if commit is None:
            store.commit(token)
        else:
            commit(job_id, token)
    except Fenced:  # superseded: report nothing, the job belongs to its re-run now
        if sampler:
            sampler.stop()
        if gpu:
            gpu.stop()
        if job._watch is not None:
            progress.finish(job._watch)
        raise
    except Interrupt as e:  # saved its checkpoint and stopped before the time limit
        exc = e
    except (Exception, SystemExit, progress.Stalled) as e:
        sys.stdout.flush()
        traceback.print_exception(type(e), e, user_traceback(e), file=sys.stdout)
        error, exc = f"{type(e).__name__}: {e}", e
    mem = sampler.stop() if sampler else NAN
    if mem == mem:
        say(f"Memory used: {mem:.1f} MiB")
    fields, final = evidence.finish(exc)
    if gpu:
        fields.update(gpu.stop())
    if job._watch is not None:
        fields.update(progress.finish(job._watch))
    if not final:  # its scheduler job is requeued: the job goes on in the next run
        buffer.set(job_id, mem_used=mem, **fields)
        say(f"Job {job_id} stops here and goes on in the requeued run [batchtools job.id={job_id}]")
        return False
    if fields.get("reason") == "checkpointed":
        error = CHECKPOINTED
    buffer.set(job_id, done=fields["ended"], error=error, mem_used=mem, **fields)
    say(job_ended(job_id, error is None), flush=flush_end or error is not None)
    return error is None


def select_jobs(jc: JobCollection) -> list[dict[str, Any]]:
    """All jobs, or the one picked by the array task variable (1-based) on the node."""
    if jc.array_var and jc.array_jobs:
        task = array_index(jc)
        if task is None:
            raise RuntimeError(f"array job: environment variable {jc.array_var} is not set")
        return [jc.jobs[task - 1]]
    return jc.jobs


def run_chunk(jc: JobCollection, update_interval: float | None, sink: list | None = None,
              began: float | None = None) -> dict[str, int]:
    """Run the jobs of an ordinary collection (a chunk, or one array task) one after another.
    ``began``: when the collection's start-up began (default: now), reported with its first job."""
    began = time.time() if began is None else began
    counts = {"done": 0, "error": 0}
    jobs = select_jobs(jc)
    # a collection of one job needs no background flushing: the master counts a job alone in its
    # scheduler job as running while that runs, and the rows are written when it ends (a thread
    # costs a forked process milliseconds)
    report_starts = len(jobs) > 1 or getattr(jc, "start_reports", False)
    buffer = UpdateBuffer(layout_of(jc.file_dir), jc.job_hash, update_interval if report_starts else None, sink)
    # in the master's process (Interactive) every collection appends to the session's pack
    store = store_of(jc, packed=len(jobs) > 1 or sink is not None, shared=sink is not None)
    measure = bool(jc.resources.get("measure_memory"))
    try:
        with node_session(jc, f"Starting calculation of {len(jobs)} jobs",
                          "Memory measurement " + ("enabled" if measure else "disabled"), flush=sink is None):
            try:
                runner = make_runner(jc, in_process=sink is not None)
            except Exception as e:  # set-up failed: every job of the chunk errors
                traceback.print_exc(file=sys.stdout)
                msg = f"Set-up failed: {type(e).__name__}: {e}"
                now = time.time()
                for k, spec in enumerate(jobs):
                    buffer.set(spec["job_id"], started=now, done=now, error=msg, startup=0.0 if k else now - began)
                counts["error"] = len(jobs)
                return counts
            if jc.hooks.get("pre_do_collection"):
                jc.hooks["pre_do_collection"](jc)
            # a requeued (Slurm) or re-run (Dask: its worker was lost) collection: what did it finish?
            earlier = store.own_view(jc.job_hash) if restart_count() > 0 or NODE.rerun else None
            for spec in jobs:
                if TERMINATING.is_set() or REQUEUE.is_set():
                    say("Terminating: the remaining jobs of this collection are not started" if TERMINATING.is_set()
                        else "Requeued: the remaining jobs of this collection run in the next run")
                    break
                if earlier is not None and earlier.exists(spec["job_id"]):  # finished in an earlier run of it
                    say(f"Job {spec['job_id']} finished in an earlier run of this collection")
                    continue
                ok = run_job(jc, spec, runner, store, buffer, measure,
                             startup=0.0 if began is None else time.time() - began, flush_end=False)
                began = None  # the collection's start-up is its first job's to report
                counts["done" if ok else "error"] += 1
            if jc.hooks.get("post_do_collection"):
                jc.hooks["post_do_collection"](jc)
            say(FINISHED)
    finally:
        store.close()
        buffer.close()
    return counts
