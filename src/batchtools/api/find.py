"""``find_*``: job ids by state, parameters or tags. Each returns a DataFrame with ``job_id``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ..core.registry import Registry, resolve
from .status import masks


def ids_frame(ids: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"job_id": np.asarray(ids, dtype=np.int64)})


def _select(state: str, ids, reg: Registry | None, negate: bool = False, sync: bool = True) -> pd.DataFrame:
    reg = resolve(reg)
    if sync:
        reg.sync()
    sel = reg.ids(ids)
    pos = None if ids is None else reg.pos(sel)
    m = masks(reg, pos)[state]
    return ids_frame(sel[~m if negate else m])


def find_submitted(ids=None, reg: Registry | None = None) -> pd.DataFrame:
    """Jobs that were submitted."""
    return _select("submitted", ids, reg)


def find_not_submitted(ids=None, reg: Registry | None = None) -> pd.DataFrame:
    """Jobs never submitted (or reset)."""
    return _select("submitted", ids, reg, negate=True)


def find_started(ids=None, reg: Registry | None = None) -> pd.DataFrame:
    """Jobs that started (running, done or failed)."""
    return _select("started", ids, reg)


def find_not_started(ids=None, reg: Registry | None = None) -> pd.DataFrame:
    return _select("started", ids, reg, negate=True)


def find_done(ids=None, reg: Registry | None = None) -> pd.DataFrame:
    """Jobs that finished without error."""
    return _select("done", ids, reg)


def find_not_done(ids=None, reg: Registry | None = None) -> pd.DataFrame:
    """Jobs without a result: not finished yet, or failed."""
    return _select("done", ids, reg, negate=True)


def find_errors(ids=None, reg: Registry | None = None) -> pd.DataFrame:
    """Jobs that raised an exception."""
    return _select("error", ids, reg)


def find_on_system(ids=None, reg: Registry | None = None) -> pd.DataFrame:
    """Jobs queued or running according to the backend."""
    return _select("system", ids, reg)


def find_running(ids=None, reg: Registry | None = None) -> pd.DataFrame:
    return _select("running", ids, reg)


def find_queued(ids=None, reg: Registry | None = None) -> pd.DataFrame:
    return _select("queued", ids, reg)


def find_expired(ids=None, reg: Registry | None = None) -> pd.DataFrame:
    """Jobs submitted but neither done nor failed, and gone from the system."""
    return _select("expired", ids, reg)


def pars_frame(reg: Registry, ids: np.ndarray) -> pd.DataFrame:
    """``job_id`` plus one column per parameter (vectorised; for queries)."""
    if reg.kind == "experiment":
        from .experiments import experiment_pars_frame

        return experiment_pars_frame(reg, ids)
    pos = reg.pos(ids)
    cols = {c: a[pos] for c, a in map_columns(reg).items()}
    return pd.DataFrame({"job_id": ids, **cols})


def map_columns(reg: Registry) -> dict[str, np.ndarray]:
    """The parameter columns of a ``batch_map`` registry as arrays (rows aligned with ``status``)."""
    defs = reg.defs
    cache = reg.__dict__.get("_columns")
    if cache is None or cache[0] is not defs:
        cache = (defs, {c: defs[c].to_numpy() for c in defs.columns if c != "def_id"})
        reg.__dict__["_columns"] = cache
    return cache[1]


def pars_dicts(frame: pd.DataFrame) -> list[dict]:
    """Rows of a parameter frame as dicts of plain Python values (no ``job_id``)."""
    cols = [c for c in frame.columns if c != "job_id"]
    lists = [frame[c].tolist() for c in cols]
    return [dict(zip(cols, row)) for row in zip(*lists)] if cols else [{} for _ in range(len(frame))]


def pars_dicts_at(reg: Registry, ids: np.ndarray) -> list[dict]:
    """Parameter dicts of ``batch_map`` jobs, straight from the columns (no DataFrame)."""
    pos = reg.pos(ids)
    columns = map_columns(reg)
    cols = list(columns)
    lists = [columns[c][pos].tolist() for c in cols]
    return [dict(zip(cols, row)) for row in zip(*lists)] if cols else [{} for _ in range(len(ids))]


def filter_pars(frame: pd.DataFrame, expr: str | Callable, arg: str = "expr") -> np.ndarray:
    """Boolean mask over ``frame`` rows: a pandas query string or a callable on the parameter dict."""
    if isinstance(expr, str):
        try:
            hit = frame.eval(expr)
        except Exception as e:
            cols = [c for c in frame.columns]
            raise ValueError(f"{arg}: cannot evaluate {expr!r} ({type(e).__name__}: {e}); "
                             f"available columns: {cols}") from None
        hit = np.asarray(hit)
        if hit.dtype != bool or hit.shape != (len(frame),):
            raise ValueError(f"{arg}: {expr!r} must give one True/False per job, e.g. 'x > 5'")
        return hit
    if callable(expr):
        return np.fromiter((bool(expr(d)) for d in pars_dicts(frame)), dtype=bool, count=len(frame))
    raise TypeError(f"{arg}: must be a query string like 'x > 5' or a callable on the parameter dict")


def find_jobs(expr: str | Callable | None = None, ids=None, reg: Registry | None = None) -> pd.DataFrame:
    """Jobs whose parameters match ``expr``: a pandas query string over the
    parameter columns (``"x > 5 and y == 'a'"``) or a callable on the parameter dict.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> _ = bt.batch_map(lambda x: x, x=range(1, 11))
    >>> bt.find_jobs("x > 8")["job_id"].tolist()
    [9, 10]
    """
    reg = resolve(reg)
    sel = reg.ids(ids)
    if expr is None:
        return ids_frame(sel)
    frame = pars_frame(reg, sel)
    return ids_frame(sel[filter_pars(frame, expr)])


def find_tagged(tags, ids=None, reg: Registry | None = None) -> pd.DataFrame:
    """Jobs carrying any of ``tags``."""
    from .tags import check_tags

    reg = resolve(reg)
    tags = check_tags(tags)
    sel = reg.ids(ids)
    t = reg.tables["tags"]
    hit = np.unique(t.loc[t["tag"].isin(tags), "job_id"].to_numpy())
    return ids_frame(sel[np.isin(sel, hit)])
