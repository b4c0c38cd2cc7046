"""The registry's tables: columnar pandas frames, one pickle each.

``status`` (one row per job) holds what happened to a job; times are float
seconds since the epoch (NaN = not yet) and are turned into ``Timestamp``s only
on output. Besides the times it holds the current ``attempt`` (1 for the first run; retries and
requeues count up), the scheduler's ``restart`` count within the current submission, and the
evidence of how the run ended (``reason``, ``signal``, ``max_rss`` in MiB, ``cpu_time`` in
seconds), the ``startup`` (seconds) of its collection or pool worker the job waited for just
before it started (kept out of its run time), what it used as the scheduler accounted it
(``elapsed`` seconds of its scheduler job, NaN without accounting) and on its GPUs (``gpu_mem``
MiB, ``gpu_util`` percent, where sampled), and its last sign of life (``progress_at``,
``progress``, ``progress_message``: what it last gave ``job.progress``), the jobs it waits for
(``after``: a sorted int64 array, None without dependencies; kept when a run is forgotten) and,
while it is held on them, when it was held (``held``) and its chunk (``hold_chunk``, see
:mod:`batchtools.core.dependencies`). ``defs`` holds what a
job computes (its layout is the kind's, see
:mod:`.kinds`). ``resources`` maps a
resource id to the resource dict used at submission; ``tags`` is (job_id, tag); ``attempts``
holds one row per earlier attempt of a job that ran again (see :mod:`.attempts`).

Columns exist only when used: a status column no job has a value in yet is one NaN (or None)
seen through a read-only zero-stride view (:func:`empty_column`), so 10,000,000 fresh jobs cost
their two id columns, not 25 columns of 80 MB; :func:`set_rows` gives a column its own array
when a value is first written into it. Every column is its own block (frames are built with
``copy=False``): an update replaces one column, never copies a consolidated block of all of
them. On disk (format 3, :func:`encode_table`) a table is a dict of its columns in which an
empty column is one value and an id column ``start, start + 1, ...`` is its start; older
registries hold pickled DataFrames, which :func:`decode_table` passes through.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .columns import TABLE_MARK, decode_columns, empty_column, is_encoded
from .files import read_table, table_error

STATUS_FLOAT = ("submitted", "started", "done", "mem_used", "resource_id", "attempt", "restart", "signal", "max_rss",
                "cpu_time", "startup", "elapsed", "gpu_mem", "gpu_util", "progress_at", "progress", "held", "hold_chunk")
STATUS_OBJECT = ("error", "batch_id", "log_file", "job_hash", "job_name", "reason", "progress_message",
                 "cached_from", "after")
# status columns that describe the job, not a run of it (kept when a run is forgotten)
STATUS_KEPT = ("job_name", "after")
TABLES = ("designs", "defs", "status", "resources", "tags", "attempts")
# the attempts table: one row per attempt that ended and was followed by another
ATTEMPT_FLOAT = ("attempt", "submitted", "started", "ended", "signal", "max_rss", "cpu_time", "resource_id")
ATTEMPT_OBJECT = ("batch_id", "reason", "error", "action")


def is_empty_view(arr: np.ndarray) -> bool:
    """Whether ``arr`` is an :func:`empty_column` (a column no job has a value in)."""
    return isinstance(arr, np.ndarray) and arr.ndim == 1 and arr.size >= 1 and arr.strides[0] == 0 and (
        arr[0] is None if arr.dtype == object else arr.dtype == float and np.isnan(arr[0]))


def null_mask(arr: np.ndarray) -> np.ndarray:
    """Which elements of ``arr`` are missing (NaN or None), without a scan for an empty column."""
    if is_empty_view(arr):
        return np.ones(arr.size, bool)
    return np.isnan(arr) if arr.dtype.kind == "f" else pd.isna(arr)


def frame(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """A frame of ``columns`` as they are: no copies, one block per column (object arrays stay
    object: pandas would scan them to infer a dtype)."""
    df = pd.DataFrame({c: pd.Series(a, dtype=object, copy=False) if isinstance(a, np.ndarray) and a.dtype == object
                       else a for c, a in columns.items()}, copy=False)
    if any(is_empty_view(a) for a in columns.values()):
        # pandas writes in place (st.loc[i, "done"] = t) into a block no other frame shares, and an
        # empty column is a read-only view
        return shallow_copy(df)
    return df


def shallow_copy(df: pd.DataFrame) -> pd.DataFrame:
    """A copy that shares ``df``'s arrays and, like :func:`frame`'s, gives a column an array of its
    own at its first in-place write (it keeps ``df`` alive, so pandas' copy-on-write sees the sharing;
    without it an in-place write would reach an empty column's read-only view)."""
    out = df.copy(deep=False)
    object.__setattr__(out, "_lean_base", df)
    return out


def new_status(job_ids: np.ndarray, def_ids: np.ndarray, repl: np.ndarray | None = None) -> pd.DataFrame:
    n = len(job_ids)
    cols: dict[str, np.ndarray] = {
        "job_id": np.asarray(job_ids, dtype=np.int64),
        "def_id": np.asarray(def_ids, dtype=np.int64),
    }
    if repl is not None:
        cols["repl"] = np.asarray(repl, dtype=np.int64)
    for c in STATUS_FLOAT:
        cols[c] = empty_column(n, float)
    for c in STATUS_OBJECT:
        cols[c] = empty_column(n, object)
    return frame(cols)


def append_rows(df: pd.DataFrame, more: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the rows of ``more`` (same columns) below: a column empty in both stays empty."""
    if not len(df):
        return more
    cols = {}
    for c in df.columns:
        a, b = df[c].to_numpy(), more[c].to_numpy()
        if is_empty_view(a) and is_empty_view(b) and a.dtype == b.dtype:
            cols[c] = empty_column(a.size + b.size, a.dtype)
        else:
            cols[c] = pd.concat([df[c], more[c]], ignore_index=True)
    return frame(cols)


def upgrade_status(df: pd.DataFrame) -> pd.DataFrame:
    """A status table written before some columns existed, with those columns (empty) added."""
    missing = [c for c in (*STATUS_FLOAT, *STATUS_OBJECT) if c not in df.columns]
    if not missing:
        return df
    cols = {c: df[c].to_numpy() for c in df.columns}
    cols.update({c: empty_column(len(df), float if c in STATUS_FLOAT else object) for c in missing})
    out = frame(cols)
    out.index = df.index
    return out


def _range_start(arr: np.ndarray) -> int | None:
    """``arr[0]`` if ``arr`` is ``arr[0], arr[0] + 1, ...`` (an id column), else None."""
    if arr.dtype != np.int64 or arr.size < 2 or arr[-1] - arr[0] != arr.size - 1:
        return None
    return int(arr[0]) if bool((np.diff(arr) == 1).all()) else None


def _all_missing(arr: np.ndarray) -> bool:
    """Whether ``arr`` (float: all NaN; object: all None) holds no value at all."""
    if arr.size < 1 or arr.dtype not in (float, object):
        return False
    if is_empty_view(arr):
        return True
    if arr.dtype == float:
        return bool(np.isnan(arr).all())
    # cheap probes first: a used column (batch ids, hashes) has a value at one of them
    # (a NaN among the Nones of an object column means the same, missing, and is saved as None)
    return all(arr[i] is None for i in (0, arr.size // 2, -1)) and bool(pd.isna(arr).all())


def encode_table(df: pd.DataFrame):
    """What :meth:`RegistryState.save` pickles for ``df``: ``{"format": TABLE_MARK, "n": rows,
    "columns": [(name, kind, payload)]}`` with kind ``"array"`` (the column's values),
    ``"empty"`` (payload: the dtype; every value NaN or None) or ``"range"`` (payload: the first of
    consecutive ints). A frame this cannot express exactly (an index other than 0..n-1, columns
    that are not unique strings) is pickled as it is."""
    index = df.index
    if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1) or \
            not df.columns.is_unique or not all(isinstance(c, str) for c in df.columns):
        return df
    cols = []
    for name in df.columns:
        s = df[name]
        if not isinstance(s.dtype, np.dtype):  # an extension dtype (categorical, ...): kept as is
            cols.append((name, "array", s.array))
            continue
        arr = s.to_numpy()
        if _all_missing(arr):
            cols.append((name, "empty", arr.dtype.str))
        elif (start := _range_start(arr)) is not None:
            cols.append((name, "range", start))
        else:
            cols.append((name, "array", np.ascontiguousarray(arr)))
    return {"format": TABLE_MARK, "n": len(df), "columns": cols}


def decode_table(obj):
    """The DataFrame :func:`encode_table` saved as ``obj`` (anything else: ``obj`` itself, as
    registries before format 3 pickled their tables)."""
    if not is_encoded(obj):
        return obj
    cols = decode_columns(obj)
    return frame(cols) if cols else pd.DataFrame(index=pd.RangeIndex(obj["n"]))


def read_frame(path, name: str, file_dir=None):
    """A registry file as :func:`~batchtools.core.persistence.files.read_table` reads it, a table of either
    format as a DataFrame; one that cannot be decoded raises CorruptFileError naming it."""
    obj = read_table(path, name, file_dir)
    try:
        return decode_table(obj)
    except Exception as e:
        raise table_error(path, name, f"cannot be read ({type(e).__name__}: {e})", file_dir) from e


def new_attempts() -> pd.DataFrame:
    """An empty attempts table."""
    cols: dict[str, np.ndarray] = {"job_id": np.empty(0, np.int64)}
    cols.update({c: np.empty(0, float) for c in ATTEMPT_FLOAT})
    cols.update({c: np.empty(0, object) for c in ATTEMPT_OBJECT})
    return pd.DataFrame(cols)


def set_rows(df: pd.DataFrame, pos: np.ndarray, column: str, values) -> None:
    """Assign ``values`` at row positions ``pos`` of ``column`` in place, vectorised (an empty
    column gets its own array only when a value is written into it)."""
    arr = df[column].to_numpy()
    if is_empty_view(arr) and np.ndim(values) == 0 and (values is None if arr.dtype == object else (
            isinstance(values, float) and np.isnan(values))):
        return  # empty it stays
    arr = np.array(arr)  # a copy of its own: the frame's arrays are read-only views
    arr[pos] = values
    # keep object columns object: pandas 3 would infer its str dtype and turn None into NaN
    df[column] = pd.Series(arr, index=df.index, dtype=object) if arr.dtype == object else arr


def to_timestamp(values: np.ndarray) -> pd.Series:
    return pd.to_datetime(pd.Series(values, dtype="float64"), unit="s", utc=True)


def tags_by_job(tags: pd.DataFrame, sel: np.ndarray) -> np.ndarray:
    """Comma-joined tags of each job id in ``sel`` (None where a job has no tag), from the tags table."""
    joined = tags[tags["job_id"].isin(sel)].groupby("job_id")["tag"].agg(",".join)
    lookup = dict(zip(joined.index.tolist(), joined.tolist()))
    out = np.empty(len(sel), dtype=object)
    out[:] = [lookup.get(i) for i in np.asarray(sel).tolist()]
    return out
