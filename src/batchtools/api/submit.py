"""Submitting jobs: chunks, array jobs, per-job resources, throttling.

A job's previous run is forgotten only once its new submission was accepted: the results of the
previous run are set aside before a chunk is handed to the backend and put back if the backend
refuses it; the status rows change only for accepted chunks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

import numpy as np
import pandas as pd

from ..core import attempts
from ..core.backend import run_hook
from ..core.errors import LeaseError
from ..core.files import unlink_quietly, write_pickle
from ..core.ids import as_id_array
from ..core.journal import Journal, chunk_hash, inprocess_prefix
from ..core.progress import progress
from ..core.registry import RegistryState, resolve
from ..core.resources import PER_JOB, resource_id, validate_resources
from ..core.retry import RetryPolicy
from ..core.state import forget_runs, masks, select, terminated_ids
from ..core.submission import build_collection, collection_fields, sleep_function, submit_with_retries
from ..core.tables import set_rows

log = logging.getLogger("batchtools")


def _submission_plan(ids_arg, reg: RegistryState) -> tuple[np.ndarray, np.ndarray, pd.DataFrame | None]:
    """(job ids, chunk number per job, per-job resource columns or None).

    As in R, only the ``chunk`` column and the per-job resources (``PER_JOB``) of an ``ids``
    frame count; its other columns (job parameters, status, the result of ``get_job_table``)
    are ignored. A missing per-job value means "not set for this job".
    """
    per_job = None
    if ids_arg is None:
        sel = select(reg, "submitted", negate=True)
        return sel, np.arange(1, sel.size + 1), None
    ids = reg.ids(ids_arg, keep_order=True)  # names duplicated and unknown ids
    chunks = np.arange(1, ids.size + 1)
    if isinstance(ids_arg, pd.DataFrame):
        if "chunk" in ids_arg.columns:
            chunk_col = ids_arg["chunk"]
            if chunk_col.isna().any():
                raise ValueError("ids: the 'chunk' column has missing values; give every job a chunk number")
            try:
                chunks = as_id_array(chunk_col, "ids['chunk']")
            except TypeError:
                raise TypeError("ids: the 'chunk' column must hold whole numbers (chunk ids), "
                                f"got {chunk_col.head(3).tolist()}") from None
        cols = [c for c in PER_JOB if c in ids_arg.columns]
        if cols:
            per_job = ids_arg[cols].reset_index(drop=True)
    return ids, chunks, per_job


def submit_jobs(ids=None, resources: dict | None = None, sleep=None, retry: RetryPolicy | None = None,
                reg: RegistryState | None = None) -> pd.DataFrame:
    """Submit jobs (default: all not yet submitted) through the registry's cluster functions.

    ``ids`` may be a DataFrame with a ``chunk`` column (jobs of a chunk run
    together, in one scheduler job) and per-job resource columns (``walltime``,
    ``memory``, ...). ``resources`` are merged over ``default_resources``:
    ``walltime`` (seconds), ``memory`` (MB), ``ncpus``, ``omp_threads`` /
    ``blas_threads``, ``measure_memory``, ``inner_backend``, ``chunks_as_arrayjobs``,
    ``max_concurrent_jobs``, and anything the backend's template uses (``partition``, ...).
    Temporary backend errors are retried, waiting ``sleep(i)`` seconds (``sleep``: a number
    of seconds or a function of the attempt ``i``; default: the backend's backoff, from its
    polling interval up to a minute), until the backend accepts: a scheduler that refuses more
    jobs for now (Slurm's ``QOSMaxSubmitJobPerUserLimit``, a cap on jobs per user) makes the call
    wait, and it says so once, in the scheduler's words (a warning on the ``batchtools``
    logger). Under such a cap run the jobs on a few pool workers (:func:`submit_workers`), or
    set ``max_concurrent_jobs`` to the cap so the call waits for free slots instead of being
    refused; Ctrl-C stops the wait and keeps what was submitted.
    ``retry``: a :class:`~batchtools.RetryPolicy`, stored with the jobs; ``wait_for_jobs`` and
    ``sync_registry`` resubmit jobs that die of a timeout, out-of-memory, node failure or
    preemption (as the policy says), with scaled resources.
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
    cf.check_registry(reg)
    resources = {**reg.default_resources, **validate_resources(resources)}
    if retry is not None:
        resources["retry"] = RetryPolicy.coerce(retry).as_dict()
    # temporary errors (a full node, a busy scheduler): back off from the backend's polling interval
    sleep_fn = sleep_function(reg.sleep if sleep is None else sleep, lambda i: min(cf.poll * 1.5**i, 60.0))
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
    groups = _split_arrays(reg, groups, resources)
    cf.ping()  # a backend with a server (HyperQueue, Dask): unreachable, nothing is written
    chunk_res = []
    for a, b in groups:
        res = dict(resources)
        if per_job is not None:
            block = per_job.iloc[a:b]
            if len(block.astype(object).where(block.notna(), None).drop_duplicates()) > 1:
                raise ValueError(f"ids: jobs in chunk {chunks[a]} have different per-job resources; "
                                 "jobs of one chunk must share resources")
            res.update({k: _plain(v) for k, v in block.iloc[0].items() if not pd.isna(v)})
            res = validate_resources(res, "ids")
        cf.check_resources(res, "ids" if per_job is not None else "resources")
        chunk_res.append(res)
    max_jobs = resources.get("max_concurrent_jobs") or reg.max_concurrent_jobs
    res_ids: dict[int, int] = {}
    new_batches: set[str] = set()  # batch ids of this call (not in the status table until recorded)

    rec = {k: np.full(ids.size, np.nan) for k in ("submitted", "resource_id")}
    rec_obj = {k: np.full(ids.size, None, dtype=object) for k in ("batch_id", "log_file", "job_hash")}
    accepted = 0  # jobs [0, accepted) were accepted by the backend
    recorded = 0  # jobs [0, recorded) are in the status table
    stashes: list[tuple[np.ndarray, str]] = []  # results of previous runs set aside, per accepted chunk
    # accepted chunks survive a master killed before the next save; a full disk is found before
    # anything runs. Jobs run inside this process (Interactive) die with it: their chunks are
    # journalled all at once, before any runs, and a dead session's successor records those whose
    # run left evidence (their results, their status updates)
    specs = reg.definitions.specs(ids)  # everything per job is looked up once, not per chunk
    names = reg.status["job_name"].to_numpy()[pos].tolist()
    common = collection_fields(reg)
    journal = Journal(reg.layout.journal)
    journal.begin()
    prefix = inprocess_prefix(common["submission"]) if cf.capabilities.in_process else None
    if prefix is not None:
        journal.inprocess(prefix, ids, groups, time.time(), chunk_res)
    ran = None  # (batch id, log file) the in-process chunks ran with, as last journalled
    previous = set(terminated_ids(reg, pos).tolist())  # jobs whose earlier run may have left a result
    run_hook(reg, "pre_submit")
    last_save = time.time()
    refused: dict = {"since": None, "said": set()}  # when the current wait began; the refusals told so far

    def record() -> None:
        nonlocal recorded, last_save
        _record(reg, pos[recorded:accepted], {k: v[recorded:accepted] for k, v in {**rec, **rec_obj}.items()})
        recorded = accepted
        for moved, tag in stashes:  # the new state is saved: the previous runs' results can go
            reg.store.drop(moved, tag)
        stashes.clear()
        last_save = time.time()

    lost: LeaseError | None = None  # another session took the lease: this one starts and records nothing more
    try:
        with progress(total=ids.size, desc="Submitting", reg=reg) as bar:
            for k, (a, b) in enumerate(groups):
                if max_jobs:
                    # an array job only occupies as many slots as its throttle lets run
                    n_new = min(b - a, max_jobs) if chunk_res[k].get("chunks_as_arrayjobs") else b - a
                    _throttle(reg, max_jobs, n_new, sleep_fn, new_batches)
                jc = build_collection(reg, ids[a:b], chunk_res[k], specs=specs[a:b], names=names[a:b], common=common,
                                      chunk=int(chunks[a]),
                                      job_hash=None if prefix is None else chunk_hash(prefix, k))
                if cf.store_job_collection:
                    write_pickle(reg.layout.job_collection(jc.job_hash), jc)
                t0 = time.time()
                moved = reg.store.stash([i for i in ids[a:b].tolist() if i in previous], jc.job_hash) \
                    if previous else []
                reg.inflight.add(jc.job_hash)
                try:
                    if prefix is None:
                        journal.intent(jc.job_hash, ids[a:b])
                    result = submit_with_retries(reg, jc, sleep_fn,
                                                 lambda msg, wait: _waiting(refused, msg, accepted, ids.size, max_jobs))
                except BaseException:
                    with contextlib.suppress(OSError):
                        journal.refused(jc.job_hash)
                    reg.inflight.discard(jc.job_hash)
                    reg.store.restore(moved, jc.job_hash)
                    unlink_quietly([reg.layout.job_collection(jc.job_hash), reg.layout.script(jc.job_hash)])
                    raise
                if refused["since"] is not None:
                    log.info("submit_jobs: the scheduler accepts jobs again (after %.0fs)", time.time() - refused["since"])
                    refused["since"] = None
                stashes.append((moved, jc.job_hash))
                if not cf.store_job_files and "script" in jc.__dict__:  # rendered by cf_brew_template
                    unlink_quietly([jc.__dict__["script"]])
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
                accepted = b  # also if journalling it fails below: the backend has it, the status must say so
                if prefix is None:
                    journal.accepted(jc.job_hash, ids[a:b], t0,
                                     rec_obj["batch_id"][a:b] if isinstance(batch, np.ndarray) else batch,
                                     rec_obj["log_file"][a:b].tolist() if isinstance(logs, (list, tuple))
                                     else rec_obj["log_file"][a], chunk_res[k])
                else:
                    ran = _journal_ran(journal, prefix, k, ran, rec_obj["batch_id"][a:b], rec_obj["log_file"][a:b])
                run_hook(reg, "post_submit_job")  # the chunk is journalled: a failing hook loses nothing
                bar.update(b - a)
                if time.time() - last_save > 10:
                    record()
    except LeaseError as e:
        lost = e
        handed = (f"The session that took it over records those {accepted} from the submission journal"
                  if prefix is None else
                  f"Those {accepted} ran in this process: the session that took it over recorded, from the "
                  "submission journal, those that had finished when it did; a job still running then runs again "
                  "when it is submitted there")
        raise LeaseError(
            f"submit_jobs stopped after handing {accepted} of {ids.size} job(s) to the backend: {e} {handed}; "
            f"the other {ids.size - accepted} were not submitted: submit them from the session that holds the "
            "lease.") from None
    finally:
        try:
            cf.flush()  # what the backend held back (and the journal names) goes, also when the lease went
        finally:
            reg.store.close_packs()  # the pack collections run in this process shared, also if one was refused
            if lost is None:  # else the journal and the tables are the new holder's
                if accepted > recorded or stashes:
                    record()
                journal.clear()  # every accepted chunk is in the saved status now
            else:
                journal.close()  # the new holder replayed and removed it: nothing more is written to it
            log.debug("submitted %d of %d jobs in %d chunks", accepted, ids.size, len(groups))
    # no sleep for the scheduler_latency (R sleeps): a job the scheduler does not list yet counts as
    # queued for that long (core.state.masks), so the caller may poll at once
    run_hook(reg, "post_submit")
    order_back = np.argsort(ids, kind="stable")
    return pd.DataFrame({"job_id": ids[order_back], "chunk": chunks[order_back]})


def _waiting(refused: dict, msg: str, accepted: int, total: int, max_jobs) -> None:
    """Say why the submission waits: the first time in a call as a warning (the scheduler's
    words, where it stands, what to do under a cap on jobs per user), other refusals as info."""
    if refused["since"] is None:
        refused["since"] = time.time()
    if msg in refused["said"]:
        return
    first = not refused["said"]
    refused["said"].add(msg)
    if not first:
        log.info("submit_jobs: the scheduler refuses again: %s (%d of %d jobs submitted)", msg, accepted, total)
        return
    advice = ("; submit_workers(n) runs all of them on n pool workers, or set max_concurrent_jobs to the cap "
              "(reg.max_concurrent_jobs = N, or resources={'max_concurrent_jobs': N}) so that submit_jobs waits "
              "for free slots instead of being refused" if not max_jobs else
              f"; max_concurrent_jobs is {max_jobs}: the scheduler's cap is lower, or other jobs of yours fill it")
    log.warning("submit_jobs: the scheduler refuses more jobs for now (%s). %d of %d jobs are submitted; the "
                "rest are submitted as it accepts them (retrying; Ctrl-C stops and keeps what was submitted)%s",
                msg, accepted, total, advice)


def _journal_ran(journal: Journal, prefix: str, k: int, ran: tuple | None, batch: np.ndarray,
                 logs: np.ndarray) -> tuple | None:
    """Journal the batch id and log of in-process chunk ``k`` (jobs ``batch``, ``logs``) unless
    they are those of the chunks before it (``ran``, what was last journalled); the new ``ran``."""
    uniform = batch.size == 1 or (len(set(batch.tolist())) == 1 and len(set(logs.tolist())) == 1)
    now = (batch[0], logs[0]) if uniform else None
    if now == ran and now is not None:
        return ran
    try:  # what a successor records for the chunks from here on (their jobs ran already)
        if uniform:
            journal.ran(prefix, k, batch[0], logs[0])
        else:
            journal.ran(prefix, k, batch, logs, single=True)
    except OSError as e:  # a full disk: a successor records them with an unknown batch id
        log.debug("could not journal the batch id of an in-process chunk: %s", e)
        return None
    return now


def _plain(value):
    """A per-job resource value as a plain Python value (a whole float, as a column with missing
    values holds its integers, becomes an int)."""
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _split_arrays(reg: RegistryState, groups: list, resources: dict) -> list:
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


def _record(reg: RegistryState, pos: np.ndarray, values: dict[str, np.ndarray]) -> None:
    """Write the accepted submissions at status rows ``pos`` (their previous runs forgotten),
    merged with any status the jobs already reported, and save."""
    if pos.size:
        forget_runs(reg, pos)
        st = reg.status
        for col, arr in values.items():
            set_rows(st, pos, col, arr)
        attempts.on_submitted(reg, pos)
        reg.mark_dirty("status")
    reg.inflight.clear()
    reg.sync()
    reg.save(meta=False)


def _throttle(reg: RegistryState, max_jobs: int, n_new: int, sleep_fn, new_batches: set[str]) -> None:
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
