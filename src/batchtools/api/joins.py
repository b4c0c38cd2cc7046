"""Working with job tables: ``unwrap`` (dict columns into columns) and the joins on ``job_id``."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd


def _is_container(v) -> bool:
    return isinstance(v, (dict, list, tuple, np.ndarray, pd.Series, pd.DataFrame))


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _cell(value, col: str, row: int, sep: str | None) -> dict:
    """One cell as ``{column: value}``: a dict by its keys, a Series (R's named vector) by its
    index, a one-row DataFrame by its columns, a list/tuple/array (R's unnamed vector) as
    ``col.1``, ``col.2``, ..., any other value as ``col.1``; a missing cell as nothing.
    With ``sep``, named columns become ``<col><sep><name>`` and positional ones ``<col><sep><i>``."""
    if _is_missing(value):
        return {}
    if isinstance(value, pd.DataFrame):
        if len(value) > 1:
            raise ValueError(f"cols: row {row} of column {col!r} is a DataFrame of {len(value)} rows; unwrapping "
                             "it would give several rows (unwrap the rows of one-row frames only)")
        named = {} if value.empty else dict(zip(map(str, value.columns), value.iloc[0].tolist()))
    elif isinstance(value, pd.Series):
        named = dict(zip(map(str, value.index), value.tolist()))
    elif isinstance(value, dict):
        named = value
    else:
        if isinstance(value, np.ndarray):
            items = value.ravel().tolist()
        elif isinstance(value, (list, tuple)):
            items = value
        else:
            items = [value]
        return {f"{col}{sep or '.'}{i}": v for i, v in enumerate(items, 1)}
    return named if sep is None else {f"{col}{sep}{k}": v for k, v in named.items()}


def unwrap(df: pd.DataFrame, cols=None, sep: str | None = None) -> pd.DataFrame:
    """Expand columns of dicts, vectors and one-row frames (``job_pars``, ``prob_pars``,
    ``algo_pars``, ``resources``, a ``result`` column) into ordinary columns, as R's ``unwrap``.

    A dict cell gives one column per key; a Series (R's named vector) one per index label; a
    one-row DataFrame one per column; a list, tuple or array (R's unnamed vector) and any
    other value give ``<col>.1``, ``<col>.2``, ...; a missing cell gives missing values.
    ``cols=None`` expands every column that holds such containers (R's list columns; their
    other values become ``<col>.1``); a column of plain values only is expanded when named. With ``sep`` new columns are named ``<col><sep><key>``. A new column whose name
    is taken already is named ``<col>.<key>``. ``flatten`` is the same function (R's alias).

    >>> import pandas as pd
    >>> unwrap(pd.DataFrame({"job_id": [1], "job_pars": [{"x": 1, "y": "a"}]})).columns.tolist()
    ['job_id', 'x', 'y']
    >>> unwrap(pd.DataFrame({"job_id": [1, 2], "result": [[3, 30], 5]}), cols="result")
       job_id  result.1  result.2
    0       1         3      30.0
    1       2         5       NaN
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df: expected a DataFrame, got {type(df).__name__}")
    if sep is not None and not isinstance(sep, str):
        raise TypeError(f"sep: must be a string or None, got {type(sep).__name__}")
    if cols is None:  # the columns holding containers (R's list columns), whatever else they hold
        cols = [c for c in df.columns if df[c].dtype == object and len(df) and df[c].map(_is_container).any()]
    elif isinstance(cols, str):
        cols = [cols]
    else:
        cols = list(cols)
    for col in cols:
        if col not in df.columns:
            raise ValueError(f"cols: {col!r} is not a column; columns are {list(df.columns)}")
    out = df
    for col in cols:
        values = [_cell(v, str(col), row, sep) for row, v in enumerate(out[col].tolist(), 1)]
        wide = pd.DataFrame.from_records(values, index=out.index) if values else pd.DataFrame(index=out.index)
        clash = set(wide.columns) & (set(out.columns) - {col})
        if clash:
            wide.columns = [f"{col}.{k}" if k in clash else k for k in wide.columns]
        at = list(out.columns).index(col)
        left, right = out.iloc[:, :at], out.iloc[:, at + 1:]
        out = pd.concat([left, wide, right], axis=1)
    return out


flatten = unwrap


def _keys(x, y, by) -> tuple[list[str], list[str]]:
    """The key columns of ``x`` and of ``y``: ``by`` is a column name, a list of names (the same
    in both), a dict ``{x column: y column}`` (R's ``by = c("x.col" = "y.col")``), or None (R's
    guess: the columns both have)."""
    for name, d in (("x", x), ("y", y)):
        if not isinstance(d, pd.DataFrame):
            raise TypeError(f"{name}: expected a DataFrame, got {type(d).__name__}")
    if by is None:
        left = [c for c in x.columns if c in set(y.columns)]
        if not left:
            raise ValueError("by: x and y have no column in common; name the columns to join on, "
                             "e.g. by={'job_id': 'id'}")
        right = left
    elif isinstance(by, str):
        left = right = [by]
    elif isinstance(by, Mapping):
        left, right = [str(k) for k in by], [str(v) for v in by.values()]
    else:
        left = right = list(by)
    if not left:
        raise ValueError("by: give at least one column to join on")
    for name, d, cols in (("x", x, left), ("y", y, right)):
        missing = [b for b in cols if b not in d.columns]
        if missing:
            raise ValueError(f"{name}: has no column(s) {missing} to join on")
    return left, right


def _merge(x: pd.DataFrame, y: pd.DataFrame, how: str, left: list[str], right: list[str]) -> pd.DataFrame:
    """``x.merge(y)`` on ``left``/``right``, the key columns named as in ``x`` (as R)."""
    if left == right:
        return x.merge(y, on=left, how=how, sort=False)
    out = x.merge(y, left_on=left, right_on=right, how=how, sort=False, suffixes=("_x", "_y"))
    for lk, rk in zip(left, right):
        if lk != rk and rk in out.columns:
            filled = out[lk].where(out[lk].notna(), out[rk])
            try:
                filled = filled.astype(x[lk].dtype) if filled.notna().all() else filled
            except (TypeError, ValueError):
                pass
            out[lk] = filled
            out = out.drop(columns=rk)
    return out


def _join(x: pd.DataFrame, y: pd.DataFrame, how: str, by) -> pd.DataFrame:
    left, right = _keys(x, y, by)
    out = _merge(x, y, how, left, right)
    return out.sort_values(left, kind="stable").reset_index(drop=True) if how != "left" else out


def ijoin(x, y, by="job_id") -> pd.DataFrame:
    """Inner join: rows of ``x`` and ``y`` that match, all columns of both, sorted by the key.

    ``by`` (every join): a column name, a list of names, a dict ``{x column: y column}`` for keys
    named differently (R's ``by = c("job.id" = "id")``; the result keeps ``x``'s names), or None
    for the columns both have.

    >>> import pandas as pd
    >>> x = pd.DataFrame({"job_id": [1, 2, 3], "a": [10, 20, 30]})
    >>> ijoin(x, pd.DataFrame({"id": [3, 2], "b": ["u", "v"]}), by={"job_id": "id"})
       job_id   a  b
    0       2  20  v
    1       3  30  u
    """
    return _join(x, y, "inner", by)


def ljoin(x, y, by="job_id") -> pd.DataFrame:
    """Left join: all rows of ``x`` (in their order), with the columns of ``y`` where they match."""
    return _join(x, y, "left", by)


def rjoin(x, y, by="job_id") -> pd.DataFrame:
    """Right join: all rows of ``y``, with the columns of ``x`` where they match."""
    return _join(x, y, "right", by)


def ojoin(x, y, by="job_id") -> pd.DataFrame:
    """Outer join: rows of either."""
    return _join(x, y, "outer", by)


def _matches(x: pd.DataFrame, y: pd.DataFrame, by) -> np.ndarray:
    """Which rows of ``x`` have a match in ``y``."""
    left, right = _keys(x, y, by)
    keys = y[right].drop_duplicates().set_axis(left, axis=1).assign(_in_y=True)
    return x[left].merge(keys, on=left, how="left")["_in_y"].notna().to_numpy()


def sjoin(x, y, by="job_id") -> pd.DataFrame:
    """Semi join: rows of ``x`` with a match in ``y`` (columns of ``x`` only)."""
    return x[_matches(x, y, by)].reset_index(drop=True)


def ajoin(x, y, by="job_id") -> pd.DataFrame:
    """Anti join: rows of ``x`` without a match in ``y``."""
    return x[~_matches(x, y, by)].reset_index(drop=True)


def ujoin(x, y, all_y: bool = False, by="job_id") -> pd.DataFrame:
    """Update join, as R's: the rows of ``x`` that match ``y`` take ``y``'s values in the columns
    both have; with ``all_y=True`` the other columns of ``y`` are added too (missing where no row
    of ``y`` matches). Rows only in ``y`` are not added (use :func:`ojoin` for that).

    >>> import pandas as pd
    >>> x = pd.DataFrame({"job_id": [1, 2, 3], "a": [10, 20, 30]})
    >>> y = pd.DataFrame({"job_id": [2, 9], "a": [99, 0], "b": ["new", "gone"]})
    >>> ujoin(x, y, all_y=True)
       job_id   a    b
    0       1  10  NaN
    1       2  99  new
    2       3  30  NaN
    """
    if not isinstance(all_y, bool):
        raise TypeError("all_y: must be True or False")
    left, right = _keys(x, y, by)
    cols = [c for c in y.columns if c not in right and (all_y or c in x.columns)]
    out = x.copy()
    if not cols:
        return out
    ys = y.drop_duplicates(right, keep="last").reset_index(drop=True)
    keys = ys[right].set_axis(left, axis=1).assign(_row=np.arange(len(ys)))
    row = out[left].merge(keys, on=left, how="left")["_row"].to_numpy()
    hit = ~np.isnan(row)
    src = row[hit].astype(np.int64)
    for c in cols:
        if c in out.columns:
            merged = out[c].to_numpy(dtype=object, copy=True)
            merged[hit] = ys[c].to_numpy(dtype=object)[src]
            out[c] = pd.Series(merged, index=out.index, dtype=object).infer_objects()
        else:
            values = np.full(len(out), None, dtype=object)
            values[hit] = ys[c].to_numpy(dtype=object)[src]
            out[c] = pd.Series(values, index=out.index, dtype=object).infer_objects()
    return out
