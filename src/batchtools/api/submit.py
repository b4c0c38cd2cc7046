"""Submitting jobs: chunks, array jobs, per-job resources, throttling.

The submission itself is one object, :class:`batchtools.core.submission.Submission` (plan ->
hand over a chunk -> accepted or refused -> close): a job's previous run is forgotten only once
its new submission was accepted.
"""

from __future__ import annotations

import pandas as pd

from ..core.contract.backend import run_hook
from ..core.jobstate.resources import validate_resources
from ..core.jobstate.retry import RetryPolicy
from ..core.presentation.progress import progress
from ..core.registry import RegistryState, resolve
from ..core.submission import Submission, submit_backoff


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
    With a ``cache_dir`` (:func:`make_registry`), a job whose key (its code, parameters, seed,
    ``more_args``, exports and package versions) has a result in the shared cache is not handed to
    the backend: it is done from the cache (its result a normal result, ``cached_from`` in
    :func:`get_job_table` naming the registry and job it came from, a log saying so), once the
    other jobs were handed over; :func:`explain_cache` says why a job missed.
    Returns ``job_id`` and ``chunk`` of the submitted jobs (and of those taken from the cache).

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
    reg.sync()
    sub = Submission(reg, ids, resources, submit_backoff(reg, sleep))  # the plan: every chunk checked before anything is written
    if sub.size:
        with sub.open(), progress(total=sub.size, desc="Submitting", reg=reg) as bar:
            for k in range(len(sub.groups)):
                bar.update(sub.hand_over(k))
                sub.save_if_due()
    sub.take_cached()  # jobs whose result the registry's cache_dir holds: done from it, once the rest was handed over
    if sub.size == 0:
        return sub.submitted()
    # no sleep for the scheduler_latency (R sleeps): a job the scheduler does not list yet counts as
    # queued for that long (core.state.masks), so the caller may poll at once
    run_hook(reg, "post_submit")
    return sub.submitted()
