"""``btlapply`` and ``btmapply``: map, submit, wait and collect in one blocking call (orchestration)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pandas as pd

from ..core.registry import RegistryState
from .chunking import chunk as chunk_ids
from .define import batch_map
from .logs import get_error_messages
from .results import reduce_results_list
from .setup import create_registry
from .submit import submit_jobs
from .wait import wait_for_jobs


def _temporary_registry() -> RegistryState:
    return create_registry(RegistryState, file_dir=None, make_default=False)


def _run(reg: RegistryState, resources, n_chunks, chunk_size) -> list:
    ids = pd.DataFrame({"job_id": reg.job_ids})
    if n_chunks is not None or chunk_size is not None:
        ids["chunk"] = chunk_ids(ids["job_id"], n_chunks=n_chunks, chunk_size=chunk_size, shuffle=False)
    submit_jobs(ids, resources=resources, reg=reg)
    if not wait_for_jobs(reg=reg):
        errs = get_error_messages(reg=reg)
        raise RuntimeError(f"{len(errs)} job(s) failed; first error: {errs['message'].iloc[0] if len(errs) else '?'}")
    return reduce_results_list(reg=reg)


def btlapply(X: Iterable, fun: Callable, more_args: dict | None = None, resources: dict | None = None,
             n_chunks: int | None = None, chunk_size: int | None = None, reg: RegistryState | None = None) -> list:
    """``[fun(x, **more_args) for x in X]`` computed as batch jobs, blocking until done.

    Uses a temporary registry unless ``reg`` is given. ``resources`` are passed to
    :func:`submit_jobs` (``walltime`` in seconds, ``memory`` in MB); ``n_chunks`` or
    ``chunk_size`` group the elements into that many scheduler jobs / that many per job.

    >>> import batchtools as bt
    >>> bt.btlapply([1, 2, 3], lambda x: x * 2)
    [2, 4, 6]
    """
    if reg is None:
        reg = _temporary_registry()
    batch_map(fun, X, more_args=more_args, reg=reg)
    return _run(reg, resources, n_chunks, chunk_size)


def btmapply(fun: Callable, *iterables: Iterable, more_args: dict | None = None, resources: dict | None = None,
             n_chunks: int | None = None, chunk_size: int | None = None, reg: RegistryState | None = None,
             **kwargs: Iterable) -> list:
    """Like :func:`btlapply`, over several iterables: ``[fun(a, b) for a, b in zip(A, B)]``.

    ``resources`` as for :func:`submit_jobs` (``walltime`` in seconds, ``memory`` in MB).

    >>> import batchtools as bt
    >>> bt.btmapply(lambda a, b: a + b, [1, 2], [10, 20])
    [11, 22]
    """
    if reg is None:
        reg = _temporary_registry()
    batch_map(fun, *iterables, more_args=more_args, reg=reg, **kwargs)
    return _run(reg, resources, n_chunks, chunk_size)
