"""Job tables: status, resources, parameters, and all of it joined."""

from __future__ import annotations

import pandas as pd

from ..core.display import TimesFrame
from ..core.registry import RegistryState, resolve
from ..core.tables import tags_by_job, to_timestamp


def get_job_status(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """Per job: ``submitted``, ``started``, ``done`` (UTC Timestamps), ``error``,
    ``mem_used`` (peak memory in MB, with the ``measure_memory`` resource), ``batch_id``, ``log_file``, ``job_hash``, ``job_name``,
    ``time_queued`` and ``time_running`` (Timedeltas). Printed (and in Jupyter) the times are
    shown in local time, to the second."""
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
    return out


def get_job_resources(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """``job_id`` and the ``resources`` dict each job was submitted with (None if never)."""
    reg = resolve(reg)
    sel = reg.ids(ids)
    rid = reg.status["resource_id"].to_numpy()[reg.pos(sel)]
    res = reg.tables["resources"]
    lookup = dict(zip(res["resource_id"].tolist(), res["resources"].tolist()))
    return pd.DataFrame({"job_id": sel, "resources": [lookup.get(int(r)) if r == r else None for r in rid]})


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
    """Status, parameters, resources and tags of each job, in one DataFrame (times as in
    :func:`get_job_status`)."""
    reg = resolve(reg)
    out = get_job_status(ids, reg)
    sel = out["job_id"].to_numpy()
    pars = get_job_pars(sel, reg)
    pars = pars.drop(columns=[c for c in pars.columns if c in out.columns])
    res = get_job_resources(sel, reg)
    table = pd.concat([out, pars.reset_index(drop=True), res[["resources"]]], axis=1)
    return TimesFrame(table.assign(tags=pd.Series(tags_by_job(reg.tables["tags"], sel), dtype=object)))
