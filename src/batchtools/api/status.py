"""``get_status``: job counts by state (derived in :mod:`batchtools.core.jobstate.state`)."""

from __future__ import annotations

import time

from ..core.jobstate.counts import Status
from ..core.jobstate.state import masks, state_counts
from ..core.registry import RegistryState, resolve


def get_status(ids=None, reg: RegistryState | None = None) -> Status:
    """Summarise the jobs' states (of ``ids``, default all; syncs first): a :class:`Status`.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> _ = bt.batch_map(lambda x: x, x=[1, 2])
    >>> bt.get_status().submitted
    0
    >>> print(bt.get_status())  # doctest: +ELLIPSIS
    Status for 2 jobs at ...:
      Submitted    : 0 (  0.0%)
      -- Queued    : 0 (  0.0%)
      -- Started   : 0 (  0.0%)
      ---- Running : 0 (  0.0%)
      ---- Done    : 0 (  0.0%)
      ---- Error   : 0 (  0.0%)
      ---- Expired : 0 (  0.0%)
    """
    reg = resolve(reg)
    reg.sync()
    if ids is None:
        return Status(defined=len(reg.status), timestamp=time.time(), **state_counts(reg))
    pos = reg.pos(reg.ids(ids))
    counts = {k: int(v.sum()) for k, v in masks(reg, pos).items() if k != "terminated"}
    return Status(defined=len(pos), timestamp=time.time(), **counts)
