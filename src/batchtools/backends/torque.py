"""TORQUE / OpenPBS: ``qsub`` / ``qselect`` / ``qdel``, with array jobs (``-t``)."""

from __future__ import annotations

import getpass
import re

from ..core.backend import Capabilities, ClusterFunctions, SubmitJobResult, make_cluster_functions, restorable
from ..core.layout import Layout
from .commands import cf_handle_unknown_submit_error, cf_kill_job, run_os_command, temporary_error
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
        out = run_os_command("qsub", [cf_brew_template(reg, tmpl, jc, **extra)])
        if out["exit_code"] != 0:
            temp = temporary_error(out["output"], TEMP_ERRORS)
            return SubmitJobResult(1, None, None, temp) if temp else \
                cf_handle_unknown_submit_error("qsub", out["exit_code"], out["output"])
        batch = out["output"][0].strip() if out["output"] else ""
        if not batch:
            return cf_handle_unknown_submit_error("qsub", 0, out["output"])
        if jc.array_jobs:  # "123[].server" -> "123[1].server", ...
            tasks = range(1, len(jc.jobs) + 1)
            return SubmitJobResult(0, [batch.replace("[]", f"[{i}]") for i in tasks],
                                   [Layout.array_log_name(jc.job_hash, i) for i in tasks], "OK")
        return SubmitJobResult(0, batch, jc.log_file, "OK")

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
        path_check=check_path_allowed("/._-+,:=@~", "TORQUE"), capabilities=Capabilities(array_jobs=True, per_job_resources=True, gpus=True),
    )
