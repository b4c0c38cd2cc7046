"""Normalisation of the ``ids`` argument every query and verb accepts."""

from __future__ import annotations

from collections.abc import Iterable
from numbers import Integral

import numpy as np
import pandas as pd


def as_id_array(ids, arg: str = "ids") -> np.ndarray:
    """Turn an int, an iterable of ints, a Series or a DataFrame with ``job_id`` into int64."""
    if isinstance(ids, pd.DataFrame):
        if "job_id" not in ids.columns:
            raise ValueError(
                f"{arg}: a DataFrame of ids needs a 'job_id' column; it has {list(ids.columns)}"
            )
        values = ids["job_id"].to_numpy()
    elif isinstance(ids, pd.Series):
        values = ids.to_numpy()
    elif isinstance(ids, (bool, np.bool_)):
        raise TypeError(f"{arg}: expected job ids (int or iterable of ints), got a bool")
    elif isinstance(ids, Integral):
        values = np.array([int(ids)], dtype=np.int64)
    elif isinstance(ids, np.ndarray):
        values = ids
    elif isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise TypeError(
            f"{arg}: expected job ids (int, iterable of ints, Series or DataFrame with 'job_id'), "
            f"got {type(ids).__name__}"
        )
    else:
        values = np.asarray(list(ids))
    try:
        values = np.asarray(values)
    except (ValueError, OverflowError) as e:
        raise ValueError(f"{arg}: cannot read job ids from {type(ids).__name__} ({e}); give a flat list of ints") \
            from None
    if values.ndim != 1:
        raise ValueError(f"{arg}: job ids must be one-dimensional (a flat list), got shape {values.shape}")
    if values.size == 0:
        return np.empty(0, dtype=np.int64)
    if values.dtype == bool or values.dtype.kind not in "iuf" and values.dtype != object:
        raise TypeError(f"{arg}: job ids must be integers, got values of type {values.dtype}")
    if values.dtype.kind == "f" or values.dtype == object:
        try:
            as_int = values.astype(np.int64)
        except OverflowError:
            raise ValueError(f"{arg}: job ids must be positive ints below 2**63, got {values[:3].tolist()}") from None
        except (TypeError, ValueError):
            raise TypeError(f"{arg}: job ids must be integers, got {values[:3].tolist()}") from None
        if not np.array_equal(as_int, values.astype(float)):
            raise TypeError(f"{arg}: job ids must be whole numbers, got {values[:3].tolist()}")
        values = as_int
    return values.astype(np.int64, copy=False)


def check_ids(all_ids: np.ndarray, ids: np.ndarray, arg: str = "ids", keep_order: bool = False) -> np.ndarray:
    """``ids`` sorted (or, with ``keep_order``, in the order given); raise ``ValueError`` on a
    duplicated id (as R's "Duplicated ids provided") or on ids that do not exist.

    >>> check_ids(np.array([1, 2, 3]), np.array([3, 1])).tolist()
    [1, 3]
    >>> check_ids(np.array([1, 2, 3]), np.array([3, 1]), keep_order=True).tolist()
    [3, 1]
    >>> check_ids(np.array([1, 2, 3]), np.array([2, 2]))
    Traceback (most recent call last):
    ...
    ValueError: ids: duplicated job id(s) 2; give each job once (e.g. drop_duplicates("job_id"))
    """
    uniq, counts = np.unique(ids, return_counts=True)
    if uniq.size != ids.size:
        dups = uniq[counts > 1]
        shown = ", ".join(map(str, dups[:10].tolist())) + (" ..." if dups.size > 10 else "")
        raise ValueError(f"{arg}: duplicated job id(s) {shown}; give each job once "
                         f"(e.g. drop_duplicates(\"job_id\"))")
    if uniq.size:
        pos = np.searchsorted(all_ids, uniq)
        pos_clipped = np.minimum(pos, max(all_ids.size - 1, 0))
        bad = (pos >= all_ids.size) | (all_ids[pos_clipped] != uniq) if all_ids.size else np.ones(uniq.size, bool)
        if bad.any():
            missing = uniq[bad]
            shown = ", ".join(map(str, missing[:10].tolist())) + (" ..." if missing.size > 10 else "")
            raise ValueError(
                f"{arg}: {missing.size} job id(s) do not exist in the registry: {shown}. "
                f"Use find_jobs() to list existing ids."
            )
    return ids.astype(np.int64, copy=True) if keep_order else uniq


def ids_frame(ids: np.ndarray) -> pd.DataFrame:
    """The DataFrame of job ids every ``find_*``-like function returns: one int64 ``job_id`` column."""
    return pd.DataFrame({"job_id": np.asarray(ids, dtype=np.int64)})
