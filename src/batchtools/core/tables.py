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
``progress``, ``progress_message``: what it last gave ``job.progress``). ``defs`` holds what a
job computes (its layout is the kind's, see
:mod:`.kinds`). ``resources`` maps a
resource id to the resource dict used at submission; ``tags`` is (job_id, tag); ``attempts``
holds one row per earlier attempt of a job that ran again (see :mod:`.attempts`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STATUS_FLOAT = ("submitted", "started", "done", "mem_used", "resource_id", "attempt", "restart", "signal", "max_rss",
                "cpu_time", "startup", "elapsed", "gpu_mem", "gpu_util", "progress_at", "progress")
STATUS_OBJECT = ("error", "batch_id", "log_file", "job_hash", "job_name", "reason", "progress_message")
TABLES = ("designs", "defs", "status", "resources", "tags", "attempts")
# the attempts table: one row per attempt that ended and was followed by another
ATTEMPT_FLOAT = ("attempt", "submitted", "started", "ended", "signal", "max_rss", "cpu_time", "resource_id")
ATTEMPT_OBJECT = ("batch_id", "reason", "error", "action")


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


def upgrade_status(df: pd.DataFrame) -> pd.DataFrame:
    """A status table written before some columns existed, with those columns (empty) added."""
    missing = [c for c in (*STATUS_FLOAT, *STATUS_OBJECT) if c not in df.columns]
    if not missing:
        return df
    df = df.copy()
    for c in missing:
        df[c] = np.full(len(df), np.nan) if c in STATUS_FLOAT else pd.Series([None] * len(df), index=df.index,
                                                                               dtype=object)
    return df


def new_attempts() -> pd.DataFrame:
    """An empty attempts table."""
    cols: dict[str, np.ndarray] = {"job_id": np.empty(0, np.int64)}
    cols.update({c: np.empty(0, float) for c in ATTEMPT_FLOAT})
    cols.update({c: np.empty(0, object) for c in ATTEMPT_OBJECT})
    return pd.DataFrame(cols)


def set_rows(df: pd.DataFrame, pos: np.ndarray, column: str, values) -> None:
    """Assign ``values`` at row positions ``pos`` of ``column`` in place, vectorised."""
    arr = df[column].to_numpy(copy=True)
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
