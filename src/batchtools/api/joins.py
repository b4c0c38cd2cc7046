"""Working with job tables: ``unwrap`` (dict columns into columns) and the joins on ``job_id``."""

from __future__ import annotations

import pandas as pd


def unwrap(df: pd.DataFrame, cols=None, sep: str | None = None) -> pd.DataFrame:
    """Expand dict columns (``job_pars``, ``prob_pars``, ``algo_pars``, ``resources``,
    or a column of dict results) into one column per key.

    >>> import pandas as pd
    >>> unwrap(pd.DataFrame({"job_id": [1], "job_pars": [{"x": 1, "y": "a"}]})).columns.tolist()
    ['job_id', 'x', 'y']
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df: expected a DataFrame, got {type(df).__name__}")
    if cols is None:
        cols = [c for c in df.columns if df[c].dtype == object and len(df) and
                df[c].map(lambda v: isinstance(v, dict) or v is None).all() and df[c].map(lambda v: isinstance(v, dict)).any()]
    elif isinstance(cols, str):
        cols = [cols]
    out = df
    for col in cols:
        if col not in out.columns:
            raise ValueError(f"cols: {col!r} is not a column; columns are {list(out.columns)}")
        values = [v if isinstance(v, dict) else {} for v in out[col]]
        wide = pd.DataFrame.from_records(values, index=out.index)
        if sep is not None:
            wide.columns = [f"{col}{sep}{k}" for k in wide.columns]
        clash = set(wide.columns) & (set(out.columns) - {col})
        if clash:
            wide.columns = [f"{col}.{k}" if k in clash else k for k in wide.columns]
        at = list(out.columns).index(col)
        left, right = out.iloc[:, :at], out.iloc[:, at + 1:]
        out = pd.concat([left, wide, right], axis=1)
    return out


def _join(x: pd.DataFrame, y: pd.DataFrame, how: str, by) -> pd.DataFrame:
    for name, d in (("x", x), ("y", y)):
        if not isinstance(d, pd.DataFrame):
            raise TypeError(f"{name}: expected a DataFrame, got {type(d).__name__}")
    by = [by] if isinstance(by, str) else list(by)
    for name, d in (("x", x), ("y", y)):
        missing = [b for b in by if b not in d.columns]
        if missing:
            raise ValueError(f"{name}: has no column(s) {missing} to join on")
    out = x.merge(y, on=by, how=how, sort=False)
    return out.sort_values(by, kind="stable").reset_index(drop=True) if how != "left" else out


def ijoin(x, y, by="job_id") -> pd.DataFrame:
    """Inner join on ``job_id``."""
    return _join(x, y, "inner", by)


def ljoin(x, y, by="job_id") -> pd.DataFrame:
    """Left join: all rows of ``x``."""
    return _join(x, y, "left", by)


def rjoin(x, y, by="job_id") -> pd.DataFrame:
    """Right join: all rows of ``y``."""
    return _join(x, y, "right", by)


def ojoin(x, y, by="job_id") -> pd.DataFrame:
    """Outer join: rows of either."""
    return _join(x, y, "outer", by)


def sjoin(x, y, by="job_id") -> pd.DataFrame:
    """Semi join: rows of ``x`` with a match in ``y`` (columns of ``x`` only)."""
    by = [by] if isinstance(by, str) else list(by)
    keys = y[by].drop_duplicates()
    return x.merge(keys, on=by, how="inner")[list(x.columns)].reset_index(drop=True)


def ajoin(x, y, by="job_id") -> pd.DataFrame:
    """Anti join: rows of ``x`` without a match in ``y``."""
    by = [by] if isinstance(by, str) else list(by)
    keys = y[by].drop_duplicates().assign(_in_y=True)
    m = x.merge(keys, on=by, how="left")
    return m[m["_in_y"].isna()][list(x.columns)].reset_index(drop=True)


def ujoin(x, y, all_y: bool = False, by="job_id") -> pd.DataFrame:
    """Update join: values of ``y`` replace those of ``x`` in matching rows (and
    with ``all_y=True`` rows only in ``y`` are added)."""
    by = [by] if isinstance(by, str) else list(by)
    xi = x.set_index(by)
    yi = y.set_index(by)
    if not all_y:
        yi = yi[yi.index.isin(xi.index)]
    out = yi.combine_first(xi) if all_y else xi.copy()
    if not all_y:
        common = [c for c in yi.columns if c in xi.columns]
        out.loc[yi.index, common] = yi[common]
        for c in yi.columns:
            if c not in xi.columns:
                out[c] = yi[c]
    return out.reset_index()[list(dict.fromkeys(by + list(x.columns) + list(y.columns)))]
