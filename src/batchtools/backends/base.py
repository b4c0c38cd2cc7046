"""The cluster-functions interface and the chores every backend shares.

A backend is a :class:`ClusterFunctions` record of a few callables, made with
:func:`make_cluster_functions`. ``submit_job(reg, jc)`` must return a
:class:`SubmitJobResult`: status 0 (submitted), 1-100 (temporary error, retried
with the ``sleep`` backoff) or 101-200 (permanent error, raised).
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("batchtools")
# how often each external command ran in this process (the benchmark reports commands per job)
command_counts: Counter = Counter()

HOOKS = (
    "pre_submit",
    "post_submit",
    "pre_sync",
    "post_sync",
    "pre_do_collection",
    "post_do_collection",
    "pre_kill",
    "post_kill",
)


@dataclass
class SubmitJobResult:
    """What ``submit_job`` reports: ``status`` (0 ok, 1-100 temporary, 101-200 fatal),
    the scheduler's ``batch_id`` (one per array task possible), ``log_file`` and ``msg``."""

    status: int
    batch_id: Any = None
    log_file: str | None = None
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


@dataclass
class ClusterFunctions:
    """A backend: how to submit, kill and list jobs. See :func:`make_cluster_functions`."""

    name: str
    submit_job: Callable
    kill_job: Callable | None = None
    list_jobs_queued: Callable | None = None
    list_jobs_running: Callable | None = None
    array_var: str | None = None
    store_job_collection: bool = False
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
    ncpus: int | None = None
    # optional: (queued, running) from one scheduler call, preferred over the two list_* calls
    list_jobs: Callable | None = None
    # optional: largest array job the scheduler accepts (submit_jobs splits bigger chunks)
    max_array_size: Callable | None = None

    def __repr__(self) -> str:
        extra = f", {self.info}" if self.info else ""
        return f"ClusterFunctions({self.name}{extra})"

    def list_on_system(self, reg) -> tuple[set[str], set[str]]:
        """(queued, running) batch ids, each asked once."""
        if self.list_jobs is not None:
            q, r = self.list_jobs(reg)
            return set(map(str, q)), set(map(str, r))
        queued = set(map(str, self.list_jobs_queued(reg))) if self.list_jobs_queued else set()
        running = set(map(str, self.list_jobs_running(reg))) if self.list_jobs_running else set()
        return queued, running


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
    ncpus: int | None = None,
    list_jobs: Callable | None = None,
    max_array_size: Callable | None = None,
) -> ClusterFunctions:
    """Make your own backend.

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
    for arg, fn in (("submit_job", submit_job), ("kill_job", kill_job),
                    ("list_jobs_queued", list_jobs_queued), ("list_jobs_running", list_jobs_running)):
        if fn is not None and not callable(fn):
            raise TypeError(f"{arg}: must be callable (or None), got {type(fn).__name__}")
    if submit_job is None:
        raise TypeError("submit_job: required; a function (reg, jc) -> SubmitJobResult")
    for arg, value in (("scheduler_latency", scheduler_latency), ("fs_latency", fs_latency)):
        if not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{arg}: must be a number of seconds >= 0, got {value!r}")
    hooks = dict(hooks or {})
    unknown = set(hooks) - set(HOOKS)
    if unknown:
        raise ValueError(f"hooks: unknown hook(s) {sorted(unknown)}; known: {', '.join(HOOKS)}")
    return ClusterFunctions(
        name, submit_job, kill_job, list_jobs_queued, list_jobs_running, array_var,
        bool(store_job_collection), bool(store_job_files), float(scheduler_latency),
        float(fs_latency), hooks, poll, poll_max, info, wait, ncpus, list_jobs, max_array_size,
    )


def local_ncpus(ncpus: int | None, meaning: str) -> int:
    """``ncpus`` of a local backend, checked; None means every CPU of this machine."""
    if ncpus is None:
        return os.cpu_count() or 1
    if isinstance(ncpus, bool) or not isinstance(ncpus, int) or ncpus < 1:
        raise ValueError(f"ncpus: must be a positive int ({meaning}), got {ncpus!r}")
    return ncpus


def first_number(output: list[str]) -> str | None:
    """The first run of digits in a command's output (how most schedulers print a job id)."""
    import re

    m = re.search(r"\d+", " ".join(output))
    return m.group(0) if m else None


def temporary_error(output: list[str], patterns: tuple[str, ...]) -> str | None:
    text = "\n".join(output)
    return next((p for p in patterns if p in text), None)


def run_hook(reg, name: str, *args: Any) -> None:
    """Call the cluster functions' hook ``name`` (if any) as ``hook(reg, *args)``."""
    cf = getattr(reg, "cluster_functions", None)
    fn = cf.hooks.get(name) if cf is not None else None
    if fn is not None:
        log.debug("running hook %s", name)
        fn(reg, *args)


def run_os_command(sys_cmd: str, sys_args: list[str] | tuple[str, ...] = (), stdin: str | None = None,
                   nodename: str = "localhost", timeout: float | None = None) -> dict[str, Any]:
    """Run a command (over ssh if ``nodename`` is not localhost); return its exit code and output lines.

    >>> run_os_command("echo", ["hi"])["output"]
    ['hi']
    """
    argv = [sys_cmd, *map(str, sys_args)]
    if nodename not in ("localhost", "127.0.0.1", "", None):
        argv = ["ssh", "-q", "-o", "BatchMode=yes", nodename, " ".join(map(shlex.quote, argv))]
    log.debug("OS command: %s", shlex.join(argv))
    command_counts[sys_cmd] += 1
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        return {"exit_code": 127, "output": [f"command not found: {sys_cmd}"]}
    output = (proc.stdout + proc.stderr).splitlines()
    log.debug("exit code %d, output: %s", proc.returncode, output[:20])
    return {"exit_code": proc.returncode, "output": output}


def cf_handle_unknown_submit_error(cmd: str, exit_code: int, output: list[str]) -> SubmitJobResult:
    """A permanent error result carrying the command's output."""
    text = "\n".join(output)
    return SubmitJobResult(101, None, None, f"Command '{cmd}' produced exit code {exit_code}; output:\n{text}")


def cf_kill_job(reg, cmd: str, args: list[str] = (), max_tries: int = 3, nodename: str = "localhost") -> None:
    """Run a kill command, retrying up to ``max_tries`` times before raising."""
    import time

    out: dict[str, Any] = {}
    for i in range(max_tries):
        out = run_os_command(cmd, args, nodename=nodename)
        if out["exit_code"] == 0:
            return
        time.sleep(min(2**i, 5))
    raise RuntimeError(f"Really tried to kill job, but failed {max_tries} times with '{cmd}': {out.get('output')}")
