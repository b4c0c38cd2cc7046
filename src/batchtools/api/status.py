"""``get_status``: job counts by state (derived in :mod:`batchtools.core.jobstate.state`)."""

from __future__ import annotations

import time

from ..core.jobstate.counts import Status
from ..core.jobstate.state import masks, state_counts
from ..core.persistence.tables import is_empty_view, null_mask
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
        pos, n, counts = None, len(reg.status), dict(state_counts(reg))
    else:
        pos = reg.pos(reg.ids(ids))
        n, counts = len(pos), {k: int(v.sum()) for k, v in masks(reg, pos).items() if k != "terminated"}
    cached = reg.status["cached_from"].to_numpy()
    if not is_empty_view(cached):  # a registry that never took a job from the cache: nothing to count
        counts["cached"] = int((~null_mask(cached if pos is None else cached[pos])).sum())
    return Status(defined=n, timestamp=time.time(), **counts)
