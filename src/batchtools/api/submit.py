"""Submitting jobs, and running single jobs for testing."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ..backends.base import SubmitJobResult, run_hook
from ..core.errors import SubmitError
from ..core.files import read_pickle, write_pickle
from ..core.ids import as_id_array
from ..core.registry import Registry, resolve
from ..core.tables import set_rows
from ..jobs.collection import JobCollection
from ..jobs.execute import make_job as _node_make_job
from ..jobs.execute import make_runner
from ..progress import progress
from .find import find_not_submitted, pars_dicts_at
from .resources import check_resources, resource_id
from .status import masks

log = logging.getLogger("batchtools")


def sleep_function(sleep, default: Callable[[int], float]) -> Callable[[int], float]:
    """``sleep``: None (backend default), seconds, or a function of the iteration number."""
    if sleep is None:
        return default
    if callable(sleep):
        return sleep
    if isinstance(sleep, (int, float)) and not isinstance(sleep, bool) and sleep >= 0:
        return lambda i: float(sleep)
    raise TypeError(f"sleep: must be None, a number of seconds >= 0, or a function of the iteration; got {sleep!r}")


def job_specs(reg: Registry, ids: np.ndarray) -> list[dict[str, Any]]:
    if reg.kind == "experiment":
        from .experiments import experiment_specs

        return experiment_specs(reg, ids)
    pars = pars_dicts_at(reg, ids)
    return [{"job_id": i, "pars": p} for i, p in zip(ids.tolist(), pars)]


def make_job_collection(ids=None, resources: dict | None = None, reg: Registry | None = None,
                        job_hash: str | None = None) -> JobCollection:
    """Everything a node needs to run ``ids`` (default: all jobs) in one chunk.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> _ = bt.batch_map(lambda x: x, x=[1, 2])
    >>> len(bt.make_job_collection())
    2
    """
    reg = resolve(reg)
    sel = reg.ids(ids)
    resources = {**reg.default_resources, **check_resources(resources)}
    return build_collection(reg, sel, resources, job_hash)


def build_collection(reg: Registry, sel: np.ndarray, resources: dict, job_hash: str | None = None) -> JobCollection:
    """JobCollection of checked, sorted ids ``sel`` with final ``resources``."""
    job_hash = job_hash or f"job{uuid.uuid4().hex}"
    names = reg.status["job_name"].to_numpy()[reg.pos(sel)].tolist()
    return JobCollection(
        file_dir=str(reg.file_dir), work_dir=reg.work_dir, job_hash=job_hash, jobs=job_specs(reg, sel),
        seed=reg.seed, kind=reg.kind, resources=resources, packages=reg.packages, source=reg.source,
        load=reg.load, positional=list(reg.positional), pass_job=reg.pass_job,
        log_file=str(reg.layout.log(job_hash)), array_var=getattr(reg.cluster_functions, "array_var", None),
        array_jobs=bool(resources.get("chunks_as_arrayjobs")), job_names=names, python=sys.executable,
        code_files=dict(reg.extra.get("code_files", {})),
        hooks={k: v for k, v in getattr(reg.cluster_functions, "hooks", {}).items()
               if k in ("pre_do_collection", "post_do_collection")},
    )


def make_job(id: int, reg: Registry | None = None):
    """The Job object of ``id`` as a node would see it (seed, pars, rng).

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None, seed=10)
    >>> _ = bt.batch_map(lambda x: x, x=[5])
    >>> bt.make_job(1).seed
    11
    """
    jc = make_job_collection(id, reg=reg)
    if len(jc.jobs) != 1:
        raise ValueError("id: expected exactly one job id")
    return _node_make_job(jc, jc.jobs[0])


def exec_job(job, reg: Registry | None = None) -> Any:
    """Run one Job object (from :func:`make_job`) here and return its result; writes nothing."""
    reg = resolve(reg)
    jc = make_job_collection(job.id, reg=reg)
    job.seed_rngs()
    return make_runner(jc)(job)


def test_job(id: int, external: bool = False, reg: Registry | None = None) -> Any:
    """Run job ``id`` right here (or, ``external=True``, in a fresh interpreter) and
    return its result. Output goes to the console; the registry is not changed.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> _ = bt.batch_map(lambda x: x ** 2, x=[3])
    >>> bt.test_job(1)
    9
    """
    reg = resolve(reg)
    if not isinstance(external, bool):
        raise TypeError("external: must be True or False")
    jc = make_job_collection(id, reg=reg, job_hash="test")
    if len(jc.jobs) != 1:
        raise ValueError("id: expected exactly one job id")
    if not external:
        job = _node_make_job(jc, jc.jobs[0])
        job.seed_rngs()
        return make_runner(jc)(job)
    with tempfile.TemporaryDirectory(prefix="batchtools-test-") as tmp:
        jc_path, out_path = os.path.join(tmp, "jc.pkl"), os.path.join(tmp, "result.pkl")
        write_pickle(jc_path, jc)
        code = subprocess.run([sys.executable, "-m", "batchtools.jobs.testing", jc_path, out_path]).returncode
        outcome = read_pickle(out_path) if os.path.exists(out_path) else None
    if outcome is None:
        raise RuntimeError(f"test_job: the external interpreter exited with code {code} and no result")
    if outcome["error"] is not None:
        raise RuntimeError(f"test_job: job {id} failed in the external interpreter:\n{outcome['error']}")
    return outcome["result"]


def _submission_plan(ids_arg, reg: Registry) -> tuple[np.ndarray, np.ndarray, pd.DataFrame | None]:
    """(job ids, chunk number per job, per-job resource columns or None)."""
    per_job = None
    if ids_arg is None:
        sel = find_not_submitted(reg=reg)["job_id"].to_numpy()
        return sel, np.arange(1, sel.size + 1), None
    if isinstance(ids_arg, pd.DataFrame):
        ids = as_id_array(ids_arg)
        chunks = ids_arg["chunk"].to_numpy() if "chunk" in ids_arg.columns else np.arange(1, ids.size + 1)
        extra = [c for c in ids_arg.columns if c not in ("job_id", "chunk")]
        if extra:
            per_job = ids_arg[extra].reset_index(drop=True)
    else:
        ids = as_id_array(ids_arg)
        chunks = np.arange(1, ids.size + 1)
    if np.unique(ids).size != ids.size:
        raise ValueError("ids: contains duplicate job ids; each job can be submitted once per call")
    reg.ids(ids)  # existence check
    if pd.isna(pd.Series(chunks)).any():
        raise ValueError("ids: the 'chunk' column has missing values; give every job a chunk number")
    return ids, chunks, per_job


def submit_jobs(ids=None, resources: dict | None = None, sleep=None, reg: Registry | None = None) -> pd.DataFrame:
    """Submit jobs (default: all not yet submitted) through the registry's cluster functions.

    ``ids`` may be a DataFrame with a ``chunk`` column (jobs of a chunk run
    together, in one scheduler job) and per-job resource columns (``walltime``,
    ``memory``, ...). ``resources`` are merged over ``default_resources``.
    Temporary backend errors are retried, waiting ``sleep(i)`` seconds.
    Returns ``job_id`` and ``chunk`` of the submitted jobs.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: x, x=[1, 2])
    >>> bt.submit_jobs()["job_id"].tolist()
    [1, 2]
    """
    reg = resolve(reg)
    reg.assert_writeable("submit jobs")
    cf = reg.cluster_functions
    if cf is None:
        raise ValueError("reg: no cluster functions set; e.g. reg.cluster_functions = bt.make_cluster_functions_multicore()")
    resources = {**reg.default_resources, **check_resources(resources)}
    # temporary errors (a full node, a busy scheduler): back off from the backend's polling interval
    sleep_fn = sleep_function(sleep, lambda i: min(cf.poll * 1.5**i, 60.0))
    reg.sync()
    ids, chunks, per_job = _submission_plan(ids, reg)
    if ids.size == 0:
        return pd.DataFrame({"job_id": np.empty(0, np.int64), "chunk": np.empty(0, np.int64)})
    pos = reg.pos(ids)
    m = masks(reg, pos)
    if m["system"].any():
        busy = ids[m["system"]]
        raise ValueError(f"ids: {busy.size} job(s) are still queued or running, e.g. {busy[:5].tolist()}; "
                         "wait_for_jobs() or kill_jobs() them first")
    # group jobs by chunk (ordered by chunk value) and resources per chunk
    order = np.lexsort((ids, chunks))
    ids, chunks, pos = ids[order], chunks[order], pos[order]
    if per_job is not None:
        per_job = per_job.iloc[order].reset_index(drop=True)
    bounds = np.flatnonzero(np.r_[True, chunks[1:] != chunks[:-1], True])
    groups = [(bounds[k], bounds[k + 1]) for k in range(len(bounds) - 1)]
    groups = _split_arrays(reg, groups, resources, per_job is not None)
    chunk_res = []
    for a, b in groups:
        res = dict(resources)
        if per_job is not None:
            block = per_job.iloc[a:b]
            if len(block.drop_duplicates()) > 1:
                raise ValueError(f"ids: jobs in chunk {chunks[a]} have different per-job resources; "
                                 "jobs of one chunk must share resources")
            res.update({k: (v.item() if hasattr(v, "item") else v) for k, v in block.iloc[0].items()})
            res = check_resources(res, "ids")
        chunk_res.append(res)
    max_jobs = resources.get("max_concurrent_jobs") or reg.max_concurrent_jobs
    res_ids: dict[int, int] = {}
    new_batches: set[str] = set()  # batch ids of this call (not in the status table until recorded)

    forget_runs(reg, pos)

    n = len(groups)
    rec = {k: np.full(ids.size, np.nan) for k in ("submitted", "resource_id")}
    rec_obj = {k: np.full(ids.size, None, dtype=object) for k in ("batch_id", "log_file", "job_hash")}
    done_upto = 0
    run_hook(reg, "pre_submit")
    last_save = time.time()
    try:
        with progress(total=ids.size, desc="Submitting") as bar:
            for k, (a, b) in enumerate(groups):
                if max_jobs:
                    # an array job only occupies as many slots as its throttle lets run
                    n_new = min(b - a, max_jobs) if chunk_res[k].get("chunks_as_arrayjobs") else b - a
                    _throttle(reg, max_jobs, n_new, sleep_fn, new_batches)
                jc = build_collection(reg, ids[a:b], chunk_res[k])
                if cf.store_job_collection:
                    write_pickle(reg.layout.job_collection(jc.job_hash), jc)
                t0 = time.time()
                reg.inflight.add(jc.job_hash)
                result = _submit_with_retries(reg, jc, sleep_fn)
                batch = result.batch_id
                if isinstance(batch, (list, tuple, np.ndarray)):
                    batch = np.array([str(x) for x in batch], dtype=object)
                else:
                    batch = str(batch)
                new_batches.update(batch.tolist() if isinstance(batch, np.ndarray) else [batch])
                rec["submitted"][a:b] = t0
                key = id(chunk_res[k]) if per_job is not None else 0
                if key not in res_ids:
                    res_ids[key] = resource_id(reg, chunk_res[k])
                rec["resource_id"][a:b] = res_ids[key]
                rec_obj["batch_id"][a:b] = batch
                logs = result.log_file or jc.log_file
                rec_obj["log_file"][a:b] = ([os.path.basename(x) for x in logs] if isinstance(logs, (list, tuple))
                                            else os.path.basename(logs))
                rec_obj["job_hash"][a:b] = jc.job_hash
                done_upto = b
                bar.update(b - a)
                if time.time() - last_save > 10:
                    _record(reg, pos[:done_upto], rec, rec_obj, done_upto)
                    last_save = time.time()
    finally:
        _record(reg, pos[:done_upto], rec, rec_obj, done_upto)
        log.debug("submitted %d of %d jobs in %d chunks", done_upto, ids.size, n)
    run_hook(reg, "post_submit")
    if cf.scheduler_latency:
        time.sleep(cf.scheduler_latency)
    order_back = np.argsort(ids, kind="stable")
    return pd.DataFrame({"job_id": ids[order_back], "chunk": chunks[order_back]})


def remove_results(reg: Registry, job_ids) -> None:
    """Delete the result files of ``job_ids`` (those that exist)."""
    for job_id in job_ids:
        try:
            os.unlink(reg.layout.result(int(job_id)))
        except FileNotFoundError:
            pass


def forget_runs(reg: Registry, pos: np.ndarray, results: bool = True) -> None:
    """Clear the previous run of jobs at status rows ``pos`` (resubmission): status and, with
    ``results``, the results of the runs that terminated (where results are)."""
    st = reg.status
    if results:
        remove_results(reg, st["job_id"].to_numpy()[pos[~np.isnan(st["done"].to_numpy()[pos])]].tolist())
    for col in ("submitted", "started", "done", "mem_used", "resource_id"):
        set_rows(st, pos, col, np.nan)
    for col in ("error", "batch_id", "log_file", "job_hash"):
        set_rows(st, pos, col, None)
    reg.mark_dirty("status")


def _split_arrays(reg: Registry, groups: list, resources: dict, per_job: bool) -> list:
    """Split chunks that would become arrays larger than the scheduler allows."""
    cf = reg.cluster_functions
    if cf.max_array_size is None or not resources.get("chunks_as_arrayjobs"):
        return groups
    if max(b - a for a, b in groups) <= 1:
        return groups
    limit = cf.max_array_size(reg)
    if not limit:
        return groups
    out = []
    for a, b in groups:
        out.extend((s, min(s + limit, b)) for s in range(a, b, limit))
    if len(out) > len(groups):
        log.info("split %d array job(s) into %d to stay within the scheduler's array size limit of %d",
                 len(groups), len(out), limit)
    return out


def _record(reg: Registry, pos, rec, rec_obj, n: int) -> None:
    """Write what was submitted so far, merged with any status the jobs already reported."""
    st = reg.status
    for col, arr in {**rec, **rec_obj}.items():
        set_rows(st, pos, col, arr[:n])
    reg.mark_dirty("status")
    reg.inflight.clear()
    reg.sync()
    reg.save(meta=False)


def _submit_with_retries(reg: Registry, jc: JobCollection, sleep_fn) -> SubmitJobResult:
    cf = reg.cluster_functions
    i = 0
    while True:
        result = cf.submit_job(reg, jc)
        if not isinstance(result, SubmitJobResult):
            raise TypeError(f"cluster functions {cf.name}: submit_job must return a SubmitJobResult, got {type(result).__name__}")
        if result.status == 0:
            return result
        if result.status <= 100:
            wait = sleep_fn(i)
            log.info("temporary submit error (%s), retrying in %.1fs", result.msg, wait)
            time.sleep(wait)
            i += 1
            continue
        raise SubmitError(f"Fatal error occurred while submitting with {cf.name}: {result.msg}")


def _throttle(reg: Registry, max_jobs: int, n_new: int, sleep_fn, new_batches: set[str]) -> None:
    """Wait until ``n_new`` more jobs fit under ``max_jobs`` of this registry's jobs on the system."""
    cf = reg.cluster_functions
    i = 0
    while True:
        q, r = cf.list_on_system(reg)
        on_system = q | r
        ours = new_batches | set(reg.status["batch_id"].dropna())
        active = len(on_system & ours)
        if active + n_new <= max_jobs or active == 0:
            return
        wait = sleep_fn(i)
        if cf.wait is not None:
            cf.wait(min(wait, 1.0))
        else:
            time.sleep(wait)
        reg.sync()
        i += 1

