"""Retries by reason: the policy, the vocabulary of death reasons, and how a reason is decided.

A job's attempt can end in one of these ways (``reason`` in the status table and in the attempts
history, see :mod:`.attempts`):

=============== =====================================================================================
``error``       the job raised (or the node could not run it); not retried unless the policy asks
``timeout``     it reached its walltime (scheduler: TIMEOUT; node: ended by a signal at the limit)
``memory``      it ran out of memory (scheduler: OUT_OF_MEMORY; node: MemoryError, or the peak RSS
                reached the ``memory`` resource before a signal ended it)
``node_fail``   its node failed (scheduler: NODE_FAIL, BOOT_FAIL)
``preempted``   the scheduler preempted it
``cancelled``   someone cancelled it on the scheduler (scancel, qdel)
``worker_lost`` the pool worker that ran it died or was declared dead (see ``submit_workers``)
``checkpointed`` it saved a checkpoint and stopped before its time limit, to go on in a new run
``requeued``    its scheduler job was requeued (by the node itself after a checkpoint, by preemption,
                or by the scheduler after a node failure) and runs again under the same batch id
``stalled``     it made no progress (``job.progress``) for its ``stall_timeout`` and its node ended it
``unknown``     it ended without evidence of why (e.g. killed by SIGKILL with accounting off)
=============== =====================================================================================

The scheduler's accounting decides where it names a cause (Slurm ``sacct``, SGE ``qacct``, see the
backends' ``account``); otherwise the node's evidence (the signal that ended the job, its peak
RSS against the memory limit, its elapsed time against the walltime); otherwise ``unknown``.

This module is part of the node path: the standard library only.

>>> p = RetryPolicy(max_attempts=3, walltime_factor=2)
>>> p.scaled({"walltime": 60, "memory": 512}, "timeout")
{'walltime': 120, 'memory': 512}
>>> p.wants("timeout", attempt=1), p.wants("timeout", attempt=3), p.wants("error", attempt=1)
(True, False, False)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

REASONS = ("error", "timeout", "memory", "node_fail", "preempted", "cancelled", "worker_lost", "checkpointed",
           "requeued", "stalled", "unknown")
# what a policy retries unless told otherwise: deaths that were not the job's own fault
DEFAULT_REASONS = ("timeout", "memory", "node_fail", "preempted")
# a policy may name these (checkpointed/requeued runs always go on, up to max_requeues)
CHOOSABLE = ("error", "timeout", "memory", "node_fail", "preempted", "cancelled", "worker_lost", "stalled", "unknown")
# the scheduler's word on these beats the node's
DEFINITE = ("timeout", "memory", "node_fail", "preempted", "cancelled")
# runs that stopped to go on later: resubmitted whatever the policy's reasons, up to max_requeues
CONTINUED = ("checkpointed", "requeued")
# seconds a job that Slurm requeued waits before it may start again (asked by the node, and by the
# master releasing Slurm's longer hold): slurmd revokes the old run's credential by the second and
# kills a run started within the second of the requeue
REQUEUE_START_DELAY = 3


def _positive(name: str, value: Any, integer: bool = False, allow_none: bool = False, example: str = "") -> Any:
    if value is None and allow_none:
        return None
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not (value > 0) or not math.isfinite(value):
        kind = "a positive integer" if integer else "a finite positive number"
        raise ValueError(f"{name}: must be {kind}{example}, got {value!r}")
    return value


@dataclass(frozen=True)
class RetryPolicy:
    """How the master resubmits jobs that died, by the reason of their death.

    ``max_attempts``: runs in all, the first included (3: at most two retries).
    ``memory_factor`` / ``walltime_factor``: the ``memory`` / ``walltime`` resource is multiplied
    by this at each retry after an out-of-memory death / a timeout (capped by ``max_memory`` /
    ``max_walltime`` if given); other reasons keep the resources. ``reasons``: which deaths are
    retried (any of ``error``, ``timeout``, ``memory``, ``node_fail``, ``preempted``,
    ``cancelled``, ``worker_lost``, ``stalled``, ``unknown``; default timeout, memory, node failure
    and preemption; add ``"error"`` to retry jobs that raised, ``"stalled"`` to retry jobs their
    node ended for making no progress, see the ``stall_timeout`` resource). ``max_requeues``: how many times a
    job that checkpointed (``job.checkpoint``) may go on in a new run.

    Given to :func:`~batchtools.submit_jobs` (``retry=``), it is stored with the jobs (in their
    resources), so a later session applies it too; ``wait_for_jobs`` and ``sync_registry``
    resubmit the jobs it covers.

    >>> import batchtools as bt
    >>> bt.RetryPolicy(max_attempts=3, memory_factor=2, walltime_factor=1.5)
    RetryPolicy(max_attempts=3, memory_factor=2, walltime_factor=1.5, reasons=('timeout', 'memory', 'node_fail', 'preempted'), max_walltime=None, max_memory=None, max_requeues=20)
    >>> bt.RetryPolicy(memory_factor=0)
    Traceback (most recent call last):
    ...
    ValueError: memory_factor: must be a finite positive number (e.g. 2 doubles the memory at each retry), got 0
    """

    max_attempts: int = 3
    memory_factor: float = 2.0
    walltime_factor: float = 2.0
    reasons: tuple[str, ...] = field(default=DEFAULT_REASONS)
    max_walltime: float | None = None
    max_memory: int | None = None
    max_requeues: int = 20

    def __post_init__(self) -> None:
        _positive("max_attempts", self.max_attempts, integer=True, example=" (runs in all, e.g. 3)")
        _positive("memory_factor", self.memory_factor, example=" (e.g. 2 doubles the memory at each retry)")
        _positive("walltime_factor", self.walltime_factor, example=" (e.g. 2 doubles the walltime at each retry)")
        _positive("max_walltime", self.max_walltime, allow_none=True, example=" of seconds (or None)")
        _positive("max_memory", self.max_memory, integer=True, allow_none=True, example=" of MB (or None)")
        if isinstance(self.max_requeues, bool) or not isinstance(self.max_requeues, int) or self.max_requeues < 0:
            raise ValueError(f"max_requeues: must be an integer >= 0, got {self.max_requeues!r}")
        reasons = (self.reasons,) if isinstance(self.reasons, str) else self.reasons
        try:
            reasons = tuple(reasons)
        except TypeError:
            raise TypeError(f"reasons: must be a tuple of reasons out of {CHOOSABLE}, got {self.reasons!r}") from None
        bad = [r for r in reasons if r not in CHOOSABLE]
        if bad:
            raise ValueError(f"reasons: unknown reason(s) {bad}; choose from {CHOOSABLE}")
        object.__setattr__(self, "reasons", reasons)

    def as_dict(self) -> dict[str, Any]:
        """Plain values, as stored with the jobs' resources."""
        out = asdict(self)
        out["reasons"] = list(self.reasons)
        return out

    @classmethod
    def coerce(cls, value: Any, arg: str = "retry") -> RetryPolicy:
        """A policy from a policy or its stored dict; TypeError naming ``arg`` otherwise."""
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            unknown = set(value) - set(cls.__dataclass_fields__)
            if unknown:
                raise TypeError(f"{arg}: unknown field(s) {sorted(unknown)} of a retry policy")
            return cls(**{k: (tuple(v) if k == "reasons" else v) for k, v in value.items()})
        raise TypeError(f"{arg}: must be a bt.RetryPolicy(...), e.g. bt.RetryPolicy(max_attempts=3), "
                        f"got {type(value).__name__}")

    def wants(self, reason: str | None, attempt: int, requeues: int = 0) -> bool:
        """Whether a job whose ``attempt``-th run died of ``reason`` runs again."""
        if reason in CONTINUED:
            return requeues < self.max_requeues
        return reason in self.reasons and attempt < self.max_attempts

    def scaled(self, resources: dict[str, Any], reason: str | None) -> dict[str, Any]:
        """The resources of the next run after a death of ``reason``."""
        out = dict(resources)
        if reason == "timeout" and out.get("walltime"):
            new = math.ceil(out["walltime"] * self.walltime_factor)
            out["walltime"] = int(min(new, self.max_walltime) if self.max_walltime else new)
        elif reason == "memory" and out.get("memory"):
            new = math.ceil(out["memory"] * self.memory_factor)
            out["memory"] = int(min(new, self.max_memory) if self.max_memory else new)
        return out


# a job without a policy that checkpoints still goes on, this many times
DEFAULT_POLICY = RetryPolicy(reasons=())


def policy_of(resources: dict[str, Any] | None) -> RetryPolicy | None:
    """The policy stored in a job's resources, or None."""
    value = (resources or {}).get("retry")
    return RetryPolicy.coerce(value) if value else None


@dataclass
class Accounting:
    """What a scheduler's accounting says about one ended job: its ``state`` as the scheduler
    names it, the ``reason`` that state means (one of ``REASONS``, None if it names no
    cause), ``exit_code`` and ``signal``, ``max_rss`` (MiB, the largest over all steps),
    ``cpu_time`` (seconds, all steps), ``elapsed`` (seconds the scheduler job ran), and where
    the scheduler samples GPUs, ``gpu_mem`` (MiB, the peak) and ``gpu_util`` (percent); NaN
    where it does not say."""

    state: str | None = None
    reason: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    max_rss: float = math.nan
    cpu_time: float = math.nan
    elapsed: float = math.nan
    gpu_mem: float = math.nan
    gpu_util: float = math.nan


def decide(node_reason: str | None, account: Accounting | None) -> str:
    """The reason of a death: the scheduler's where it names a definite cause, else the node's
    evidence, else what the scheduler's state suggests, else ``unknown``.

    >>> decide("unknown", Accounting("TIMEOUT", "timeout"))
    'timeout'
    >>> decide("error", Accounting("FAILED", "error"))
    'error'
    >>> decide(None, None)
    'unknown'
    """
    scheduler = account.reason if account is not None else None
    if node_reason in CONTINUED:
        return node_reason
    if scheduler in DEFINITE:
        return scheduler
    if node_reason and node_reason != "unknown":
        return node_reason
    return scheduler or "unknown"


# ------------------------------------------------------------------ node-side evidence
def node_reason(exc: BaseException | None, signum: int | None, elapsed: float, resources: dict[str, Any],
                max_rss: float) -> str | None:
    """The node's own verdict on how a job ended (None: it succeeded).

    ``signum``: the signal that ended it (None if none did); ``elapsed``: seconds since the
    scheduler job started; ``max_rss``: peak resident memory in MiB.

    >>> node_reason(ValueError("x"), None, 5, {}, 10.0)
    'error'
    >>> node_reason(SystemExit("terminated"), 15, 61.0, {"walltime": 60}, 10.0)
    'timeout'
    >>> node_reason(SystemExit("terminated"), 15, 20.0, {"walltime": 60, "memory": 100}, 99.0)
    'memory'
    """
    if exc is None:
        return None
    if isinstance(exc, MemoryError):
        return "memory"
    if signum is None:
        return "error"
    walltime = resources.get("walltime")
    memory = resources.get("memory")
    if memory and max_rss == max_rss and max_rss >= 0.9 * memory * (resources.get("ncpus") or 1):
        return "memory"
    if walltime and elapsed >= 0.98 * walltime - 1:
        return "timeout"
    return "unknown"


def warning_lead(resources: dict[str, Any]) -> float | None:
    """Seconds before the walltime at which a node asks a checkpointing job to stop: the
    ``checkpoint_warning`` resource, else a tenth of the walltime between 10 s and 5 minutes.

    >>> warning_lead({"walltime": 60}), warning_lead({"walltime": 7200}), warning_lead({})
    (10, 300, None)
    """
    walltime = resources.get("walltime")
    if not walltime:
        return None
    lead = resources.get("checkpoint_warning")
    if lead is None:
        lead = min(max(walltime // 10, 10), 300)
    return min(lead, walltime / 2)
