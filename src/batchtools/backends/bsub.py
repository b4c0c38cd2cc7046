"""Shared chores of the ``bsub``-based schedulers (LSF, OpenLava): submit, list, kill."""

from __future__ import annotations

import getpass
import os
import re

from ..core.contract.backend import Capabilities, ClusterFunctions, SubmitJobResult, make_cluster_functions
from .commands import cf_handle_unknown_submit_error, cf_kill_job, first_number, run_os_command
from .templates import cf_brew_template, cf_read_brew_template, check_path_allowed, check_script_resources

NO_JOBS = re.compile(r"No (unfinished|pending|running) job found")


def lsf_listing(args: list[str]) -> list[str]:
    """Job ids from ``bjobs`` output (header line first); "No ... job found" means none."""
    out = run_os_command("bjobs", args)
    if out["exit_code"] != 0:
        if out["exit_code"] == 255 or any(NO_JOBS.search(line) for line in out["output"]):
            return []
        raise RuntimeError(f"Listing of jobs failed (bjobs exit {out['exit_code']}): {out['output'][-5:]}")
    if any(NO_JOBS.search(line) for line in out["output"]):
        return []
    return [n for n in (first_number([line]) for line in out["output"][1:]) if n]


def make_bsub_cluster_functions(name: str, template: str, scheduler_latency: float,
                                fs_latency: float) -> ClusterFunctions:
    """Submit with ``bsub < script`` ("Job <123> is submitted to queue <normal>.");
    ``bjobs -u USER -w -p`` / ``-r`` list queued / running jobs; ``bkill`` kills. No array jobs."""
    tmpl = cf_read_brew_template(template)
    user = getpass.getuser()
    os.environ["LSB_BJOBS_CONSISTENT_EXIT_CODE"] = "Y"

    def submit_job(reg, jc) -> SubmitJobResult:
        script = cf_brew_template(reg, tmpl, jc)
        out = run_os_command("bsub", [], stdin=script)
        batch = first_number(out["output"])
        if out["exit_code"] != 0 or batch is None:
            return cf_handle_unknown_submit_error("bsub", out["exit_code"], out["output"])
        return SubmitJobResult(0, batch, jc.log_file, "OK")

    return make_cluster_functions(
        name, submit_job, kill_job=lambda reg, b: cf_kill_job(reg, "bkill", [b]),
        list_jobs_queued=lambda reg: lsf_listing(["-u", user, "-w", "-p"]),
        list_jobs_running=lambda reg: lsf_listing(["-u", user, "-w", "-r"]),
        store_job_collection=True, store_job_files=True, scheduler_latency=scheduler_latency,
        fs_latency=fs_latency, poll=1.0, poll_max=30.0, resource_check=check_script_resources,
        path_check=check_path_allowed("/._-+,:=@~", name),
        # -W is in whole minutes
        capabilities=Capabilities(gpus=name == "LSF", walltime_unit=60),
    )
