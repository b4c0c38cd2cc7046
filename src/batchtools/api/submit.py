"""Submitting jobs: chunks, array jobs, per-job resources, throttling.

The submission itself is one object, :class:`batchtools.core.submission.Submission` (plan ->
hand over a chunk -> accepted or refused -> close): a job's previous run is forgotten only once
its new submission was accepted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.contract.backend import run_hook
from ..core.dependencies import (
    SOURCE,
    check_after,
    hold,
    review,
    scheduler_after,
    scheduler_enforces,
    store_after,
    stored_after,
    waiting,
)
from ..core.jobstate.resources import resource_id, validate_resources
from ..core.jobstate.retry import RetryPolicy
from ..core.jobstate.state import on_system
from ..core.presentation.progress import progress
from ..core.registry import RegistryState, resolve
from ..core.submission import Submission, submit_backoff


def submit_jobs(ids=None, resources: dict | None = None, sleep=None, retry: RetryPolicy | None = None,
                after=None, reg: RegistryState | None = None) -> pd.DataFrame:
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
    With a ``cache_dir`` (:func:`make_registry`), a job whose key (its code, parameters, seed,
    ``more_args``, exports and package versions) has a result in the shared cache is not handed to
    the backend: it is done from the cache (its result a normal result, ``cached_from`` in
    :func:`get_job_table` naming the registry and job it came from, a log saying so), once the
    other jobs were handed over; :func:`explain_cache` says why a job missed.
    ``after``: job ids that every job of ``ids`` waits for (replacing what they waited for
    before; ``()`` clears it; None keeps the stored dependencies). Dependencies are stored in
    the registry, and every submission honours them: a job whose dependencies are not all done
    is *held* (submitted, with its resources, retry policy and chunk, but not handed to the
    backend; see :func:`find_held`); ``wait_for_jobs`` and ``sync_registry`` submit it once
    they are, so ``submit_jobs(map_ids); submit_jobs(reduce_ids, after=map_ids);
    wait_for_jobs()`` runs the chain to the end, also in a later session. A dependency that
    fails or expires leaves its dependants held with the reason ``dependency``; resubmitting it
    releases them once it is done. A backend whose scheduler enforces dependencies
    (``capabilities.dependencies``, e.g. Slurm's ``afterok``) gets a chunk at once when every
    dependency not done yet is a job of it on the system: the scheduler holds it, no master
    needed (should such a dependency fail or expire, ``wait_for_jobs``/``sync_registry`` kill
    the dependant and hold it here, reason ``dependency``). Unknown or removed ids, a job waiting for itself and cycles
    are refused before anything is written.
    Returns ``job_id`` and ``chunk`` of the submitted jobs (held ones and those taken from the cache included).

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: x, x=[1, 2])
    >>> bt.submit_jobs()["job_id"].tolist()
    [1, 2]

    Job 2 waiting for job 1:

    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: x, x=[1, 2])
    >>> _ = bt.submit_jobs(2, after=1)
    >>> bt.find_held()["job_id"].tolist()
    [2]
    >>> _ = bt.submit_jobs(1)
    >>> bt.wait_for_jobs()  # submits job 2 once job 1 is done
    True
    >>> bt.find_held()["job_id"].tolist()
    []
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
    reg.sync()
    backoff = submit_backoff(reg, sleep)
    sub = Submission(reg, ids, resources, backoff, after=after)  # the plan: every chunk checked before anything is written
    dep = check_after(reg, sub.ids, after)
    if dep is None and SOURCE not in reg.extra and all(d is None for d in stored_after(reg, sub.pos if sub.size else sub.ids)):
        _hand_over(reg, sub)
    else:
        _submit_with_deps(reg, sub, ids, dep, resources, backoff)
    sub.take_cached()  # jobs whose result the registry's cache_dir holds: done from it, once the rest was handed over
    if sub.size == 0:
        return sub.submitted()
    # no sleep for the scheduler_latency (R sleeps): a job the scheduler does not list yet counts as
    # queued for that long (core.state.masks), so the caller may poll at once
    run_hook(reg, "post_submit")
    return sub.submitted()


def _hand_over(reg: RegistryState, sub: Submission) -> None:
    """Hand every chunk of ``sub`` to the backend."""
    if sub.size == 0:
        return
    with sub.open(), progress(total=sub.size, desc="Submitting", reg=reg) as bar:
        for k in range(len(sub.groups)):
            bar.update(sub.hand_over(k))
            sub.save_if_due()


def _submit_with_deps(reg: RegistryState, sub: Submission, ids_arg, dep, resources: dict, backoff) -> None:
    """Hand over the jobs of ``sub`` whose dependencies are done (``dep`` if given, else the stored
    ones), then, in one mutation, store ``dep`` and hold the others. The hand-over comes first and
    outside the mutation, so that an accepted chunk is never undone (the submission journal
    covers a master killed in between); a backend that takes no chunk leaves the registry as it
    was, and so does a call refused before."""
    if sub.size == 0:
        return
    wait = waiting(reg, sub.ids, dep)
    enforced = scheduler_enforces(reg)
    system = on_system(reg) if enforced else None
    go, held, keep = ~wait, None, None
    if wait.any():  # planned (and checked) before anything is written
        held = Submission(reg, _only(ids_arg, sub.ids[wait]), resources, backoff, after=dep)
        keep = np.ones(held.size, bool)
        if enforced:  # chunks whose dependencies are all on the scheduler wait there
            for a, b in held.groups:
                keep[a:b] = scheduler_after(reg, held.ids[a:b], system, dep) is None
            go = go | np.isin(sub.ids, held.ids[~keep])
    failure = None
    if go.any():
        ready = Submission(reg, _only(ids_arg, sub.ids[go]), resources, backoff, after=dep)
        if enforced:
            ready.after = {k: scheduler_after(reg, ready.ids[a:b], system, dep) or ()
                           for k, (a, b) in enumerate(ready.groups)}
        try:
            _hand_over(reg, ready)
        except BaseException as e:
            if ready.accepted == 0:
                raise  # nothing reached the backend: the registry is as it was
            failure = e  # the backend has some: they are recorded; the dependencies and holds follow
    with reg.mutation("submit jobs"):
        if dep is not None:
            store_after(reg, sub.ids, dep)
        if keep is not None and keep.any():
            rids = np.empty(held.size)
            for (a, b), res in zip(held.groups, held.chunk_res):
                rids[a:b] = resource_id(reg, res)
            hold(reg, held.ids[keep], held.chunks[keep], rids[keep])
            review(reg)  # held on a dependency that failed already: the reason says so at once
        reg.save(("status", "resources"), meta=False)
    if failure is not None:
        raise failure


def _only(ids_arg, keep: np.ndarray):
    """``ids_arg`` (as ``submit_jobs`` takes it) restricted to the jobs ``keep``."""
    if isinstance(ids_arg, pd.DataFrame):
        return ids_arg[ids_arg["job_id"].isin(keep)]
    return keep
