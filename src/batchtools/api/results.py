"""Loading and reducing results."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ..core.errors import CorruptFileError, ResultNotFoundError
from ..core.progress import progress
from ..core.registry import RegistryState, resolve
from ..core.state import done_mask

_RAISE = object()
log = logging.getLogger("batchtools")


def _selection(reg: RegistryState, ids) -> np.ndarray:
    """``ids``, default: the jobs that are done."""
    if ids is None:
        sel = reg.job_ids
        return sel[done_mask(reg, sel)]
    return reg.ids(ids)


def _results(reg: RegistryState, sel: np.ndarray, missing_val: Any, fun: Callable | None) -> list:
    if fun is not None and not callable(fun):
        raise TypeError(f"fun: must be callable (applied to each result) or None, got {type(fun).__name__} {fun!r}")
    done = done_mask(reg, sel)
    if missing_val is _RAISE and not done.all():
        bad = sel[~done]
        raise ValueError(
            f"ids: {bad.size} job(s) have no result (not done or failed), e.g. {bad[:5].tolist()}. "
            "Pass ids=find_done() or missing_val=None to fill them."
        )
    values = iter(_read_results(reg, sel[done], missing_val))
    out = []
    for ok in done.tolist():
        if ok:
            value = next(values)
            if fun is not None:
                value = fun(value)
        else:
            value = missing_val
        out.append(value)
    return out


def _read_results(reg: RegistryState, ids: np.ndarray, missing_val: Any) -> list:
    """Results of ``ids``; a corrupt one raises (naming file, job and remedy), or, with ``missing_val``
    given, counts as missing with a warning, so one bad file never hides the others."""
    try:
        out: list = []
        step = max(1, min(1000, ids.size // 200))  # a few hundred progress steps at most
        with progress(ids.size, "Loading results", unit="result", reg=reg) as bar:
            for a in range(0, ids.size, step):
                out.extend(reg.store.get_many(ids[a:a + step].tolist()))
                bar.update(min(step, ids.size - a))
        return out
    except CorruptFileError:
        if missing_val is _RAISE:
            raise
    out = []
    for job_id in ids.tolist():
        try:
            out.append(reg.store.get(job_id))
        except CorruptFileError as e:
            log.warning("%s; using missing_val for it", e)
            out.append(missing_val)
    return out


def load_result(id: int, reg: RegistryState | None = None) -> Any:
    """The result of job ``id``.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: x * 2, x=[21]); _ = bt.submit_jobs()
    >>> bt.load_result(1)
    42
    """
    reg = resolve(reg)
    reg.sync()
    sel = reg.ids(id, arg="id")
    if sel.size != 1:
        raise ValueError(f"id: expected exactly one job id, got {sel.size}")
    if not done_mask(reg, sel)[0]:
        state = "failed" if reg.status["error"].to_numpy()[reg.pos(sel)][0] is not None else "is not done"
        raise ResultNotFoundError(f"id: job {int(sel[0])} {state} and has no result; see find_done()")
    return reg.store.get(int(sel[0]))


def reduce_results_list(ids=None, fun: Callable | None = None, missing_val: Any = _RAISE,
                        reg: RegistryState | None = None) -> list:
    """Results of ``ids`` (default: all done jobs) as a list, ordered by job id;
    ``fun`` is applied to each. Jobs without a result raise, unless ``missing_val`` is given.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: x * 2, x=[1, 2]); _ = bt.submit_jobs()
    >>> bt.reduce_results_list()
    [2, 4]
    """
    reg = resolve(reg)
    reg.sync()
    return _results(reg, _selection(reg, ids), missing_val, fun)


def reduce_results(fun: Callable, ids=None, init: Any = _RAISE, reg: RegistryState | None = None) -> Any:
    """Fold results with ``fun(aggr, result)``, starting at ``init`` (default: the first result).

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: x, x=[1, 2, 3]); _ = bt.submit_jobs()
    >>> bt.reduce_results(lambda a, b: a + b)
    6
    """
    if not callable(fun):
        raise TypeError(f"fun: must be callable (aggr, result) -> aggr, got {type(fun).__name__}")
    results = reduce_results_list(ids, reg=reg)
    if init is _RAISE:
        if not results:
            raise ValueError("ids: no results to reduce and no init given")
        acc, rest = results[0], results[1:]
    else:
        acc, rest = init, results
    for r in rest:
        acc = fun(acc, r)
    return acc


def reduce_results_dataframe(ids=None, fun: Callable | None = None, missing_val: Any = _RAISE,
                             reg: RegistryState | None = None) -> pd.DataFrame:
    """Results as a DataFrame with ``job_id``: dict results become columns,
    DataFrame/Series results are stacked, anything else goes into a ``result`` column."""
    reg = resolve(reg)
    reg.sync()
    sel = _selection(reg, ids)
    results = _results(reg, sel, missing_val, fun)
    if results and all(isinstance(r, dict) for r in results):
        out = pd.DataFrame.from_records(results)
        out.insert(0, "job_id", sel)
        return out
    if results and all(isinstance(r, (pd.DataFrame, pd.Series)) for r in results):
        frames = [(r.to_frame().T if isinstance(r, pd.Series) else r).assign(job_id=i)
                  for i, r in zip(sel.tolist(), results)]
        out = pd.concat(frames, ignore_index=True)
        return out[["job_id"] + [c for c in out.columns if c != "job_id"]]
    return pd.DataFrame({"job_id": sel, "result": pd.Series(results, dtype=object) if results else []})
