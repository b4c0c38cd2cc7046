"""Submission services shared by ``submit_jobs``, ``submit_workers`` and the testing helpers:
building a job collection and handing it to the backend with retries."""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Callable

import numpy as np

from .backend import NODE_HOOKS, SubmitJobResult, run_hook
from .collection import JobCollection
from .errors import SubmitError

log = logging.getLogger("batchtools")


def sleep_function(sleep, default: Callable[[int], float]) -> Callable[[int], float]:
    """``sleep``: None (backend default), seconds, or a function of the iteration number."""
    if sleep is None:
        return default
    if callable(sleep):
        return sleep
    if isinstance(sleep, (int, float)) and not isinstance(sleep, bool) and 0 <= sleep < float("inf"):
        return lambda i: float(sleep)
    raise TypeError(f"sleep: must be None, a number of seconds >= 0, or a function of the iteration; got {sleep!r}")


def collection_fields(reg) -> dict:
    """The fields every job collection of ``reg`` shares (a submission computes them once)."""
    cf = reg.cluster_functions
    return dict(
        file_dir=str(reg.file_dir), work_dir=reg.work_dir, seed=reg.seed, kind=reg.kind, packages=reg.packages,
        source=reg.source, load=reg.load, positional=list(reg.positional), pass_job=reg.pass_job,
        array_var=getattr(cf, "array_var", None), python=sys.executable,
        node_environment=getattr(cf, "node_environment_ref", None),
        code_files=dict(reg.extra.get("code_files", {})),
        hooks={k: v for k, v in getattr(cf, "hooks", {}).items() if k in NODE_HOOKS},
        store=reg.store, submission=uuid.uuid4().hex, start_reports=bool(getattr(getattr(cf, "capabilities", None), "start_reports", False)),
        preload=tuple(dict.fromkeys([*(p.partition(" as ")[0].strip() for p in reg.packages),
                                     *reg.extra.get("preload", ())])),
    )


def build_collection(reg, sel: np.ndarray, resources: dict, job_hash: str | None = None,
                     specs: list | None = None, names: list | None = None, common: dict | None = None,
                     chunk: int | None = None) -> JobCollection:
    """JobCollection of checked, sorted ids ``sel`` with final ``resources`` (``specs`` and
    ``names``: the jobs' specs and names, if the caller has them already; ``common``: the
    registry's :func:`collection_fields`, if the caller has them already; ``chunk``: its chunk
    number in a submission)."""
    job_hash = job_hash or f"job{uuid.uuid4().hex}"
    if names is None:
        names = reg.status["job_name"].to_numpy()[reg.pos(sel)].tolist()
    return JobCollection(
        job_hash=job_hash, jobs=reg.definitions.specs(sel) if specs is None else specs, resources=resources,
        log_file=str(reg.layout.log(job_hash)), array_jobs=bool(resources.get("chunks_as_arrayjobs")),
        job_names=names, chunk=chunk, **(collection_fields(reg) if common is None else common),
    )


def submit_once(reg, jc: JobCollection) -> SubmitJobResult:
    """Hand ``jc`` to the backend once (the ``pre_submit_job`` hook first): its answer, status 0
    (accepted) or 1-100 (refused for now: a full queue, a cap on jobs per user, a busy
    scheduler); SubmitError on a permanent error (101-200)."""
    cf = reg.cluster_functions
    # this session may still start jobs (one stat): a session that took the lease over may
    # submit the same jobs (issue 24: hundreds ran twice when this was checked only at saves)
    reg.assert_writeable("submit jobs")
    run_hook(reg, "pre_submit_job")
    result = cf.submit_job(reg, jc)
    if not isinstance(result, SubmitJobResult):
        raise TypeError(f"cluster functions {cf.name}: submit_job must return a SubmitJobResult, "
                        f"got {type(result).__name__}")
    if result.status > 100:
        raise SubmitError(f"Fatal error occurred while submitting with {cf.name}: {result.msg}")
    return result


def submit_with_retries(reg, jc: JobCollection, sleep_fn: Callable[[int], float],
                        waiting: Callable[[str, float], None] | None = None) -> SubmitJobResult:
    """Hand ``jc`` to the backend, retrying temporary errors; SubmitError on a permanent one,
    LeaseError once another session took the registry's lease (checked before every attempt).
    The ``pre_submit_job`` hook runs before every attempt (the caller runs ``post_submit_job`` once
    it has recorded the accepted submission). ``waiting(message, seconds)`` is told of every
    temporary error (the scheduler's words) before the wait for the next try."""
    i = 0
    while True:
        result = submit_once(reg, jc)
        if result.status == 0:
            return result
        wait = sleep_fn(i)
        log.info("temporary submit error (%s), retrying in %.1fs", result.msg, wait)
        if waiting is not None:
            waiting(result.msg, wait)
        time.sleep(wait)
        i += 1
