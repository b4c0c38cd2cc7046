"""The backend contract: what a cluster-functions record holds and what a backend declares it can do.

A backend is a :class:`ClusterFunctions` record made with :func:`make_cluster_functions`:
a ``submit_job(reg, jc)`` returning a :class:`SubmitJobResult` (status 0 submitted, 1-100
temporary error retried with the ``sleep`` backoff, 101-200 permanent error raised), and
optionally ``kill_job(reg, batch_id)``, one listing call ``list_jobs(reg) -> (queued,
running)`` and ``flush()`` for a backend that sends its submissions in batches. What it can do
is declared in :class:`Capabilities` and checked by ``submit_jobs`` before anything is written.
The backends themselves live in :mod:`batchtools.backends`.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("batchtools")

# hook name -> called as hook(reg) on the master (hook(jc) on the node for *_do_collection), as in R:
# pre_submit/post_submit around a whole submit_jobs() call, pre_submit_job before every attempt to
# hand one job collection to the backend, post_submit_job after the backend accepted it
HOOKS = (
    "pre_submit",
    "post_submit",
    "pre_submit_job",
    "post_submit_job",
    "pre_sync",
    "post_sync",
    "pre_do_collection",
    "post_do_collection",
    "pre_kill",
    "post_kill",
)
NODE_HOOKS = ("pre_do_collection", "post_do_collection")


@dataclass
class SubmitJobResult:
    """What ``submit_job`` reports: ``status`` (0 ok, 1-100 temporary, 101-200 fatal),
    the scheduler's ``batch_id`` (one per array task possible), ``log_file`` and ``msg``."""

    status: int
    batch_id: Any = None
    log_file: str | list[str] | None = None
    msg: str = ""


def make_submit_job_result(status: int, batch_id: Any = None, log_file: str | None = None,
                           msg: str | None = None) -> SubmitJobResult:
    """Build the record ``submit_job`` returns.

    >>> make_submit_job_result(0, "1234").status
    0
    """
    if not isinstance(status, int) or isinstance(status, bool) or not 0 <= status <= 200:
        raise ValueError(f"status: must be an int in 0..200 (0 ok, 1-100 temporary, 101-200 fatal), got {status!r}")
    if msg is None:
        msg = {0: "OK", 1: "TEMPERROR"}.get(min(status, 1) if status <= 100 else 101, "ERROR")
    return SubmitJobResult(status, batch_id, log_file, msg)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, declared up front (checked before anything is written).

    ``array_jobs``: chunks can run as array jobs (``resources={"chunks_as_arrayjobs": True}``).
    ``in_process``: jobs run inside the master process (their status reaches it in memory).
    ``blocking``: ``submit_job`` returns only once the submitted jobs have ended.
    ``per_job_resources``: each scheduler job gets its own walltime/memory/ncpus, enforced by
    the scheduler (local backends only pass thread counts on).
    ``required_resources``: resources every submission must name.
    ``start_reports``: the backend tells running from queued by the jobs' own start reports (its
    engine cannot say), so every job reports its start at once (otherwise a collection of one job
    reports when it ends: the scheduler knows it runs).
    ``gpus``: the ``gpus`` resource is honoured (the scheduler allocates devices, or the backend
    hands out free ones through ``CUDA_VISIBLE_DEVICES``).
    ``walltime_unit``: the seconds the scheduler counts a time limit in (Slurm and LSF: 60, whole
    minutes); ``memory_per_cpu``: the ``memory`` resource is per CPU (Slurm's ``--mem-per-cpu``),
    not per job. ``recommend_resources`` rounds to the one and divides by ``ncpus`` for the other.
    """

    array_jobs: bool = False
    in_process: bool = False
    blocking: bool = False
    per_job_resources: bool = False
    required_resources: tuple[str, ...] = ()
    start_reports: bool = False
    gpus: bool = False
    walltime_unit: int = 1
    memory_per_cpu: bool = False


@dataclass(kw_only=True)
class ClusterFunctions:
    """A backend: how to submit, kill and list jobs. See :func:`make_cluster_functions`."""

    name: str
    submit_job: Callable
    kill_job: Callable | None = None
    # one scheduler call: reg -> (queued batch ids, running batch ids)
    list_jobs: Callable | None = None
    array_var: str | None = None
    store_job_collection: bool = False
    # keep rendered job scripts (jobs/<hash>.sh) after the scheduler accepted them
    store_job_files: bool = False
    scheduler_latency: float = 0.0
    fs_latency: float = 0.0
    hooks: dict[str, Callable] = field(default_factory=dict)
    # first polling interval of wait_for_jobs (seconds); grows towards poll_max
    poll: float = 1.0
    poll_max: float = 10.0
    info: str = ""
    # optional: block up to `timeout` seconds until the backend sees a job start or end
    wait: Callable[[float], None] | None = None
    # optional: largest array job the scheduler accepts (submit_jobs splits bigger chunks)
    max_array_size: Callable | None = None
    capabilities: Capabilities = field(default_factory=Capabilities)
    # optional: raise on resources this backend cannot put into a job (e.g. unsafe template values)
    resource_check: Callable[[dict], Any] | None = None
    # optional: raise on a registry path this backend cannot pass to its scheduler (names the character)
    path_check: Callable[[str], Any] | None = None
    # the local processes a backend manages (Multicore's fork server, Socket's processes), if any
    processes: Any = None
    # how it was made: {"constructor": "module:function", "kwargs": {...}}, saved with the registry
    spec: dict | None = None
    # optional: the scheduler's accounting of ended jobs, reg, batch ids -> {batch id: core.retry.Accounting}
    # (one call for many jobs; jobs it knows nothing about are left out; it never raises)
    account: Callable | None = None
    # optional: what ended jobs used, as the scheduler accounted it: reg, batch ids -> {batch id: Accounting}
    # of those that ended (None: the scheduler keeps no accounting), asked once per poll about every job that
    # ended; only for a backend that answers for many jobs in one call (core/usage.py)
    usage: Callable | None = None
    # optional: send the collections submit_job accepted but held back to send many at once;
    # submit_jobs and submit_workers call it before they return
    flush: Callable[[], None] | None = None
    # optional: the node half, a batchtools.NodeEnvironment subclass (job id, array
    # index, restart count, self-requeue on the node); None: the plain default
    node_environment: type | None = None

    def __repr__(self) -> str:
        extra = f", {self.info}" if self.info else ""
        return f"ClusterFunctions({self.name}{extra})"

    @property
    def node_environment_ref(self) -> str | None:
        """How a job collection names the node environment: ``"module:qualname"``, or None."""
        ne = self.node_environment
        return None if ne is None else f"{ne.__module__}:{ne.__qualname__}"

    @property
    def can_kill(self) -> bool:
        return self.kill_job is not None

    @property
    def list_jobs_queued(self) -> Callable | None:
        """R's ``listJobsQueued``: ``reg -> batch ids`` of the queued jobs, or None if the backend
        cannot list jobs (its one listing call, ``list_jobs``, answers both)."""
        if self.list_jobs is None:
            return None
        return lambda reg: sorted(self.list_on_system(reg)[0])

    @property
    def list_jobs_running(self) -> Callable | None:
        """R's ``listJobsRunning``: ``reg -> batch ids`` of the running jobs, or None if the backend
        cannot list jobs.

        >>> import batchtools as bt
        >>> cf = bt.make_cluster_functions("Mine", lambda reg, jc: None, list_jobs_running=lambda reg: ["7"])
        >>> cf.list_jobs_running(None), cf.list_jobs_queued(None)
        (['7'], [])
        >>> bt.make_cluster_functions_interactive().list_jobs_running is None
        True
        """
        if self.list_jobs is None:
            return None
        return lambda reg: sorted(self.list_on_system(reg)[1])

    @property
    def ncpus(self) -> int | None:
        """Job slots of the local processes this backend manages (None: not a local backend)."""
        return getattr(self.processes, "ncpus", None)

    def send_held(self) -> None:
        """Send what ``submit_job`` accepted but held back (a backend that sends in batches)."""
        if self.flush is not None:
            self.flush()

    def list_on_system(self, reg) -> tuple[set[str], set[str]]:
        """(queued, running) batch ids, from one listing call."""
        if self.list_jobs is None:
            return set(), set()
        q, r = self.list_jobs(reg)
        return set(map(str, q)), set(map(str, r))

    def check_resources(self, resources: dict[str, Any], arg: str = "resources") -> None:
        """Refuse resources this backend cannot honour, before anything is written."""
        if resources.get("chunks_as_arrayjobs") and not self.capabilities.array_jobs:
            raise ValueError(f"{arg}: chunks_as_arrayjobs is not supported by the {self.name} backend; "
                             "drop it (each chunk then runs as one job)")
        if resources.get("gpus") and not self.capabilities.gpus:
            raise ValueError(f"{arg}: gpus is not supported by the {self.name} backend (it cannot give a job "
                             "devices); use a backend that can (a scheduler's, HyperQueue, Dask), or Multicore with "
                             "a device list (make_cluster_functions_multicore(gpus=[...])), or drop it")
        missing = [k for k in self.capabilities.required_resources if not resources.get(k)]
        if missing:
            example = ", ".join(f"'{k}': ..." for k in missing)
            raise ValueError(f"{arg}: the {self.name} backend needs {missing} (e.g. resources={{{example}}})")
        if self.resource_check is not None:
            self.resource_check(resources)

    def check_registry(self, reg) -> None:
        """Refuse a registry whose path this backend cannot pass on, before anything is written."""
        if self.path_check is not None:
            self.path_check(str(reg.file_dir))

    def close(self) -> None:
        """Stop the local processes this backend started (running jobs of Multicore carry on)."""
        close = getattr(self.processes, "close", None)
        if close is not None:
            close()


def _combine_listings(queued: Callable | None, running: Callable | None) -> Callable:
    def list_jobs(reg) -> tuple[list, list]:
        return (list(queued(reg)) if queued else [], list(running(reg)) if running else [])

    return list_jobs


def make_cluster_functions(
    name: str,
    submit_job: Callable,
    kill_job: Callable | None = None,
    list_jobs_queued: Callable | None = None,
    list_jobs_running: Callable | None = None,
    array_var: str | None = None,
    store_job_collection: bool = False,
    store_job_files: bool = False,
    scheduler_latency: float = 0,
    fs_latency: float = 0,
    hooks: dict[str, Callable] | None = None,
    poll: float = 1.0,
    poll_max: float = 10.0,
    info: str = "",
    wait: Callable[[float], None] | None = None,
    list_jobs: Callable | None = None,
    max_array_size: Callable | None = None,
    capabilities: Capabilities | None = None,
    resource_check: Callable[[dict], Any] | None = None,
    path_check: Callable[[str], Any] | None = None,
    processes: Any = None,
    account: Callable | None = None,
    flush: Callable[[], None] | None = None,
    usage: Callable | None = None,
    node_environment: type | None = None,
) -> ClusterFunctions:
    """Make your own backend.

    ``list_jobs_queued(reg)`` / ``list_jobs_running(reg)`` return batch ids, as in batchtools;
    a backend whose scheduler answers both at once gives ``list_jobs(reg) -> (queued, running)``
    instead. ``capabilities`` declares what it can do (default: nothing special); array jobs
    need ``array_var``, the environment variable holding the task number on the node.

    Times are in seconds: ``scheduler_latency`` is how long a newly submitted job may be missing
    from the listing (it counts as queued meanwhile, so ``submit_jobs`` returns at once), and it is
    slept after killing; ``fs_latency`` is how long a job may be missing from
    the listing without an update on disk before it counts as expired (a shared file system's
    delay); ``poll`` is :func:`wait_for_jobs`' first polling interval, growing to ``poll_max``.
    ``wait(seconds)``, if given, blocks until something may have changed (at most that long)
    instead of sleeping. ``store_job_collection`` writes each collection to
    ``jobs/<hash>.pkl`` for the node; ``store_job_files`` keeps the rendered job scripts.
    ``hooks``: functions ``hook(reg, ...)`` by name (``pre_submit``, ``post_submit``,
    ``pre_sync``, ``post_sync``, ``pre_kill``, ``post_kill``; on the node
    ``pre_do_collection``, ``post_do_collection``). ``account(reg, batch_ids)``, if given,
    returns the scheduler's accounting of ended jobs (``{batch_id: bt.Accounting}``): why they
    ended, their peak memory and CPU time; retries use it (see :class:`~batchtools.RetryPolicy`).
    ``usage(reg, batch_ids)``, if given, answers the same for many jobs in one call of the
    scheduler's (``sacct``), for those of them that ended (None if the scheduler keeps no
    accounting): ``wait_for_jobs`` and ``sync_registry`` ask it once per poll about the jobs that
    ended, and record what they used (``elapsed``, ``max_rss``, ``cpu_time``) for
    :func:`~batchtools.recommend_resources`.
    ``flush()``, if given, sends what ``submit_job`` accepted but held back, for a backend that
    hands its engine many collections at once: ``submit_jobs`` calls it before it returns (also
    when it fails), and the backend sends them itself before it lists or kills jobs.
    ``node_environment``, if given, is the backend's node half: a subclass of
    :class:`~batchtools.NodeEnvironment` (defined at module level, importable on
    the nodes) that tells the node its scheduler job id, restart count and how to requeue itself.

    >>> import batchtools as bt
    >>> def submit(reg, jc):
    ...     bt.do_job_collection(jc, output=jc.log_file)
    ...     return bt.make_submit_job_result(0, "local")
    >>> cf = bt.make_cluster_functions("Mine", submit)
    >>> cf
    ClusterFunctions(Mine)
    """
    if not isinstance(name, str) or not name:
        raise TypeError("name: must be a non-empty string, e.g. 'MyScheduler'")
    if submit_job is None:
        raise TypeError("submit_job: required; a function (reg, jc) -> SubmitJobResult")
    for arg, fn in (("submit_job", submit_job), ("kill_job", kill_job), ("list_jobs_queued", list_jobs_queued),
                    ("list_jobs_running", list_jobs_running), ("list_jobs", list_jobs), ("wait", wait),
                    ("max_array_size", max_array_size), ("resource_check", resource_check),
                    ("path_check", path_check), ("account", account), ("flush", flush), ("usage", usage)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{arg}: must be callable (or None), got {type(fn).__name__}")
    if list_jobs is not None and (list_jobs_queued is not None or list_jobs_running is not None):
        raise ValueError("list_jobs: give either list_jobs or list_jobs_queued/list_jobs_running, not both")
    for arg, value in (("scheduler_latency", scheduler_latency), ("fs_latency", fs_latency)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
            raise ValueError(f"{arg}: must be a finite number of seconds >= 0, got {value!r}")
    for arg, value in (("poll", poll), ("poll_max", poll_max)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
            raise ValueError(f"{arg}: must be a finite number of seconds > 0, got {value!r}")
    hooks = dict(hooks or {})
    unknown = set(hooks) - set(HOOKS)
    if unknown:
        raise ValueError(f"hooks: unknown hook(s) {sorted(unknown)}; known: {', '.join(HOOKS)}")
    capabilities = capabilities or Capabilities()
    if not isinstance(capabilities, Capabilities):
        raise TypeError(f"capabilities: must be a Capabilities(...) record, got {type(capabilities).__name__}")
    if node_environment is not None and not (isinstance(node_environment, type) and hasattr(node_environment, "activated")
                                             and "<locals>" not in node_environment.__qualname__):
        raise TypeError("node_environment: must be a subclass of bt.NodeEnvironment defined at module level, "
                        f"got {node_environment!r}")
    if capabilities.array_jobs and not array_var:
        raise ValueError("array_var: array jobs need the environment variable that holds the task number")
    if list_jobs is None and (list_jobs_queued is not None or list_jobs_running is not None):
        list_jobs = _combine_listings(list_jobs_queued, list_jobs_running)
    return ClusterFunctions(
        name=name, submit_job=submit_job, kill_job=kill_job, list_jobs=list_jobs, array_var=array_var,
        store_job_collection=bool(store_job_collection), store_job_files=bool(store_job_files),
        scheduler_latency=float(scheduler_latency), fs_latency=float(fs_latency), hooks=hooks,
        poll=float(poll), poll_max=float(max(poll, poll_max)), info=info, wait=wait,
        max_array_size=max_array_size, capabilities=capabilities, resource_check=resource_check,
        path_check=path_check, processes=processes, account=account, flush=flush, usage=usage,
        node_environment=node_environment,
    )


def restorable(constructor: Callable[..., ClusterFunctions]) -> Callable[..., ClusterFunctions]:
    """Decorate a backend constructor so the record remembers how it was made (constructor and
    arguments, no live objects): a registry saves that and rebuilds the backend when loaded."""
    sig = inspect.signature(constructor)

    @functools.wraps(constructor)
    def make(*args: Any, **kwargs: Any) -> ClusterFunctions:
        cf = constructor(*args, **kwargs)
        bound = sig.bind(*args, **kwargs)
        cf.spec = {"constructor": f"{constructor.__module__}:{constructor.__name__}", "kwargs": dict(bound.arguments)}
        return cf

    return make


def run_hook(reg, name: str, *args: Any) -> None:
    """Call the cluster functions' hook ``name`` (if any) as ``hook(reg, *args)``."""
    cf = getattr(reg, "cluster_functions", None)
    fn = cf.hooks.get(name) if cf is not None else None
    if fn is not None:
        log.debug("running hook %s", name)
        fn(reg, *args)
