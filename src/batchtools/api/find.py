"""``find_*``: job ids by state, parameters or tags. Each returns a DataFrame with ``job_id``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from ..core.checks import check_tags
from ..core.jobstate.ids import ids_frame
from ..core.jobstate.kinds import caller_scope
from ..core.jobstate.state import select
from ..core.registry import RegistryState, resolve


def _select(state: str, ids, reg: RegistryState | None, negate: bool = False) -> pd.DataFrame:
    reg = resolve(reg)
    reg.sync()
    return ids_frame(select(reg, state, None if ids is None else reg.ids(ids), negate))


def find_submitted(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """Jobs that were submitted."""
    return _select("submitted", ids, reg)


def find_not_submitted(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """Jobs never submitted (or reset)."""
    return _select("submitted", ids, reg, negate=True)


def find_started(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """Jobs that started (running, done or failed)."""
    return _select("started", ids, reg)


def find_not_started(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """Jobs that have not started: never submitted, or still queued."""
    return _select("started", ids, reg, negate=True)


def find_done(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """Jobs that finished without error."""
    return _select("done", ids, reg)


def find_not_done(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """Jobs without a result: not finished yet, or failed."""
    return _select("done", ids, reg, negate=True)


def find_errors(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """Jobs that raised an exception."""
    return _select("error", ids, reg)


def find_on_system(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """Jobs queued or running according to the backend."""
    return _select("system", ids, reg)


def find_running(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """Jobs running right now, as the backend lists them (corrected for the worker pool)."""
    return _select("running", ids, reg)


def find_queued(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """Jobs waiting on the system to start (in the scheduler's queue, or in a pool's queue
    while a worker lives)."""
    return _select("queued", ids, reg)


def find_expired(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """Jobs submitted but neither done nor failed, and gone from the system."""
    return _select("expired", ids, reg)


def find_held(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """Jobs submitted with dependencies not all done (``submit_jobs(after=)``): not handed to the
    backend yet. ``wait_for_jobs`` and ``sync_registry`` submit them once their dependencies are
    done; those whose dependency failed or expired have the reason ``dependency`` in
    :func:`get_job_table` until it is resubmitted.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: 1 / x, x=[0, 1])
    >>> _ = bt.submit_jobs(1)  # fails: 1 / 0
    >>> _ = bt.submit_jobs(2, after=1)
    >>> bt.find_held()["job_id"].tolist(), bt.get_job_table(2)["reason"].tolist()
    ([2], ['dependency'])
    """
    return _select("held", ids, reg)


def find_jobs(expr: str | Callable | None = None, ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """Jobs whose parameters match ``expr``: a pandas query string over the
    parameter columns (``"x > 5 and y == 'a'"``; ``@name`` is the caller's variable ``name``, R's
    ``findJobs(x == name)``) or a callable on the parameter dict.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> _ = bt.batch_map(lambda x: x, x=range(1, 11))
    >>> bt.find_jobs("x > 8")["job_id"].tolist()
    [9, 10]
    >>> limit = 9
    >>> bt.find_jobs("x >= @limit")["job_id"].tolist()
    [9, 10]
    """
    reg = resolve(reg)
    sel = reg.ids(ids)
    if expr is None:
        return ids_frame(sel)
    return ids_frame(reg.definitions.filter(sel, expr, scope=caller_scope()))


def find_tagged(tags, ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """Jobs carrying any of ``tags``."""
    reg = resolve(reg)
    tags = check_tags(tags)
    sel = reg.ids(ids)
    t = reg.tables["tags"]
    hit = np.unique(t.loc[t["tag"].isin(tags), "job_id"].to_numpy())
    return ids_frame(sel[np.isin(sel, hit)])
