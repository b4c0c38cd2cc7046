"""Loading and reducing results."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

from ..core.errors import CorruptFileError, ResultNotFoundError
from ..core.jobstate.resources import resources_by_id
from ..core.jobstate.state import done_mask
from ..core.presentation.progress import progress
from ..core.registry import RegistryState, resolve
from ..core.submission import build_collection
from ..node.runners import make_job

_RAISE = object()
log = logging.getLogger("batchtools")


def _selection(reg: RegistryState, ids, keep_order: bool = False) -> np.ndarray:
    """``ids`` (in the order given with ``keep_order``), default: the jobs that are done."""
    if ids is None:
        sel = reg.job_ids
        return sel[done_mask(reg, sel)]
    return reg.ids(ids, keep_order=keep_order)


def _takes_job(fun: Callable) -> bool:
    """Whether ``fun`` has a parameter named ``job`` (R: ``"job" %in% names(formals(fun))``)."""
    try:
        return "job" in inspect.signature(fun).parameters
    except (TypeError, ValueError):
        return False


def _with_job(fun: Callable) -> Callable:
    """``call(*values, job=job, **kwargs)``: calls ``fun`` with ``job`` matched by name wherever it
    stands and ``values`` given to its other positional parameters in order, as R matches a named
    argument before the positional ones: ``lambda job, aggr, res: ...`` and ``lambda aggr, res,
    job: ...`` both work."""
    try:
        params = list(inspect.signature(fun).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    at = positional.index("job") if "job" in positional else None

    def call(*values: Any, job: Any, **kwargs: Any) -> Any:
        if at is None or at >= len(values):  # job comes after the values (or is keyword-only)
            return fun(*values, job=job, **kwargs)
        return fun(*values[:at], job, *values[at:], **kwargs)

    return call


def _jobs(reg: RegistryState, sel: np.ndarray) -> Iterator:
    """The Job objects of ``sel`` (as ``make_job`` builds them, with each job's resources)."""
    jc = build_collection(reg, sel, {}, job_hash="reduce")
    for spec, res in zip(jc.jobs, resources_by_id(reg, reg.status["resource_id"].to_numpy()[reg.pos(sel)])):
        job = make_job(jc, spec)
        job.resources = dict(res or {})
        yield job


def _caller(reg: RegistryState, sel: np.ndarray, fun: Callable | None, kwargs: dict) -> Iterator[Callable]:
    """One ``apply(value) -> fun(value, [job=job,] **kwargs)`` per job of ``sel``, in order."""
    if fun is None:
        while True:
            yield lambda value: value
    elif _takes_job(fun):
        call = _with_job(fun)
        for job in _jobs(reg, sel):
            yield lambda value, job=job: call(value, job=job, **kwargs)
    else:
        while True:
            yield lambda value: fun(value, **kwargs)


def _check_fun(fun, what: str, kwargs: dict) -> None:
    if fun is not None and not callable(fun):
        raise TypeError(f"fun: must be callable {what} (or None), got {type(fun).__name__}")
    if fun is None and kwargs:
        raise TypeError(f"unexpected keyword argument(s) {sorted(kwargs)}: extra keyword arguments are passed "
                        "to fun, and no fun was given")


def _results(reg: RegistryState, sel: np.ndarray, missing_val: Any, fun: Callable | None,
             kwargs: dict | None = None) -> list:
    done = done_mask(reg, sel)
    if missing_val is _RAISE and not done.all():
        bad = sel[~done]
        raise ValueError(
            f"ids: {bad.size} job(s) have no result (not done or failed), e.g. {bad[:5].tolist()}. "
            "Pass ids=find_done() or missing_val=None to fill them."
        )
    values = _read_results(reg, sel[done], missing_val)
    if fun is None and done.all():
        return values
    values = iter(values)
    calls = _caller(reg, sel[done], fun, kwargs or {})
    out = []
    for ok in done.tolist():
        out.append(next(calls)(next(values)) if ok else missing_val)
    return out


def _read_results(reg: RegistryState, ids: np.ndarray, missing_val: Any) -> list:
    """Results of ``ids``; a corrupt or lost one raises (naming file, job and remedy), or, with
    ``missing_val`` given, counts as missing with a warning, so one bad file never hides the others."""
    try:
        out: list = []
        # about twenty progress steps, of at most 50,000 results: a store reads each step in one go
        # (a pack store opens each pack a step touches once, and shuffled chunks interleave ids: a
        # step reads a few records of every pack, at a cost per pack: steps of 10,000 of a million
        # results cost 0.2 s more than steps of 50,000)
        step = max(1, min(50_000, ids.size // 20))
        with progress(ids.size, "Loading results", unit="result", reg=reg) as bar:
            for a in range(0, ids.size, step):
                out.extend(reg.store.get_many(ids[a:a + step].tolist()))
                bar.update(min(step, ids.size - a))
        return out
    except (CorruptFileError, FileNotFoundError):  # a custom store says "lost" with FileNotFoundError
        if missing_val is _RAISE:
            raise
    out = []
    for job_id in ids.tolist():
        try:
            out.append(reg.store.get(job_id))
        except (CorruptFileError, FileNotFoundError) as e:
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
                        reg: RegistryState | None = None, **kwargs: Any) -> list:
    """Results of ``ids`` (default: all done jobs, by job id) as a list, in the order of ``ids``.

    ``fun(result, **kwargs)`` is applied to each (with ``job=job`` too if it has a parameter
    ``job``, matched by name wherever it stands, as R; extra keyword arguments are R's ``...``).
    Jobs without a result raise, unless ``missing_val`` is given.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: x * 2, x=[1, 2, 3]); _ = bt.submit_jobs()
    >>> bt.reduce_results_list()
    [2, 4, 6]
    >>> bt.reduce_results_list(ids=[3, 1], fun=lambda res, job, k: (job.id, res * k), k=10)
    [(3, 60), (1, 20)]
    """
    reg = resolve(reg)
    _check_fun(fun, "(result, [job], **kwargs) -> value", kwargs)
    reg.sync()
    return _results(reg, _selection(reg, ids, keep_order=True), missing_val, fun, kwargs)


def reduce_results(fun: Callable, ids=None, init: Any = _RAISE, reg: RegistryState | None = None,
                   **kwargs: Any) -> Any:
    """Fold results in the order of ``ids`` (default: all done jobs, by job id) with
    ``fun(aggr, result, **kwargs)`` (with ``job=job`` too if it has a parameter ``job``, matched
    by name wherever it stands, as R: ``lambda job, aggr, res: ...`` works), starting at ``init``
    (default: the first result). All jobs must be done; no jobs and no ``init`` give None.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: x, x=[1, 2, 3]); _ = bt.submit_jobs()
    >>> bt.reduce_results(lambda a, b: a + b)
    6
    >>> bt.reduce_results(lambda aggr, res, job: aggr + [job.id], ids=[3, 1], init=[])
    [3, 1]
    >>> bt.reduce_results(lambda job, aggr, res: aggr + [job.id], ids=[3, 1], init=[])
    [3, 1]
    >>> bt.reduce_results(lambda a, b: a + b, ids=[]) is None
    True
    """
    if not callable(fun):
        raise TypeError(f"fun: must be callable (aggr, result, [job], **kwargs) -> aggr, got {type(fun).__name__}")
    reg = resolve(reg)
    reg.sync()
    sel = _selection(reg, ids, keep_order=True)
    done = done_mask(reg, sel)
    if not done.all():
        bad = sel[~done]
        raise ValueError(f"ids: {bad.size} job(s) have no result (not done or failed), e.g. {bad[:5].tolist()}; "
                         "all jobs must be done to reduce them. Pass ids=find_done()")
    if sel.size == 0:
        return None if init is _RAISE else init
    results = _read_results(reg, sel, _RAISE)
    with_job = _takes_job(fun)
    jobs = _jobs(reg, sel) if with_job else None
    call = _with_job(fun) if with_job else fun
    if init is _RAISE:
        acc, start = results[0], 1
        if jobs is not None:
            next(jobs)
    else:
        acc, start = init, 0
    for r in results[start:]:
        acc = call(acc, r, job=next(jobs), **kwargs) if with_job else fun(acc, r, **kwargs)
    return acc


def reduce_results_dataframe(ids=None, fun: Callable | None = None, missing_val: Any = _RAISE,
                             reg: RegistryState | None = None, **kwargs: Any) -> pd.DataFrame:
    """Results as a DataFrame with ``job_id`` (sorted by job id, as R's ``reduceResultsDataTable``):
    dict results become columns, DataFrame/Series results are stacked, anything else goes into a
    ``result`` column. ``fun`` and ``**kwargs`` as in :func:`reduce_results_list`.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: {"sq": x * x}, x=[1, 2]); _ = bt.submit_jobs()
    >>> bt.reduce_results_dataframe(ids=[2, 1])["sq"].tolist()
    [1, 4]
    """
    reg = resolve(reg)
    _check_fun(fun, "(result, [job], **kwargs) -> value", kwargs)
    reg.sync()
    sel = _selection(reg, ids)
    results = _results(reg, sel, missing_val, fun, kwargs)
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
