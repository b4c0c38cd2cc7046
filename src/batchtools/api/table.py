"""Job tables: status, resources, parameters, and all of it joined."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.jobstate import attempts
from ..core.jobstate.resources import resources_by_id
from ..core.persistence.tables import is_empty_view, null_mask, tags_by_job, to_timestamp
from ..core.presentation.display import TimesFrame
from ..core.registry import RegistryState, resolve


def get_job_status(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """Per job: ``submitted``, ``started``, ``done`` (UTC Timestamps), ``error``,
    ``mem_used`` (peak memory in MB, with the ``measure_memory`` resource), ``batch_id``, ``log_file``, ``job_hash``, ``job_name``,
    ``time_queued`` and ``time_running`` (Timedeltas); ``attempt`` (1 for the first run, more
    after retries and requeues; see :func:`get_job_attempts`), ``reason`` (why the current
    attempt ended, if it did not succeed: ``error``, ``timeout``, ``memory``, ``node_fail``,
    ``preempted``, ``stalled``, ...; see :class:`RetryPolicy`), ``max_rss`` (peak resident
    memory in MiB) and ``cpu_time`` (Timedelta), from the scheduler's accounting where it has them
    and measured by the node otherwise; ``time_startup`` (Timedelta): the start-up of its chunk or
    pool worker the job waited for just before it started (the process starting, imports,
    loading its function, data, problem and algorithm; zero for the jobs after the first, unless
    they needed something not loaded yet), which is part of no job's ``time_running``;
    ``elapsed`` (Timedelta: how long the job's scheduler job ran, as the scheduler accounted it;
    missing without accounting), ``gpu_mem`` (peak MiB) and ``gpu_util`` (mean percent) where its
    GPUs were sampled; and its last progress report (``job.progress``): ``progress_at`` (UTC
    Timestamp), ``progress`` (the value) and ``progress_message``; ``cached_from``: for a job
    ``submit_jobs`` took from the shared cache, the registry and job its result came from
    (``<folder>:<job id>``); ``after``: the jobs it waits
    for (a list of ids, None without dependencies; see ``submit_jobs(after=)``) and ``held``
    (UTC Timestamp: since when it is held on them, missing unless it is; a job held on a
    dependency that failed or expired has the ``reason`` ``dependency``). Printed (and in Jupyter) the
    times are shown in local time, to the second."""
    reg = resolve(reg)
    reg.sync()
    sel = reg.ids(ids)
    st = reg.status.iloc[reg.pos(sel)].reset_index(drop=True)
    out = TimesFrame({"job_id": sel})
    for col in reg.definitions.status_columns:
        out[col] = st[col].to_numpy()
    for col in ("submitted", "started", "done"):
        out[col] = to_timestamp(st[col].to_numpy())
    out["error"] = st["error"].to_numpy()
    out["mem_used"] = st["mem_used"].to_numpy()
    for col in ("batch_id", "log_file", "job_hash", "job_name"):
        out[col] = st[col].to_numpy()
    out["time_queued"] = pd.to_timedelta(st["started"] - st["submitted"], unit="s")
    out["time_running"] = pd.to_timedelta(st["done"] - st["started"], unit="s")
    out["attempt"] = pd.array(np.where(np.isnan(st["attempt"].to_numpy()) & st["submitted"].notna().to_numpy(), 1,
                                       st["attempt"].to_numpy()), dtype="Int64")
    out["reason"] = st["reason"].to_numpy()
    out["max_rss"] = st["max_rss"].to_numpy()
    out["cpu_time"] = pd.to_timedelta(st["cpu_time"], unit="s")
    out["time_startup"] = pd.to_timedelta(st["startup"], unit="s")
    out["elapsed"] = pd.to_timedelta(st["elapsed"], unit="s")
    out["gpu_mem"] = st["gpu_mem"].to_numpy()
    out["gpu_util"] = st["gpu_util"].to_numpy()
    out["progress_at"] = to_timestamp(st["progress_at"].to_numpy())
    out["progress"] = st["progress"].to_numpy()
    out["progress_message"] = st["progress_message"].to_numpy()
    out["cached_from"] = st["cached_from"].to_numpy()
    out["after"] = pd.Series(_id_lists(st["after"].to_numpy()), dtype=object)
    out["held"] = to_timestamp(st["held"].to_numpy())
    return out


def _id_lists(cells: np.ndarray) -> np.ndarray:
    """The stored dependencies as lists of ints (None where a job has none)."""
    out = np.empty(cells.size, dtype=object)
    if not is_empty_view(cells):
        rows = np.flatnonzero(~null_mask(cells))
        out[rows] = [c.tolist() for c in cells[rows].tolist()]
    return out


def get_job_resources(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """``job_id`` and the ``resources`` dict each job was submitted with (None if never)."""
    reg = resolve(reg)
    sel = reg.ids(ids)
    return pd.DataFrame({"job_id": sel,
                         "resources": resources_by_id(reg, reg.status["resource_id"].to_numpy()[reg.pos(sel)])})


def get_job_pars(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """``job_id`` and ``job_pars`` (dict of the mapped arguments); for experiments
    ``problem``, ``prob_pars``, ``algorithm``, ``algo_pars`` and ``repl``.
    Expand the dicts into columns with :func:`unwrap`.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> _ = bt.batch_map(lambda x, y: x, x=[1, 2], y=["a", "b"])
    >>> bt.get_job_pars()["job_pars"].tolist()
    [{'x': 1, 'y': 'a'}, {'x': 2, 'y': 'b'}]
    """
    reg = resolve(reg)
    return reg.definitions.job_pars(reg.ids(ids))


def get_job_table(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """Status, parameters, resources and tags of each job, in one DataFrame (times, ``attempt``,
    ``reason``, ``max_rss``, ``cpu_time``, ``time_startup``, the last ``progress`` and what the
    scheduler accounted, as in :func:`get_job_status`), and ``deaths``: the
    reasons of every attempt that did not succeed, oldest first (``[]`` if none)."""
    reg = resolve(reg)
    out = get_job_status(ids, reg)
    sel = out["job_id"].to_numpy()
    out["deaths"] = pd.Series(attempts.deaths(reg, sel), dtype=object)
    pars = get_job_pars(sel, reg)
    pars = pars.drop(columns=[c for c in pars.columns if c in out.columns])
    res = get_job_resources(sel, reg)
    table = pd.concat([out, pars.reset_index(drop=True), res[["resources"]]], axis=1)
    return TimesFrame(table.assign(tags=pd.Series(tags_by_job(reg.tables["tags"], sel), dtype=object)))


def get_job_attempts(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """Every attempt of each job (default: all), oldest first: ``job_id``, ``attempt``,
    ``batch_id``, ``submitted``, ``started``, ``ended`` (UTC Timestamps), ``reason`` (why it
    ended, None for a success or a run still going), ``error``, ``signal``, ``max_rss`` (MiB),
    ``cpu_time`` (Timedelta), ``resources`` (what it was submitted with: a retry after a
    timeout shows the scaled walltime) and ``action`` (what followed: ``retry``, ``requeue``,
    ``requeued``, ``worker_lost``; None for the current attempt). The trace of retries and
    requeues.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: x, x=[1]); _ = bt.submit_jobs()
    >>> bt.get_job_attempts()[["job_id", "attempt", "reason", "action"]]
       job_id  attempt reason action
    0       1        1   None   None
    """
    reg = resolve(reg)
    reg.sync()
    sel = reg.ids(ids)
    h = attempts.history(reg, sel)
    out = TimesFrame({"job_id": h["job_id"].to_numpy(), "attempt": h["attempt"].astype(int).to_numpy(),
                      "batch_id": h["batch_id"].to_numpy()})
    for col in ("submitted", "started", "ended"):
        out[col] = to_timestamp(h[col].to_numpy())
    for col in ("reason", "error"):
        out[col] = pd.Series([v if isinstance(v, str) else None for v in h[col].tolist()], dtype=object)
    out["signal"] = pd.array(np.where(np.isnan(h["signal"].to_numpy()), np.nan, h["signal"].to_numpy()),
                             dtype="Int64") if len(h) else pd.array([], dtype="Int64")
    out["max_rss"] = h["max_rss"].to_numpy()
    out["cpu_time"] = pd.to_timedelta(h["cpu_time"].to_numpy(), unit="s")
    out["resources"] = pd.Series(resources_by_id(reg, h["resource_id"].tolist()),
                                 dtype=object)
    out["action"] = pd.Series([v if isinstance(v, str) else None for v in h["action"].tolist()], dtype=object)
    return out
