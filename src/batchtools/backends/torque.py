"""TORQUE: ``qsub`` / ``qselect`` / ``qdel``, with array jobs (``qsub -t``, ``PBS_ARRAYID``).

PBS Professional and OpenPBS name arrays ``-J`` (``PBS_ARRAY_INDEX``) and list jobs as JSON: that
is :mod:`.pbspro`, not this backend."""

from __future__ import annotations

import getpass
import re

from ..core.contract.backend import Capabilities, ClusterFunctions, SubmitJobResult, make_cluster_functions, restorable
from .commands import cf_kill_job, qsub_result, run_os_command
from .templates import cf_brew_template, cf_read_brew_template, check_path_allowed, check_script_resources

TEMP_ERRORS = ("Maximum number of jobs already in queue", "Resource temporarily unavailable",
               "Cannot connect to default server")


@restorable
def make_cluster_functions_torque(template: str = "torque", scheduler_latency: float = 1,
                                  fs_latency: float = 65) -> ClusterFunctions:
    """Submit with ``qsub``; ``qselect -s QW`` / ``-s EHRT`` list queued / running jobs; ``qdel`` kills.
    Array jobs use ``PBS_ARRAYID``; their batch ids are ``ID[i]``.

    ``scheduler_latency``: seconds a new job may take to appear in the listing (it counts as queued
    meanwhile; no sleep after submitting) and seconds slept after killing; ``fs_latency``: seconds a
    job may be missing from the listing before it counts as expired (shared file system delay).
    """
    tmpl = cf_read_brew_template(template)
    user = getpass.getuser()

    def submit_job(reg, jc) -> SubmitJobResult:
        extra = {"array_throttle": jc.resources.get("max_concurrent_jobs")} if jc.array_jobs else {}
        return qsub_result(run_os_command("qsub", [cf_brew_template(reg, tmpl, jc, **extra)]), jc, TEMP_ERRORS)

    def listing(states: str) -> list[str]:
        out = run_os_command("qselect", ["-u", user, "-s", states])
        if out["exit_code"] != 0:
            raise RuntimeError(f"Listing of jobs failed (qselect exit {out['exit_code']}): {out['output'][-5:]}")
        return [line.strip() for line in out["output"] if re.match(r"^\d", line.strip())]

    return make_cluster_functions(
        "Torque", submit_job, kill_job=lambda reg, b: cf_kill_job(reg, "qdel", [b]),
        list_jobs_queued=lambda reg: listing("QW"), list_jobs_running=lambda reg: listing("EHRT"),
        array_var="PBS_ARRAYID", store_job_collection=True, store_job_files=True,
        scheduler_latency=scheduler_latency, fs_latency=fs_latency, poll=1.0, poll_max=30.0,
        resource_check=check_script_resources,
        path_check=check_path_allowed("/._-+,:=@~", "TORQUE"), capabilities=Capabilities(array_jobs=True, gpus=True),
    )
