"""Columns as a table of format 3 saves them, without pandas (a node reads the status table's
job hashes through this): see :func:`batchtools.core.persistence.tables.encode_table`."""

from __future__ import annotations

from typing import Any

import numpy as np

# the marker of a table as format 3 saves it
TABLE_MARK = "batchtools-table"
_NAN = np.float64(np.nan)
_NONE = np.array(None, dtype=object)


def empty_column(n: int, dtype=float) -> np.ndarray:
    """``n`` NaN (float) or None (object) that take no memory: a read-only view of one value."""
    return np.broadcast_to(_NAN if np.dtype(dtype) == float else _NONE, (n,))


def is_encoded(obj: Any) -> bool:
    """Whether ``obj`` is a table as format 3 saves it (older formats pickled DataFrames)."""
    return isinstance(obj, dict) and obj.get("format") == TABLE_MARK


def decode_columns(obj: dict) -> dict[str, Any]:
    """The columns of the saved table ``obj`` (arrays; an extension array as it was saved)."""
    n = obj["n"]
    cols = {}
    for name, kind, payload in obj["columns"]:
        if kind == "empty":
            cols[name] = empty_column(n, np.dtype(payload))
        elif kind == "range":
            cols[name] = np.arange(payload, payload + n, dtype=np.int64)
        elif kind == "array":
            cols[name] = payload
        else:
            raise ValueError(f"unknown column kind {kind!r} of column {name!r}")
    return cols


def column(table: Any, name: str) -> np.ndarray:
    """Column ``name`` of a table as read from its file (either format) as an array."""
    return np.asarray(decode_columns(table)[name]) if is_encoded(table) else table[name].to_numpy()
