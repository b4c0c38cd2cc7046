"""The backend contract: what a cluster-functions record holds and what a backend declares it can do.

A backend is a :class:`ClusterFunctions` record made with :func:`make_cluster_functions`. Its
members come in groups (``GROUPS``, kept in each field's metadata): the required core, a ``name``
and ``submit_job(reg, jc)`` returning a :class:`SubmitJobResult` (status 0 submitted, 1-100
temporary error retried with the ``sleep`` backoff, 101-200 permanent error raised); optional
hooks such as ``kill_job(reg, batch_id)``, one listing call ``list_jobs(reg) -> (queued,
running)``, ``ping()`` and ``flush()``; declared settings, among them :class:`Capabilities`, what
it can do, checked by ``submit_jobs`` before anything is written. The backends themselves live
in :mod:`batchtools.backends`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import re
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


# The contract's members fall in four groups, kept in each field's metadata (``GROUPS``); the table
# in docs/backends/custom.md is rendered from them (docs/_ext/contract.py, checked by a test).
GROUPS = {
    "required": "Required: every backend gives these",
    "hook": "Optional hooks: a function the backend gives if it can (absent: not available)",
    "declared": "Declared settings: what the master needs to know about the scheduler",
    "runtime": "Live objects and provenance, not declarations",
}


def _member(group: str, default: Any, doc: str, call: str = "", returns: str = "") -> Any:
    """A contract field: its ``group`` (a key of ``GROUPS``), how it is called, what it returns and
    what else to know. A class as ``default`` (``dict``, ``Capabilities``) makes a fresh one each time."""
    meta = {"group": group, "doc": doc, "call": call, "returns": returns}
    if isinstance(default, type):
        return field(default_factory=default, metadata=meta)
    return field(default=default, metadata=meta)


def _declared(default: Any, doc: str) -> Any:
    return field(default=default, metadata={"group": "capability", "doc": doc})


def _nothing() -> None:
    """The default ``ping`` and ``flush``: nothing to check, nothing held."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do, declared up front (checked before anything is written).

    Each field is described in its ``metadata["doc"]``; the table in ``docs/backends/custom.md``
    is rendered from them.

    >>> Capabilities(array_jobs=True, walltime_unit=60).walltime_unit
    60
    """

    array_jobs: bool = _declared(
        False, "chunks can run as array jobs (`resources={\"chunks_as_arrayjobs\": True}`); needs `array_var`")
    in_process: bool = _declared(False, "jobs run inside the master process (their status reaches it in memory)")
    blocking: bool = _declared(
        False, "`submit_job` returns only once the submitted jobs have ended (Interactive): `submit_workers` "
               "stops starting workers once the first ones ran the queue empty")
    required_resources: tuple[str, ...] = _declared((), "resources every submission must name")
    start_reports: bool = _declared(
        False, "the backend tells running from queued by the jobs' own start reports (its engine cannot say), "
               "so every job reports its start at once (otherwise a collection of one job reports only when it "
               "ends: the scheduler knows it runs)")
    gpus: bool = _declared(
        False, "the `gpus` resource is honoured (the scheduler allocates devices, or the backend hands out free "
               "ones through `CUDA_VISIBLE_DEVICES`); otherwise `submit_jobs` refuses `gpus`")
    walltime_unit: int = _declared(
        1, "the seconds the scheduler counts a time limit in (Slurm and LSF: 60, whole minutes); "
           "`recommend_resources` rounds to it")
    memory_per_cpu: bool = _declared(
        False, "the `memory` resource is per CPU (Slurm's `--mem-per-cpu`), not per job; "
               "`recommend_resources` divides by `ncpus`")
    dependencies: bool = _declared(
        False, "the scheduler enforces `JobCollection.after` (the collection waits for those scheduler jobs to end "
               "successfully, Slurm's `--dependency=afterok`), so a chunk whose dependencies are this backend's "
               "unfinished jobs is handed over at once; otherwise the master holds it until they are done, and "
               "`cf_brew_template` refuses a collection with `after`")


@dataclass(kw_only=True)
class ClusterFunctions:
    """A backend: how to submit, kill and list jobs. Made by :func:`make_cluster_functions`.

    Its members come in groups (``GROUPS``): a small **required** core (``name``, ``submit_job``),
    named **optional hooks** (a function or None), **declared** settings with the declared
    :class:`Capabilities` record, and members the machinery sets. Each field's ``metadata`` says
    which group it is in and what it does; ``docs/backends/custom.md`` shows them as a table.

    >>> import batchtools as bt
    >>> from batchtools.core.contract.backend import members
    >>> [f.name for f in members("required")]
    ['name', 'submit_job']
    """

    # -- required
    name: str = field(metadata={"group": "required", "doc": "shown in reprs and error messages", "call": "",
                                "returns": ""})
    submit_job: Callable = field(metadata={
        "group": "required", "call": "`submit_job(reg, jc)` with a {class}`~batchtools.JobCollection`",
        "returns": "`bt.make_submit_job_result(status, batch_id, log_file=None, msg=None)`",
        "doc": "status 0 = accepted, 1–100 = temporary error (retried after a pause), 101–200 = permanent error"})
    # -- optional hooks
    kill_job: Callable | None = _member(
        "hook", None, "without it `kill_jobs` refuses", "`kill_job(reg, batch_id)`", "nothing; raise if it failed")
    list_jobs: Callable | None = _member(
        "hook", None, "one scheduler call answers both; or give `list_jobs_queued` / `list_jobs_running` "
        "(`f(reg)` -> batch ids) as in R batchtools", "`list_jobs(reg)`", "`(queued, running)` batch ids")
    wait: Callable[[float], None] | None = _member(
        "hook", None, "instead of a sleep in `wait_for_jobs`", "`wait(seconds)`",
        "nothing; blocks until a job may have started or ended (at most that long)")
    ping: Callable[[], None] = _member(
        "hook", _nothing, "called once before `submit_jobs` / `submit_workers` writes anything (HyperQueue, Dask "
        "check their server)", "`ping()`", "nothing; raise if the backend's server cannot be reached")
    flush: Callable[[], None] = _member(
        "hook", _nothing, "for a backend that hands its engine many collections at once (Dask): `submit_jobs` "
        "calls it before it returns, also when it fails; send held ones yourself before listing or killing",
        "`flush()`", "nothing; sends what `submit_job` accepted but held back")
    max_array_size: Callable | None = _member(
        "hook", None, "`submit_jobs` splits bigger array chunks", "`max_array_size(reg)`",
        "the largest array job the scheduler accepts")
    resource_check: Callable[[dict], Any] | None = _member(
        "hook", None, "before anything is written (e.g. unsafe template values)", "`resource_check(resources)`",
        "nothing; raise on resources the backend cannot put into a job")
    path_check: Callable[[str], Any] | None = _member(
        "hook", None, "before anything is written", "`path_check(file_dir)`",
        "nothing; raise on a registry path the scheduler cannot take (name the character)")
    account: Callable | None = _member(
        "hook", None, "why jobs ended, their peak memory and CPU time; retries use it (see "
        "{class}`~batchtools.RetryPolicy`); jobs it knows nothing about are left out; it never raises",
        "`account(reg, batch_ids)`", "`{batch_id: bt.Accounting}` of ended jobs")
    usage: Callable | None = _member(
        "hook", None, "asked once per poll by `wait_for_jobs` and `sync_registry` about the jobs that ended, for "
        "{func}`~batchtools.recommend_resources`; only for a scheduler that answers for many jobs in one call "
        "(`sacct`)", "`usage(reg, batch_ids)`",
        "`{batch_id: bt.Accounting}` of those that ended, None if the scheduler keeps no accounting")
    hooks: dict[str, Callable] = _member(
        "hook", dict, "by name: `pre_submit`, `post_submit`, `pre_submit_job`, `post_submit_job`, `pre_sync`, "
        "`post_sync`, `pre_kill`, `post_kill`; on the node `pre_do_collection`, `post_do_collection`",
        "`hook(reg, ...)`", "nothing; run around submit, sync, kill and (on the node) a collection")
    node_environment: type | None = _member(
        "hook", None, "the backend's node half: job id, array index, restart count, `requeue()` for "
        "checkpointing jobs; see `SlurmEnvironment` in `backends/slurm.py`, `PBSProEnvironment` in "
        "`backends/pbspro.py`", "on the node",
        "a subclass of {class}`~batchtools.NodeEnvironment` defined at module level")
    # -- declared
    capabilities: Capabilities = _member(
        "declared", Capabilities, "what it can do, checked before anything is written", "",
        "a {class}`~batchtools.Capabilities`")
    array_var: str | None = _member(
        "declared", None, "needed with `Capabilities(array_jobs=True)`", "",
        "the environment variable with the array task number on the node")
    store_job_collection: bool = _member(
        "declared", False, "the node then reads it (the scheduler backends do)", "",
        "`True`: write each collection to `jobs/<hash>.pkl`")
    store_job_files: bool = _member(
        "declared", False, "for a backend that renders a template", "",
        "`True`: keep the rendered job scripts `jobs/<hash>.sh` after the scheduler accepted them")
    scheduler_latency: float = _member(
        "declared", 0.0, "it counts as queued meanwhile, so `submit_jobs` returns at once; also slept after "
        "killing", "", "seconds a newly submitted job may be missing from the listing")
    fs_latency: float = _member(
        "declared", 0.0, "a shared file system's delay", "",
        "seconds a job may be missing from the listing without an update on disk before it counts as expired")
    poll: float = _member("declared", 1.0, "it grows towards `poll_max`", "",
                          "seconds: the first polling interval of `wait_for_jobs`")
    poll_max: float = _member("declared", 10.0, "", "", "seconds: the longest polling interval")
    info: str = _member("declared", "", "e.g. `ncpus=4`", "", "shown in the repr: `ClusterFunctions(name, info)`")
    # -- runtime
    processes: Any = _member(
        "runtime", None, "Multicore's fork server, Socket's processes: give them if the backend starts local "
        "processes; `ClusterFunctions.close()` calls their `close()`", "",
        "the local processes the backend manages")
    spec: dict | None = _member(
        "runtime", None, "set by `core.backend.restorable`, the decorator of the shipped constructors", "",
        "how it was made: `{\"constructor\": \"module:function\", \"kwargs\": {...}}`, saved with the registry")

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


def _rst(text: str) -> str:
    """The Markdown of a field's text (the docs' MyST) as reStructuredText, for a docstring."""
    def one(m: re.Match) -> str:
        return f":{m.group(1)}:`{m.group(2)}`" if m.group(1) else f"``{m.group(2)}``"

    return re.sub(r"(?:\{(\w+)\})?`([^`]+)`", one, text)


def _document_fields(cls: type, title: str) -> None:
    """Append each field's text to the class docstring (so the API reference shows it too)."""
    lines = []
    for f in dataclasses.fields(cls):
        m = f.metadata
        what = " -> ".join(x for x in (m.get("call"), m.get("returns")) if x)
        lines.append(f"- ``{f.name}``: " + _rst("; ".join(x for x in (what, m["doc"]) if x)))
    cls.__doc__ = f"{cls.__doc__.rstrip()}\n\n    {title}\n\n" + "\n".join(f"    {line}" for line in lines) + "\n"


def members(group: str | None = None) -> list:
    """The contract's fields (``dataclasses.Field``), in order, of one group of ``GROUPS`` (or all);
    ``"capability"``: the fields of :class:`Capabilities`.

    >>> [f.name for f in members("runtime")]
    ['processes', 'spec']
    """
    if group == "capability":
        return list(dataclasses.fields(Capabilities))
    if group is not None and group not in GROUPS:
        raise ValueError(f"group: one of {[*GROUPS, 'capability']}, got {group!r}")
    return [f for f in dataclasses.fields(ClusterFunctions) if group is None or f.metadata["group"] == group]


_document_fields(Capabilities, "Fields (all optional):")
_document_fields(ClusterFunctions, "Members (``GROUPS`` tells their groups):")


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
    *,
    list_jobs: Callable | None = None,
    wait: Callable[[float], None] | None = None,
    ping: Callable[[], None] | None = None,
    flush: Callable[[], None] | None = None,
    max_array_size: Callable | None = None,
    resource_check: Callable[[dict], Any] | None = None,
    path_check: Callable[[str], Any] | None = None,
    account: Callable | None = None,
    usage: Callable | None = None,
    node_environment: type | None = None,
    capabilities: Capabilities | None = None,
    poll: float = 1.0,
    poll_max: float = 10.0,
    info: str = "",
    processes: Any = None,
) -> ClusterFunctions:
    """Make your own backend: ``name`` and ``submit_job`` are required, everything else optional.

    The arguments up to ``hooks`` are R batchtools' (``makeClusterFunctions``), in its order;
    the others are keyword-only. Each is a member of :class:`ClusterFunctions` of the same name
    (``docs/backends/custom.md`` lists them all, rendered from the code), except
    ``list_jobs_queued(reg)`` / ``list_jobs_running(reg)``, which return batch ids as in
    batchtools and are combined into one ``list_jobs(reg) -> (queued, running)``: give either
    those two or ``list_jobs``. Times are in seconds. ``capabilities`` declares what the backend
    can do (default: nothing special); array jobs need ``array_var``.

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
                    ("path_check", path_check), ("account", account), ("flush", flush), ("usage", usage),
                    ("ping", ping)):
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
        path_check=path_check, processes=processes, account=account, flush=flush or _nothing,
        ping=ping or _nothing, usage=usage, node_environment=node_environment,
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
