"""On the node: checkpoints, the warning before the time limit, requeues, and the evidence of how
a run ended.

- ``job.checkpoint(obj)`` saves ``obj`` as the job's checkpoint (``checkpoints/<job_id>.pkl``,
  written atomically); ``job.restored`` is the last checkpoint of the job (None if it has none), so
  a job that runs again goes on where it stopped. A job that ends successfully deletes its checkpoint.
- Before the walltime (by the ``checkpoint_warning`` lead, see
  :func:`batchtools.core.jobstate.retry.warning_lead`) the node asks the job to stop: its own clock (from
  the process start) and the scheduler's warning signal (``SIGUSR1``: Slurm's ``--signal``) both
  set :data:`STOP`. The next ``job.checkpoint(obj)`` saves and then stops the job
  (:class:`Interrupt`).
- A job stopped this way, or ended by ``SIGTERM`` (time limit, preemption) while it has a
  checkpoint, did not fail: if the backend's node environment (:mod:`.environment`, e.g. Slurm's
  ``scontrol requeue``) can requeue its own scheduler job, the node does so and the run reports
  ``requeued``; elsewhere (or if the scheduler refuses) it reports ``checkpointed`` and the master
  resubmits it. A ``SIGTERM`` after which the scheduler shows the job queued again (someone, e.g.
  preemption, requeued it) reports ``requeued`` too.
- Every run reports its CPU time and peak RSS (``getrusage``) and, if it did not succeed, why
  (:func:`batchtools.core.jobstate.retry.node_reason`).
"""

from __future__ import annotations

import os
import resource
import signal
import threading
import time
from typing import Any

from ..core.jobstate.retry import DEFAULT_POLICY, RetryPolicy, node_reason, warning_lead
from ..core.persistence.files import atomic_write_bytes, dumps, make_dir, read_pickle
from ..core.persistence.layout import layout_of
from .environment import NodeEnvironment
from .progress import Stalled
from .session import say

# set when the job should checkpoint and stop (time limit near, or the scheduler's warning signal)
STOP = threading.Event()
# set when a job of this process stopped to be requeued: the node requeues its scheduler job at the end
REQUEUE = threading.Event()
WARNING_SIGNAL = signal.SIGUSR1


class Interrupt(BaseException):
    """Raised by ``job.checkpoint`` once the node asked the job to stop: the job saved its state
    and goes on in a new run (a BaseException, so ``except Exception`` in user code lets it through)."""


class _Node:
    """This process's facts: when it started, the signal that is ending it, its scheduler (the
    backend's node environment), whether it may requeue."""

    def __init__(self) -> None:
        self.start = time.time()
        self.signal: int | None = None
        self.env = NodeEnvironment()
        self.pool = False
        self.max_requeues = DEFAULT_POLICY.max_requeues
        self.run_start: float | None = None  # set by a process that runs one collection after another
        self.generation = 0
        # an engine ran this collection before (its worker was lost): skip the jobs that have a result
        self.rerun = False


NODE = _Node()


def new_run() -> None:
    """A reused process (Multicore's fork server) starts another collection: its clock starts
    now, and no stop, requeue or ending signal of the previous one is pending."""
    STOP.clear()
    REQUEUE.clear()
    NODE.signal = None
    NODE.run_start = time.time()
    NODE.generation += 1
    NODE.rerun = False


def process_start() -> float:
    """When this process started (the scheduler job's start, for a job script that ``exec``\\ s the
    node); from ``/proc``, else now."""
    try:
        with open("/proc/self/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        return time.time() - max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.time()


def restart_count() -> int:
    """How many times the scheduler ran this collection before (its node environment says)."""
    return NODE.env.restart_count


def arm(resources: dict[str, Any], pool: bool = False, env: NodeEnvironment | None = None) -> None:
    """In a node process: watch the time limit and the scheduler's warning signal, note the node
    environment ``env`` (the plain default if None) and whether this process may requeue its
    scheduler job (one that can, and is not a pool worker)."""
    NODE.env = env if env is not None else NodeEnvironment()
    NODE.start = NODE.run_start if NODE.run_start is not None else process_start()
    try:
        policy = RetryPolicy.coerce(resources["retry"]) if resources.get("retry") else DEFAULT_POLICY
    except (TypeError, ValueError):
        policy = DEFAULT_POLICY
    NODE.max_requeues = policy.max_requeues
    NODE.pool = pool
    signal.signal(WARNING_SIGNAL, _warned)
    lead = warning_lead(resources)
    if lead is not None:
        at = NODE.start + resources["walltime"] - lead
        generation = NODE.generation

        def clock() -> None:
            time.sleep(max(0.0, at - time.time()))
            if not STOP.is_set() and NODE.generation == generation:  # not a later collection's
                say(f"The time limit is {lead:g}s away: asking the job to checkpoint and stop")
                STOP.set()

        threading.Thread(target=clock, name="batchtools-walltime", daemon=True).start()


def may_requeue() -> bool:
    """Whether this process may requeue its scheduler job: one its node environment can requeue,
    and not a pool worker's (asked only when a job wants to: it may cost the scheduler a query)."""
    return not NODE.pool and NODE.env.can_requeue


def _warned(signum, frame) -> None:
    if not STOP.is_set():
        say(f"Warning signal {signal.Signals(signum).name} from the scheduler: asking the job to checkpoint and stop")
        STOP.set()


# ------------------------------------------------------------------ checkpoints
# file_dir -> when its checkpoints/ folder was last seen missing (the folder is made by the first
# checkpoint saved in the registry, never removed while it lives): a node running thousands of
# jobs that never checkpoint looks for it once a second, not once per job
_NO_CHECKPOINTS: dict[str, float] = {}
NO_CHECKPOINTS_RECHECK = 1.0


def save(file_dir: str, job_id: int, obj: Any) -> None:
    """Save ``obj`` as the job's checkpoint; then stop the job if the node asked it to."""
    path = layout_of(file_dir).checkpoint(job_id)
    data = dumps(obj)
    _NO_CHECKPOINTS.pop(file_dir, None)
    try:
        atomic_write_bytes(path, data)
    except FileNotFoundError:
        make_dir(path.parent)
        atomic_write_bytes(path, data)
    if STOP.is_set():
        say(f"Job {job_id} saved its checkpoint and stops before the time limit")
        raise Interrupt(job_id)


def load(file_dir: str, job_id: int) -> Any:
    """The job's last checkpoint, or None. A checkpoint that cannot be read (damaged, cut short)
    is None too, and the job's log says so: the job starts over, which costs time but gives the
    true result (there is nothing else to go on from)."""
    path = layout_of(file_dir).checkpoint(job_id)
    try:
        obj = read_pickle(path)
    except FileNotFoundError:
        return None
    except Exception as e:  # whatever unpickling garbage raises
        say(f"{path}: the checkpoint of job {job_id} cannot be read ({type(e).__name__}: {e}); the job starts over")
        return None
    _NO_CHECKPOINTS.pop(file_dir, None)  # saved by another process: drop() must look again
    return obj


def exists(file_dir: str, job_id: int) -> bool:
    return layout_of(file_dir).checkpoint(job_id).exists()


def drop(file_dir: str, job_id: int) -> None:
    """Delete the job's checkpoint (it ended for good), if it has one."""
    seen_missing = _NO_CHECKPOINTS.get(file_dir)
    now = time.monotonic()
    if seen_missing is not None and now - seen_missing < NO_CHECKPOINTS_RECHECK:
        return  # a checkpoint saved by this process since then would have cleared the entry
    layout = layout_of(file_dir)
    if not os.path.isdir(layout.dir("checkpoints")):
        _NO_CHECKPOINTS[file_dir] = now
        return
    _NO_CHECKPOINTS.pop(file_dir, None)
    try:
        os.unlink(layout.checkpoint(job_id))
    except FileNotFoundError:
        pass


# ------------------------------------------------------------------ evidence
def _usage() -> tuple[float, float]:
    """(CPU seconds, peak RSS in MiB) of this process and its children so far."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return (me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime, max(me.ru_maxrss, kids.ru_maxrss) / 1024)


class Evidence:
    """What one run of a job leaves as evidence of how it ended (see the module docstring)."""

    def __init__(self, file_dir: str, job_id: int, resources: dict[str, Any], restart: int | None = None):
        self.file_dir, self.job_id, self.resources = file_dir, job_id, resources
        self.restart = restart_count() if restart is None else restart
        self.cpu0 = _usage()[0]

    def finish(self, exc: BaseException | None) -> tuple[dict[str, Any], bool]:
        """(fields for the status row, whether the job ended for good: False if it goes on in a
        requeued run of this scheduler job)."""
        cpu, rss = _usage()
        now = time.time()
        fields: dict[str, Any] = {"cpu_time": cpu - self.cpu0, "max_rss": rss, "restart": self.restart,
                                  "ended": now}
        if exc is None:
            drop(self.file_dir, self.job_id)
            return fields, True
        if isinstance(exc, Stalled):  # its node ended it for making no progress
            fields["reason"] = "stalled"
            return fields, True
        signum = NODE.signal if isinstance(exc, SystemExit) else None
        if signum is not None:
            fields["signal"] = signum
        if signum is not None and may_requeue() and NODE.env.requeued_by_scheduler():
            fields["reason"] = "requeued"  # preempted (or requeued by hand): the scheduler runs it again
            return fields, False
        interrupted = isinstance(exc, Interrupt) or (signum is not None and exists(self.file_dir, self.job_id))
        if interrupted and self.restart < NODE.max_requeues and may_requeue():
            fields["reason"] = "requeued"
            REQUEUE.set()
            return fields, False
        if interrupted:
            fields["reason"] = "checkpointed"
            return fields, True
        fields["reason"] = node_reason(exc, signum, now - NODE.start, self.resources, rss)
        return fields, True


# ------------------------------------------------------------------ requeues
def requeue_if_asked() -> bool:
    """At the end of a node process: requeue its scheduler job if a job stopped to go on (True if
    the scheduler accepted; the node environment says how). The status rows are written before;
    the requeue ends this process."""
    if not REQUEUE.is_set():
        return False
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the scheduler ends the old run at once: finish asking first
    return NODE.env.requeue()
