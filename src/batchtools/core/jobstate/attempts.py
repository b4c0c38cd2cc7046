"""The record of a job's attempts (master only).

The status table holds a job's current attempt (``attempt``, 1-based; ``restart``, the
scheduler's requeue count within the current submission) and the evidence of how it ended. When
an attempt is followed by another (a retry by reason, a requeue after a checkpoint or a
preemption, a pool job whose worker was lost) the ended attempt is copied to the ``attempts``
table first: job, attempt, batch id, submitted/started/ended times, ``reason``, error message,
signal, peak RSS, CPU time, resource id and the ``action`` taken (``retry``, ``requeue``,
``requeued``, ``worker_lost``). A new submission by the user (``submit_jobs``, ``submit_workers``)
and ``reset_jobs`` forget a job's earlier attempts, as they forget its earlier run: it starts at
attempt 1.

A retry is a resubmission: :func:`continuing` tells the submission which attempt each job starts.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd

from ..persistence.tables import ATTEMPT_FLOAT, ATTEMPT_OBJECT, new_attempts, set_rows

# evidence of one run: cleared when the next run of the same submission begins
RUN_FLOAT = ("started", "done", "mem_used", "signal", "max_rss", "cpu_time", "startup", "elapsed", "gpu_mem", "gpu_util",
             "progress_at", "progress")
RUN_OBJECT = ("error", "reason", "progress_message")


def table(reg) -> pd.DataFrame:
    t = reg.tables.get("attempts")
    if t is None:
        t = reg.tables["attempts"] = new_attempts()
    return t


def archive(reg, pos: np.ndarray, action: str, reason=None, ended=None) -> pd.DataFrame:
    """Copy the current attempt of the jobs at status rows ``pos`` to the attempts table (in
    memory), with ``reason`` (default: the status' reason) and ``ended`` (default: done, else now).
    Returns the rows added."""
    if pos.size == 0:
        return new_attempts()
    st = reg.status
    now = time.time()
    done = st["done"].to_numpy()[pos]
    rows = {"job_id": st["job_id"].to_numpy()[pos]}
    attempt = st["attempt"].to_numpy()[pos]
    rows["attempt"] = np.where(np.isnan(attempt), 1.0, attempt)
    for c in ("submitted", "started", "signal", "max_rss", "cpu_time", "resource_id"):
        rows[c] = st[c].to_numpy()[pos].astype(float)
    rows["ended"] = (np.where(np.isnan(done), now, done) if ended is None
                     else np.broadcast_to(np.asarray(ended, dtype=float), pos.shape).copy())
    rows["batch_id"] = st["batch_id"].to_numpy()[pos]
    rows["reason"] = st["reason"].to_numpy()[pos] if reason is None else np.broadcast_to(
        np.asarray(reason, dtype=object), pos.shape).copy()
    rows["error"] = st["error"].to_numpy()[pos]
    rows["action"] = np.full(pos.size, action, dtype=object)
    new = pd.DataFrame(rows)[list(new_attempts().columns)]
    for c in ATTEMPT_OBJECT:
        new[c] = new[c].astype(object)
    old = table(reg)
    reg.tables["attempts"] = pd.concat([old, new], ignore_index=True) if len(old) else new
    reg.mark_dirty("attempts")
    return new


def next_run(reg, pos: np.ndarray, restart: np.ndarray | float | None = None) -> None:
    """The jobs at ``pos`` go on in a new run of the same submission (a requeue): one attempt
    more, the run's evidence cleared, ``restart`` set (default: one more)."""
    if pos.size == 0:
        return
    st = reg.status
    attempt = st["attempt"].to_numpy()[pos]
    set_rows(st, pos, "attempt", np.where(np.isnan(attempt), 1.0, attempt) + 1)
    cur = st["restart"].to_numpy()[pos]
    cur = np.where(np.isnan(cur), 0.0, cur)
    set_rows(st, pos, "restart", cur + 1 if restart is None else restart)
    for c in RUN_FLOAT:
        set_rows(st, pos, c, np.nan)
    for c in RUN_OBJECT:
        set_rows(st, pos, c, None)
    reg.mark_dirty("status")


def drop(reg, ids) -> None:
    """Forget the attempts of ``ids`` (reset, removed jobs)."""
    t = table(reg)
    if len(t):
        hit = t["job_id"].isin(np.asarray(ids)).to_numpy()
        if hit.any():
            reg.tables["attempts"] = t.loc[~hit].reset_index(drop=True)
            reg.mark_dirty("attempts")


def unarchive(reg, rows: pd.DataFrame) -> None:
    """Take back rows :func:`archive` added (their resubmission was refused)."""
    if not len(rows):
        return
    t = table(reg)
    key = ["job_id", "attempt", "action"]
    merged = t.merge(rows[key].drop_duplicates(), on=key, how="left", indicator=True)
    reg.tables["attempts"] = t.loc[(merged["_merge"] == "left_only").to_numpy()].reset_index(drop=True)
    reg.mark_dirty("attempts")


@contextlib.contextmanager
def continuing(reg, attempts: dict[int, int]) -> Iterator[None]:
    """Within this block, a submission of job ``i`` starts attempt ``attempts[i]`` (a retry)
    instead of attempt 1."""
    reg.session.next_attempt = attempts
    try:
        yield
    finally:
        reg.session.next_attempt = None


def on_submitted(reg, pos: np.ndarray) -> None:
    """Record the attempt the accepted submissions at ``pos`` start (a retry's number, or 1 for
    a new submission, whose earlier attempts are forgotten)."""
    if pos.size == 0:
        return
    st = reg.status
    nxt = reg.session.next_attempt or {}
    ids = st["job_id"].to_numpy()[pos]
    fresh = [i for i in ids.tolist() if int(i) not in nxt]
    if fresh:
        drop(reg, fresh)
    set_rows(st, pos, "attempt", np.array([float(nxt.get(int(i), 1)) for i in ids.tolist()]) if nxt
             else np.ones(pos.size))
    set_rows(st, pos, "restart", 0.0)
    reg.mark_dirty("status")


def on_replayed(reg, pos: np.ndarray) -> None:
    """Submissions a dead session made, recorded from its journal: the attempt after the ones the
    attempts table holds (a retry), else 1."""
    if pos.size == 0:
        return
    st = reg.status
    t = table(reg)
    ids = st["job_id"].to_numpy()[pos]
    counts = t["job_id"].value_counts() if len(t) else pd.Series(dtype=np.int64)
    set_rows(st, pos, "attempt", np.array([1.0 + float(counts.get(int(i), 0)) for i in ids.tolist()]))
    set_rows(st, pos, "restart", 0.0)
    reg.mark_dirty("status")


def history(reg, ids: np.ndarray) -> pd.DataFrame:
    """Every attempt of ``ids``: the archived ones and the current one, by job and attempt."""
    t = table(reg)
    past = t[t["job_id"].isin(ids)]
    st = reg.status
    pos = reg.pos(ids)
    submitted = ~np.isnan(st["submitted"].to_numpy()[pos])
    pos = pos[submitted]
    attempt = st["attempt"].to_numpy()[pos]
    done = st["done"].to_numpy()[pos]
    cur = pd.DataFrame({
        "job_id": st["job_id"].to_numpy()[pos], "attempt": np.where(np.isnan(attempt), 1.0, attempt),
        "submitted": st["submitted"].to_numpy()[pos], "started": st["started"].to_numpy()[pos],
        "ended": done, "signal": st["signal"].to_numpy()[pos], "max_rss": st["max_rss"].to_numpy()[pos],
        "cpu_time": st["cpu_time"].to_numpy()[pos], "resource_id": st["resource_id"].to_numpy()[pos],
        "batch_id": st["batch_id"].to_numpy()[pos], "reason": st["reason"].to_numpy()[pos],
        "error": st["error"].to_numpy()[pos], "action": np.full(pos.size, None, dtype=object)})
    out = pd.concat([past, cur], ignore_index=True) if len(past) else cur
    out["job_id"] = out["job_id"].astype(np.int64)
    for c in ATTEMPT_FLOAT:
        out[c] = out[c].astype(float)
    return out.sort_values(["job_id", "attempt", "ended"], kind="stable", na_position="last").reset_index(drop=True)


def deaths(reg, ids: np.ndarray) -> list[list[str]]:
    """Per job of ``ids``: the reasons its attempts ended with, oldest first (the current one
    included once it ended)."""
    t = table(reg)
    past: dict[int, list[str]] = {}
    if len(t):
        sub = t[t["job_id"].isin(ids)].sort_values(["job_id", "attempt", "ended"], kind="stable")
        for job_id, reason in zip(sub["job_id"].tolist(), sub["reason"].tolist()):
            past.setdefault(int(job_id), []).append(reason or "unknown")
    st = reg.status
    pos = reg.pos(ids)
    reasons = st["reason"].to_numpy()[pos]
    ended = ~np.isnan(st["done"].to_numpy()[pos])
    out = []
    for k, job_id in enumerate(np.asarray(ids).tolist()):
        mine = list(past.get(job_id, []))
        if ended[k] and reasons[k] is not None:
            mine.append(reasons[k])
        out.append(mine)
    return out
