"""What ended jobs used, as the scheduler accounted it: asked once per poll, kept in the status table.

A backend whose scheduler answers for many jobs in one call (``ClusterFunctions.usage``: Slurm's
``sacct``) is asked once per poll of ``wait_for_jobs`` (and by ``sync_registry``) about the jobs
that ended and are not accounted yet, at most :data:`MAX_PER_CALL` of them, the latest first.
For a job alone in its scheduler job, the scheduler's word replaces the node's measurement:
``elapsed`` (how long the scheduler job ran, start-up included), ``max_rss`` (MiB, the largest
over its steps), ``cpu_time`` (all steps) and, where the scheduler samples GPUs, ``gpu_mem`` and
``gpu_util``. (``usage`` answers only for scheduler jobs that ended: ``sacct`` may list a job
that ended a moment ago as still running.) The jobs of a chunk share one scheduler job, whose use is the chunk's, not a job's:
they keep the node's measurement of each job. A job the scheduler does not list as ended yet
(accounting lags a little behind) is asked about again at later polls, until
:data:`ASK_FOR` seconds after it ended; a scheduler that keeps no accounting (``usage``
answers None) is not asked again in this session.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from ..persistence.tables import set_rows

log = logging.getLogger("batchtools")
ASK_FOR = 300.0  # seconds after a job ended during which the scheduler is asked about it again
MAX_PER_CALL = 1000  # jobs asked about in one call (a command line of batch ids)


def record_usage(reg, now: float | None = None) -> int:
    """Ask the scheduler (one call) what the ended, not yet accounted jobs used, and record it.
    Returns the number of jobs recorded. Never raises: accounting is evidence, not a duty."""
    cf = reg.cluster_functions
    if cf is None or cf.usage is None or not reg.writeable:
        return 0
    memo = reg.session  # whether the scheduler keeps accounting, the jobs given up on
    if memo.usage_off:
        return 0
    st = reg.status
    done = st["done"].to_numpy()
    rows = np.flatnonzero(~np.isnan(done) & np.isnan(st["elapsed"].to_numpy()) & st["batch_id"].notna().to_numpy())
    if rows.size and memo.usage_given_up.size:
        rows = rows[~np.isin(st["job_id"].to_numpy()[rows], memo.usage_given_up)]
    if rows.size == 0:
        return 0
    now = time.time() if now is None else now
    batch = st["batch_id"].to_numpy()
    shared = pd.Series(batch).value_counts()
    shared = shared[shared > 1]
    lone = ~pd.Series(batch[rows]).isin(shared.index).to_numpy()
    give_up = [st["job_id"].to_numpy()[rows[~lone]]]  # jobs of chunks: the scheduler's use is the chunk's
    rows = rows[lone]
    rows = rows[np.argsort(-done[rows], kind="stable")][:MAX_PER_CALL]
    recorded = 0
    if rows.size:
        ids = [str(b) for b in batch[rows].tolist()]
        try:
            found = cf.usage(reg, ids)
        except Exception as e:
            log.info("the scheduler's accounting did not answer (%s); keeping the nodes' measurements", e)
            found = {}
        if found is None:  # the scheduler keeps no accounting
            memo.usage_off = True
            return 0
        got = np.array([found.get(b) is not None and found[b].elapsed == found[b].elapsed for b in ids], bool)
        if got.any():
            _record(st, rows[got], [found[b] for b, g in zip(ids, got) if g])
            reg.mark_dirty("status")
            recorded = int(got.sum())
        late = ~got & (now - done[rows] > ASK_FOR)
        give_up.append(st["job_id"].to_numpy()[rows[late]])
    memo.usage_given_up = np.union1d(memo.usage_given_up, np.concatenate(give_up))
    return recorded


def _record(st, rows: np.ndarray, accounts: list) -> None:
    for col in ("elapsed", "max_rss", "cpu_time", "gpu_mem", "gpu_util"):
        values = np.array([getattr(a, col) for a in accounts], float)
        ok = ~np.isnan(values)
        if ok.any():
            set_rows(st, rows[ok], col, values[ok])
