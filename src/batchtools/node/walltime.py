"""A pool worker's walltime: which jobs still fit in the time it has left.

A worker submitted with a ``walltime`` never claims a job whose estimated run time exceeds what
is left of it (with a safety factor and margin), and leaves (drains) once no job it could claim
fits; a pool that heals itself (``submit_workers(..., heal=True)``) replaces it with a fresh
worker. Estimates come with the queued jobs (``submit_workers(ids=estimate_runtimes(...))``);
a job without one is estimated by the longest job this worker has run.

>>> b = TimeBudget({"walltime": 60}, start=0.0, now=lambda: 30.0)
>>> b.fits(lambda q, i: [10.0, 40.0][i])("q", 0, 0.0), b.fits(lambda q, i: [10.0, 40.0][i])("q", 1, 0.0)
(11.0, None)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from .checkpoint import process_start

SAFETY = 1.1  # estimates are estimates
MARGIN = 2.0  # seconds: starting a job, writing its result


class TimeBudget:
    def __init__(self, resources: dict, start: float | None = None, now: Callable[[], float] = time.time):
        walltime = resources.get("walltime")
        self.deadline = (process_start() if start is None else start) + walltime if walltime else None
        self.now = now
        self.longest = 0.0

    def observe(self, took: float) -> None:
        self.longest = max(self.longest, took)

    def left(self) -> float:
        return math.inf if self.deadline is None else self.deadline - self.now()

    def fits(self, estimate: Callable[[str, int], float]) -> Callable[[str, int, float], float | None]:
        """The ``fits`` function of :meth:`batchtools.core.workerpool.claims.ClaimLog.claim`."""

        def fits(queue: str, index: int, before: float) -> float | None:
            est = estimate(queue, index)
            if est is None or est != est:
                est = self.longest
            used = before + est * SAFETY
            return used if used + MARGIN <= self.left() else None

        return fits
