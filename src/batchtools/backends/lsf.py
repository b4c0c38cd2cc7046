"""IBM Spectrum LSF: ``bsub`` / ``bjobs`` / ``bkill``."""

from __future__ import annotations

from ..core.contract.backend import ClusterFunctions, restorable
from .bsub import make_bsub_cluster_functions


@restorable
def make_cluster_functions_lsf(template: str = "lsf", scheduler_latency: float = 1,
                               fs_latency: float = 65) -> ClusterFunctions:
    """Submit with ``bsub < script``; ``bjobs`` lists, ``bkill`` kills (shared with OpenLava in ``backends/bsub.py``).

    ``scheduler_latency``: seconds a new job may take to appear in the listing (it counts as queued
    meanwhile; no sleep after submitting) and seconds slept after killing; ``fs_latency``: seconds a
    job may be missing from the listing before it counts as expired (shared file system delay).
    """
    return make_bsub_cluster_functions("LSF", template, scheduler_latency, fs_latency)
