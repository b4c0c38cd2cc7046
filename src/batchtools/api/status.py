"""``get_status``: job counts by state (derived in :mod:`batchtools.core.state`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, fields

import pandas as pd

from ..core.registry import RegistryState, resolve
from ..core.state import masks


@dataclass
class Status:
    """Job counts by state. ``str(status)`` prints batchtools' familiar summary."""

    defined: int
    submitted: int
    started: int
    done: int
    error: int
    queued: int
    running: int
    expired: int
    system: int
    timestamp: float = 0.0

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "timestamp"}

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([self.to_dict()])

    def __getitem__(self, key: str) -> int:
        return self.to_dict()[key]

    def __str__(self) -> str:
        n = self.defined
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.timestamp))
        width = len(str(n))

        def line(label: str, k: int) -> str:
            pct = 100.0 * k / n if n else 0.0
            return f"  {label:<13}: {k:>{width}} ({pct:5.1f}%)"

        return "\n".join([
            f"Status for {n} jobs at {when}:",
            line("Submitted", self.submitted),
            line("-- Queued", self.queued),
            line("-- Started", self.started),
            line("---- Running", self.running),
            line("---- Done", self.done),
            line("---- Error", self.error),
            line("---- Expired", self.expired),
        ])

    def _repr_pretty_(self, p, cycle) -> None:  # IPython
        p.text(str(self))


def get_status(ids=None, reg: RegistryState | None = None) -> Status:
    """Summarise the jobs' states (syncs first).

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> _ = bt.batch_map(lambda x: x, x=[1, 2])
    >>> bt.get_status().submitted
    0
    """
    reg = resolve(reg)
    reg.sync()
    pos = None if ids is None else reg.pos(reg.ids(ids))
    m = masks(reg, pos)
    n = len(reg.status) if pos is None else len(pos)
    counts = {k: int(v.sum()) for k, v in m.items() if k != "terminated"}
    return Status(defined=n, timestamp=time.time(), **counts)
