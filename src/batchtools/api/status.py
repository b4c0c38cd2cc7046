"""Status derivation: what the tables say plus what the scheduler says right now."""

from __future__ import annotations

import time
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from ..core.pool import pool_state
from ..core.registry import Registry, resolve


def on_system(reg: Registry) -> tuple[set[str], set[str]]:
    """(queued, running) batch ids as the backend reports them."""
    cf = reg.cluster_functions
    q, r = cf.list_on_system(reg) if cf is not None else (set(), set())
    pool = pool_state(reg)
    return pool.adjust(q, r) if pool is not None else (q, r)


def masks(reg: Registry, pos: np.ndarray | None = None, system: tuple[set, set] | None = None) -> dict[str, np.ndarray]:
    """Boolean arrays (over ``pos`` rows of the status table) for every state."""
    st = reg.status
    take = (lambda a: a) if pos is None else (lambda a: a[pos])
    submitted = ~np.isnan(take(st["submitted"].to_numpy()))
    started_t = ~np.isnan(take(st["started"].to_numpy()))
    done_t = ~np.isnan(take(st["done"].to_numpy()))
    error = take(st["error"].notna().to_numpy())
    done = done_t & ~error
    queued = np.zeros(submitted.size, bool)
    running = np.zeros(submitted.size, bool)
    candidates = np.flatnonzero(submitted & ~done_t)
    if candidates.size:
        q, r = on_system(reg) if system is None else system
        if q or r:
            batch = take(st["batch_id"].to_numpy())[candidates].astype(str)
            queued[candidates] = np.isin(batch, list(q)) if q else False
            running[candidates] = np.isin(batch, list(r)) if r else False
            queued &= ~running
    system_m = queued | running
    expired = submitted & ~done_t & ~system_m
    return {
        "submitted": submitted,
        "started": started_t | running,
        "done": done,
        "error": error,
        "queued": queued,
        "running": running,
        "expired": expired,
        "system": system_m,
        "terminated": done_t,
    }


def on_system_ids(reg: Registry) -> np.ndarray:
    m = masks(reg)
    return reg.job_ids[m["system"]]


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


def get_status(ids=None, reg: Registry | None = None) -> Status:
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
