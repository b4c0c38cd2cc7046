"""``btlapply`` and ``btmapply``: map, submit, wait and collect in one blocking call (orchestration)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
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


def _names(first) -> list | None:
    """R's ``use.names``: the names of the first mapped argument (a Series' index unless it is the
    default 0..n-1; strings name themselves), or None."""
    if isinstance(first, pd.Series):
        if not isinstance(first.index, pd.RangeIndex) or first.index.start != 0 or first.index.step != 1:
            return first.index.tolist()
        first = first.tolist()
    if isinstance(first, (list, tuple, np.ndarray)) and len(first) and all(isinstance(v, str) for v in first):
        return list(first)
    return None


def _simplify(results: list):
    """R's ``simplify2array``: scalars become a 1-d array, sequences of one length a 2-d array with one
    row per job; anything else stays a list."""
    if not results:
        return np.array(results)
    if all(np.ndim(r) == 0 and not isinstance(r, (dict, list, tuple)) for r in results):
        return np.array(results)
    if all(isinstance(r, (list, tuple, np.ndarray)) and np.ndim(r) == 1 for r in results) \
            and len({len(r) for r in results}) == 1:
        return np.array([list(r) for r in results])
    return results


def btmapply(fun: Callable, *iterables: Iterable, more_args: dict | None = None, simplify: bool = False,
             use_names: bool = True, resources: dict | None = None, n_chunks: int | None = None,
             chunk_size: int | None = None, reg: RegistryState | None = None, **kwargs: Iterable):
    """Like :func:`btlapply`, over several iterables: ``[fun(a, b) for a, b in zip(A, B)]``.

    As R's ``btmapply``: with ``use_names`` (default) and a first iterable that has names (a
    Series with its own index, or strings, which name themselves) the results come as a
    ``pandas.Series`` indexed by those names; ``simplify=True`` turns scalar results into an array
    (a typed Series with names), results that are sequences of one length into a 2-d array with
    one row per job (a DataFrame with names). ``resources`` as for :func:`submit_jobs` (``walltime``
    in seconds, ``memory`` in MB).

    >>> import batchtools as bt, pandas as pd
    >>> bt.btmapply(lambda a, b: a + b, [1, 2], [10, 20])
    [11, 22]
    >>> bt.btmapply(lambda a, b: a * b, pd.Series([1, 2], index=["x", "y"]), [10, 20], simplify=True).to_dict()
    {'x': 10, 'y': 40}
    >>> bt.btmapply(lambda a, b: [a, b], [1, 2], [3, 4], simplify=True).tolist()
    [[1, 3], [2, 4]]
    """
    for name, flag in (("simplify", simplify), ("use_names", use_names)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name}: must be True or False, got {flag!r}")
    first = iterables[0] if iterables else next(iter(kwargs.values()), None)
    names = _names(first) if use_names else None
    if reg is None:
        reg = _temporary_registry()
    batch_map(fun, *iterables, more_args=more_args, reg=reg, **kwargs)
    results = _run(reg, resources, n_chunks, chunk_size)
    out = _simplify(results) if simplify else results
    if names is None:
        return out
    if isinstance(out, np.ndarray) and out.ndim == 2:
        return pd.DataFrame(out, index=names)
    if isinstance(out, np.ndarray):
        return pd.Series(out, index=names)
    return pd.Series(out, index=names, dtype=object)
