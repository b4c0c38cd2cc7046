"""The registry's tables: columnar pandas frames, one pickle each.

``status`` (one row per job) holds what happened to a job; times are float
seconds since the epoch (NaN = not yet) and are turned into ``Timestamp``s only
on output. ``defs`` holds what a job computes: for ``batch_map`` one column per
mapped argument, so queries over parameters are vectorised. ``resources`` maps a
resource id to the resource dict used at submission; ``tags`` is (job_id, tag).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STATUS_FLOAT = ("submitted", "started", "done", "mem_used", "resource_id")
STATUS_OBJECT = ("error", "batch_id", "log_file", "job_hash", "job_name")
TABLES = ("designs", "defs", "status", "resources", "tags")


def new_status(job_ids: np.ndarray, def_ids: np.ndarray, repl: np.ndarray | None = None) -> pd.DataFrame:
    n = len(job_ids)
    cols: dict[str, np.ndarray] = {
        "job_id": np.asarray(job_ids, dtype=np.int64),
        "def_id": np.asarray(def_ids, dtype=np.int64),
    }
    if repl is not None:
        cols["repl"] = np.asarray(repl, dtype=np.int64)
    for c in STATUS_FLOAT:
        cols[c] = np.full(n, np.nan)
    for c in STATUS_OBJECT:
        cols[c] = np.full(n, None, dtype=object)
    return pd.DataFrame(cols)


def empty_tables(experiment: bool = False) -> dict[str, pd.DataFrame]:
    empty = np.empty(0, dtype=np.int64)
    extra = {}
    if experiment:
        # experiments: each distinct design row (problem or algorithm parameters) is stored once
        # in ``designs``; a definition points at one row of each, so queries run on unique rows
        defs = pd.DataFrame({"def_id": empty, "problem": np.empty(0, object), "algorithm": np.empty(0, object),
                             "prob_row": empty, "algo_row": empty})
        extra["designs"] = pd.DataFrame({"row_id": empty, "kind": np.empty(0, object), "name": np.empty(0, object),
                                         "pars": np.empty(0, object), "hash": np.empty(0, object)})
    else:
        defs = pd.DataFrame({"def_id": empty})
    return {
        **extra,
        "defs": defs,
        "status": new_status(empty, empty, empty if experiment else None),
        "resources": pd.DataFrame(
            {"resource_id": empty, "resource_hash": np.empty(0, object), "resources": np.empty(0, object)}
        ),
        "tags": pd.DataFrame({"job_id": empty, "tag": np.empty(0, dtype=object)}),
    }


def set_rows(df: pd.DataFrame, pos: np.ndarray, column: str, values) -> None:
    """Assign ``values`` at row positions ``pos`` of ``column`` in place, vectorised."""
    arr = df[column].to_numpy(copy=True)
    arr[pos] = values
    # keep object columns object: pandas 3 would infer its str dtype and turn None into NaN
    df[column] = pd.Series(arr, index=df.index, dtype=object) if arr.dtype == object else arr


def to_timestamp(values: np.ndarray) -> pd.Series:
    return pd.to_datetime(pd.Series(values, dtype="float64"), unit="s", utc=True)
