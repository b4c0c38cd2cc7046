"""Defining jobs: ``batch_map`` (a persistent ``map``) and its relatives."""

from __future__ import annotations

import inspect
import os
import pickle
import sys
import sysconfig
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import cloudpickle
import numpy as np
import pandas as pd

from ..core.files import atomic_write_bytes
from ..core.registry import Registry, resolve
from ..core.tables import new_status


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


def _user_module(obj: Any):
    """The module of ``obj`` if it is the user's own code (not installed, not stdlib)."""
    mod = sys.modules.get(getattr(obj, "__module__", None) or "")
    file = getattr(mod, "__file__", None)
    if mod is None or mod.__name__ == "__main__" or not file:
        return None
    path = os.path.realpath(file)
    if "site-packages" in path or "dist-packages" in path:
        return None
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}
    roots.add(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))  # batchtools itself
    if any(path.startswith(os.path.realpath(r) + os.sep) for r in roots):
        return None
    return mod


def code_files(*funs: Any) -> dict[str, str]:
    """module -> source file of functions that will be pickled by value."""
    out = {}
    for fun in funs:
        code = getattr(fun, "__code__", None)
        module = getattr(fun, "__module__", None)
        if code is not None and module and (module == "__main__" or _user_module(fun) is not None):
            out[module] = code.co_filename
    return out


def dump_function(fun: Any, arg: str = "fun") -> bytes:
    """cloudpickle ``fun``; functions from the user's own modules (scripts, sibling
    files, notebooks) are pickled by value, so a node need not be able to import them."""
    mod = _user_module(fun)
    try:
        if mod is not None:
            cloudpickle.register_pickle_by_value(mod)
        return cloudpickle.dumps(fun, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        raise TypeError(
            f"{arg}: cannot be serialised with cloudpickle ({type(e).__name__}: {e}). "
            "Move objects like open files, locks or connections out of the function's closure."
        ) from e
    finally:
        if mod is not None:
            cloudpickle.unregister_pickle_by_value(mod)


def batch_map(fun: Callable, *iterables: Iterable, args=None, more_args: dict | None = None,
              reg: Registry | None = None, **kwargs: Iterable) -> pd.DataFrame:
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
    reg = resolve(reg)
    reg.assert_writeable("add jobs")
    if reg.kind != "map":
        raise TypeError("reg: batch_map needs a plain registry; use add_experiments() for experiment registries")
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
    fun_bytes = dump_function(fun)
    more_bytes = dump_function(dict(more_args), "more_args")
    ids = np.arange(1, n + 1, dtype=np.int64)
    defs = pd.DataFrame({"def_id": ids, **columns})
    # write function first: a crash before the tables are written leaves an empty registry
    atomic_write_bytes(reg.layout.user_function, fun_bytes)
    atomic_write_bytes(reg.layout.more_args, more_bytes)
    reg.positional = [p for p in positional if p in columns]
    reg.pass_job = pass_job
    reg.extra = {**reg.extra, "code_files": code_files(fun)}
    reg.defs = defs
    reg.status = new_status(ids, ids)
    reg.save()
    return pd.DataFrame({"job_id": ids})


def _reduce_chunk(xs, fun, init, more_args, use_init):
    from functools import reduce

    call = (lambda a, b: fun(a, b, **more_args)) if more_args else fun
    return reduce(call, xs, init) if use_init else reduce(call, xs)


def batch_reduce(fun: Callable, xs: Iterable, init: Any = None, chunks=None, more_args: dict | None = None,
                 reg: Registry | None = None) -> pd.DataFrame:
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


def _apply_to_result(src_id, fun, src_dir, more_args, **pars):
    from ..core.files import Layout, read_pickle

    return fun(read_pickle(Layout(src_dir).result(src_id)), **pars, **more_args)


def batch_map_results(fun: Callable, ids=None, *iterables: Iterable, more_args: dict | None = None,
                      target: Registry | None = None, reg: Registry | None = None,
                      **kwargs: Iterable) -> pd.DataFrame:
    """Map ``fun(result, ...)`` over results of ``reg`` (the source), defining jobs in ``target``.

    >>> import batchtools as bt  # doctest: +SKIP
    >>> bt.batch_map_results(lambda r, k: r * k, k=[2, 3], target=other_reg, reg=src)  # doctest: +SKIP
    """
    from .find import find_done

    source = resolve(reg)
    if not isinstance(target, Registry):
        raise TypeError("target: the registry to define the new jobs in is required (target=make_registry(...))")
    if target is source:
        raise ValueError("target: must be a different registry than the source")
    src_ids = find_done(ids, reg=source)["job_id"].to_numpy() if ids is None else source.ids(ids)
    missing = np.setdiff1d(src_ids, find_done(src_ids, reg=source)["job_id"].to_numpy())
    if missing.size:
        raise ValueError(f"ids: jobs {missing[:10].tolist()} of the source registry have no result yet")
    sig = _signature(fun)
    names = _positional_names(sig, len(iterables) + 1)[1:]
    mapped = dict(zip(names, iterables))
    mapped.update(kwargs)
    return batch_map(_apply_to_result, src_id=src_ids, **mapped,
                     more_args={"fun": fun, "src_dir": str(source.file_dir), "more_args": more_args or {}},
                     reg=target)


def _bt_run(reg: Registry, resources, n_chunks, chunk_size) -> list:
    from .chunking import chunk as chunk_ids
    from .results import reduce_results_list
    from .submit import submit_jobs
    from .wait import wait_for_jobs

    ids = reg.status[["job_id"]].copy()
    if n_chunks is not None or chunk_size is not None:
        ids["chunk"] = chunk_ids(ids["job_id"], n_chunks=n_chunks, chunk_size=chunk_size, shuffle=False)
    submit_jobs(ids, resources=resources, reg=reg)
    if not wait_for_jobs(reg=reg):
        from .logs import get_error_messages

        errs = get_error_messages(reg=reg)
        raise RuntimeError(f"{len(errs)} job(s) failed; first error: {errs['message'].iloc[0] if len(errs) else '?'}")
    return reduce_results_list(reg=reg)


def btlapply(X: Iterable, fun: Callable, more_args: dict | None = None, resources: dict | None = None,
             n_chunks: int | None = None, chunk_size: int | None = None, reg: Registry | None = None) -> list:
    """``[fun(x, **more_args) for x in X]`` computed as batch jobs, blocking until done.

    Uses a temporary registry unless ``reg`` is given.

    >>> import batchtools as bt
    >>> bt.btlapply([1, 2, 3], lambda x: x * 2)
    [2, 4, 6]
    """
    from .registry import make_registry

    if reg is None:
        reg = make_registry(file_dir=None, make_default=False)
    batch_map(fun, X, more_args=more_args, reg=reg)
    return _bt_run(reg, resources, n_chunks, chunk_size)


def btmapply(fun: Callable, *iterables: Iterable, more_args: dict | None = None, resources: dict | None = None,
             n_chunks: int | None = None, chunk_size: int | None = None, reg: Registry | None = None,
             **kwargs: Iterable) -> list:
    """Like :func:`btlapply`, over several iterables: ``[fun(a, b) for a, b in zip(A, B)]``.

    >>> import batchtools as bt
    >>> bt.btmapply(lambda a, b: a + b, [1, 2], [10, 20])
    [11, 22]
    """
    from .registry import make_registry

    if reg is None:
        reg = make_registry(file_dir=None, make_default=False)
    batch_map(fun, *iterables, more_args=more_args, reg=reg, **kwargs)
    return _bt_run(reg, resources, n_chunks, chunk_size)
