"""Defining jobs: ``batch_map`` (a persistent ``map``), ``batch_reduce`` and ``batch_map_results``."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from ..core.dependencies import SOURCE
from ..core.jobstate.state import done_mask
from ..core.persistence.pickling import check_payload, check_stored_values, pickle_by_value
from ..core.persistence.tables import new_status
from ..core.registry import RegistryState, require_kind, resolve

log = logging.getLogger("batchtools")


def to_column(values: Any, arg: str) -> np.ndarray:
    """One mapped argument as a 1-d array (Python objects keep their type on the node)."""
    if isinstance(values, range):
        return np.arange(values.start, values.stop, values.step, dtype=np.int64)
    if isinstance(values, (pd.Series, pd.Index)):
        return values.to_numpy()
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(f"{arg}: arrays must be 1-dimensional (one element per job), got shape {values.shape}")
        return values
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise TypeError(
            f"{arg}: expected an iterable with one element per job (list, tuple, range, array, Series), "
            f"got {type(values).__name__}. To pass the same value to every job, use more_args={{{arg!r}: ...}}."
        )
    items = list(values)
    types = set(map(type, items))
    if types == {int}:
        try:
            return np.array(items, dtype=np.int64)
        except OverflowError:
            pass
    elif types == {float}:
        return np.array(items, dtype=np.float64)
    elif types == {bool}:
        return np.array(items, dtype=bool)
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


def _signature(fun: Callable) -> inspect.Signature | None:
    try:
        return inspect.signature(fun)
    except (TypeError, ValueError):
        return None


def _positional_names(sig: inspect.Signature | None, n: int) -> list[str]:
    names = []
    params = list(sig.parameters.values()) if sig else []
    slots = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    for i in range(n):
        names.append(slots[i] if i < len(slots) else f"arg{i}")
    return names


def collect_columns(iterables: tuple, kwargs: dict, args, sig) -> tuple[dict[str, np.ndarray], list[str], int]:
    """Columns of all mapped arguments, positional names, and the number of jobs."""
    positional = _positional_names(sig, len(iterables))
    named: list[tuple[str, Any]] = list(zip(positional, iterables))
    if args is not None:
        if isinstance(args, pd.DataFrame):
            named += [(str(c), args[c]) for c in args.columns]
        elif isinstance(args, Mapping):
            named += list(args.items())
        else:
            raise TypeError("args: must be a dict of iterables or a DataFrame (one row per job)")
    named += list(kwargs.items())
    columns: dict[str, np.ndarray] = {}
    for name, values in named:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"argument name {name!r} is not a valid Python identifier")
        if name in columns:
            raise ValueError(f"{name}: given more than once (positionally, in args or as keyword)")
        if name in ("job_id", "def_id"):
            raise ValueError(f"{name}: reserved column name; rename the argument")
        columns[name] = to_column(values, name)
    lengths = {name: len(col) for name, col in columns.items()}
    n = max(lengths.values(), default=0)
    if any(n_i not in (1, n) for n_i in lengths.values()):
        detail = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise ValueError(f"mapped arguments have different lengths ({detail}); give each the same "
                         "length, or length 1 to recycle it")
    for name, col in columns.items():
        if len(col) == 1 and n != 1:
            columns[name] = np.repeat(col, n)
    return columns, positional, n


def batch_map(fun: Callable, *iterables: Iterable, args=None, more_args: dict | None = None,
              reg: RegistryState | None = None, **kwargs: Iterable) -> pd.DataFrame:
    """Define one job per element of the mapped arguments: job i calls
    ``fun(iterables[0][i], ..., **{k: v[i]}, **more_args)``.

    Arguments of length 1 are recycled. A parameter named ``job`` in ``fun``
    receives the :class:`~batchtools.Job` (seed, rng, resources). Returns the new
    job ids as a DataFrame with a ``job_id`` column.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None, seed=1)
    >>> bt.batch_map(lambda x, y: x + y, x=[1, 2, 3], y=[10])["job_id"].tolist()
    [1, 2, 3]
    """
    return _define_map(fun, iterables, args, more_args, resolve(reg), kwargs)


def _define_map(fun: Callable, iterables: tuple, args, more_args: dict | None, reg: RegistryState, kwargs: dict,
                extra: dict | None = None) -> pd.DataFrame:
    """batch_map's work; ``extra``: entries for ``reg.extra``, saved with the jobs."""
    reg.assert_writeable("add jobs")
    require_kind(reg, "map", "batch_map")
    if not callable(fun):
        raise TypeError(f"fun: must be callable, got {type(fun).__name__}")
    if more_args is None:
        more_args = {}
    if not isinstance(more_args, Mapping):
        raise TypeError("more_args: must be a dict of constant keyword arguments")
    if len(reg.status):
        raise ValueError(f"reg: batch_map needs an empty registry, this one has {len(reg.status)} jobs. "
                         "Use clear_registry() or make a new registry.")
    sig = _signature(fun)
    columns, positional, n = collect_columns(iterables, kwargs, args, sig)
    clash = set(columns) & set(more_args)
    if clash:
        raise ValueError(f"more_args: {sorted(clash)} are also mapped arguments; give each only once")
    pass_job = sig is not None and "job" in sig.parameters and "job" not in columns and "job" not in more_args
    if sig is not None and n > 0:
        probe = {k: None for k in columns if k not in positional}
        probe.update(more_args)
        if pass_job:
            probe["job"] = None
        try:
            sig.bind(*[None] * len(positional), **probe)
        except TypeError as e:
            raise TypeError(f"fun: does not accept the mapped arguments {list(columns)} ({e})") from None
    fun_pickled = pickle_by_value(fun)
    more_pickled = pickle_by_value(dict(more_args), "more_args")
    check_payload(more_pickled.payload, "more_args")
    for name, col in columns.items():  # the definitions are stored with the registry: refuse what cannot be
        if col.dtype == object:
            check_stored_values(col, name, lambda i: f"the value of job {i + 1}")
    ids = np.arange(1, n + 1, dtype=np.int64)
    defs = pd.DataFrame({"def_id": ids, **columns})
    with reg.mutation("add jobs"):
        reg.write_bytes(reg.layout.user_function, fun_pickled.payload)
        reg.write_bytes(reg.layout.more_args, more_pickled.payload)
        reg.positional = [p for p in positional if p in columns]
        reg.pass_job = pass_job
        kept = {k: v for k, v in reg.extra.items() if k != SOURCE}  # a source is batch_map_results' own
        reg.extra = {**kept, "code_files": {**more_pickled.files, **fun_pickled.files},
                     "preload": sorted(fun_pickled.modules | more_pickled.modules), **(extra or {})}
        reg.defs = defs
        reg.status = new_status(ids, ids)
        reg.save()
    return pd.DataFrame({"job_id": ids})


def _reduce_chunk(xs, fun, init, more_args, use_init):
    from functools import reduce

    call = (lambda a, b: fun(a, b, **more_args)) if more_args else fun
    return reduce(call, xs, init) if use_init else reduce(call, xs)


def batch_reduce(fun: Callable, xs: Iterable, init: Any = None, chunks=None, more_args: dict | None = None,
                 reg: RegistryState | None = None) -> pd.DataFrame:
    """Define jobs that each reduce one chunk of ``xs`` with ``fun(aggr, x)``.

    ``chunks`` gives each element's chunk number (default: one chunk per element).
    Combine the jobs' results afterwards, e.g. with ``reduce_results``.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> bt.batch_reduce(lambda a, b: a + b, range(10), init=0, chunks=[1] * 5 + [2] * 5)["job_id"].tolist()
    [1, 2]
    """
    if not callable(fun):
        raise TypeError(f"fun: must be callable, got {type(fun).__name__}")
    xs = list(to_column(xs, "xs"))
    chunks = np.arange(len(xs)) if chunks is None else np.asarray(list(chunks))
    if len(chunks) != len(xs):
        raise ValueError(f"chunks: needs one chunk number per element of xs ({len(xs)}), got {len(chunks)}")
    groups = [[xs[i] for i in np.flatnonzero(chunks == c)] for c in pd.unique(chunks)]
    return batch_map(_reduce_chunk, xs=groups, more_args={"fun": fun, "init": init, "more_args": more_args or {},
                                                          "use_init": init is not None}, reg=reg)


def _apply_to_result(src_id, fun, src_store, more_args, **pars):
    return fun(src_store.get(src_id), **pars, **more_args)


def batch_map_results(fun: Callable, ids=None, *iterables: Iterable, more_args: dict | None = None,
                      target: RegistryState | None = None, reg: RegistryState | None = None,
                      **kwargs: Iterable) -> pd.DataFrame:
    """Map ``fun(result, ...)`` over results of ``reg`` (the source), defining jobs in ``target``.

    ``ids``: the source's jobs (default: those done). Jobs not done yet may be named: nothing is
    read when the jobs are defined, each reads its source result when it runs. Each new job waits
    for its source job as for a dependency (``submit_jobs(after=)``): submitted before that is
    done, it is held, and ``wait_for_jobs``/``sync_registry`` of ``target`` submit it once it is
    (reading the source registry, never writing it); a source job that failed, was never
    submitted or removed holds it with the reason ``dependency`` until it is resubmitted and done.
    ``target`` stores the source's folder for that (a later session honours it too).

    >>> import batchtools as bt
    >>> src = bt.make_registry(file_dir=None, make_default=False)
    >>> src.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: x * 10, x=[1, 2], reg=src); _ = bt.submit_jobs(reg=src)
    >>> target = bt.make_registry(file_dir=None, make_default=False)
    >>> target.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map_results(lambda r, k: r * k, k=[2, 3], target=target, reg=src)
    >>> _ = bt.submit_jobs(reg=target); bt.reduce_results_list(reg=target)
    [20, 60]

    Submitted before the source jobs ran, the new jobs wait for them:

    >>> src = bt.make_registry(file_dir=None, make_default=False)
    >>> src.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: x * 10, x=[1, 2], reg=src)
    >>> target = bt.make_registry(file_dir=None, make_default=False)
    >>> target.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map_results(lambda r: r + 1, ids=[1, 2], target=target, reg=src)
    >>> _ = bt.submit_jobs(reg=target); bt.find_held(reg=target)["job_id"].tolist()
    [1, 2]
    >>> _ = bt.submit_jobs(reg=src); bt.wait_for_jobs(reg=target)
    True
    >>> bt.reduce_results_list(reg=target)
    [11, 21]
    """
    source = resolve(reg)
    if not isinstance(target, RegistryState):
        raise TypeError("target: the registry to define the new jobs in is required (target=make_registry(...))")
    if target is source:
        raise ValueError("target: must be a different registry than the source")
    source.sync()
    src_ids = source.ids(ids)
    if ids is None:
        src_ids = src_ids[done_mask(source, src_ids)]
    missing = src_ids[~done_mask(source, src_ids)]
    if missing.size:  # defined now, read when they run: submit them once the source jobs are done
        log.info("batch_map_results: jobs %s of the source registry have no result yet; each new job reads its "
                 "result when it runs (one that runs before fails, naming it)", missing[:10].tolist())
    sig = _signature(fun)
    names = _positional_names(sig, len(iterables) + 1)[1:]
    mapped = dict(zip(names, iterables))
    mapped.update(kwargs)
    return _define_map(_apply_to_result, (), None,
                       {"fun": fun, "src_store": source.store, "more_args": more_args or {}}, target,
                       {"src_id": src_ids, **mapped}, extra={SOURCE: str(source.file_dir)})


