"""Grid Engine (SGE, Son of Grid Engine, Univa): ``qsub`` / ``qstat`` / ``qdel``."""

from __future__ import annotations

import getpass

from ..core.backend import Capabilities, ClusterFunctions, SubmitJobResult, make_cluster_functions, restorable
from .commands import cf_handle_unknown_submit_error, cf_kill_job, first_number, run_os_command
from .templates import cf_brew_template, cf_read_brew_template, check_path_chars, check_script_resources


@restorable
def make_cluster_functions_sge(template: str = "sge", nodename: str = "localhost", scheduler_latency: float = 1,
                               fs_latency: float = 65) -> ClusterFunctions:
    """Submit with ``qsub`` (the id is the first number of "Your job 123 (...) has been submitted");
    ``qstat -u USER -s p`` / ``-s rs`` list queued / running jobs; ``qdel`` kills. No array jobs.

    ``scheduler_latency``: seconds to sleep after submitting or killing; ``fs_latency``: seconds a
    job may be missing from the listing before it counts as expired (shared file system delay).
    """
    tmpl = cf_read_brew_template(template)
    user = getpass.getuser()

    def submit_job(reg, jc) -> SubmitJobResult:
        out = run_os_command("qsub", [cf_brew_template(reg, tmpl, jc)], nodename=nodename)
        batch = first_number(out["output"])
        if out["exit_code"] != 0 or batch is None:
            return cf_handle_unknown_submit_error("qsub", out["exit_code"], out["output"])
        return SubmitJobResult(0, batch, jc.log_file, "OK")

    def listing(states: str) -> list[str]:
        out = run_os_command("qstat", ["-u", user, "-s", states], nodename=nodename)
        if out["exit_code"] != 0:
            raise RuntimeError(f"Listing of jobs failed (qstat exit {out['exit_code']}): {out['output'][-5:]}")
        # two header lines, then one job per line starting with its number
        return [n for n in (first_number([line]) for line in out["output"][2:]) if n]

    return make_cluster_functions(
        "SGE", submit_job, kill_job=lambda reg, b: cf_kill_job(reg, "qdel", [b], nodename=nodename),
        list_jobs_queued=lambda reg: listing("p"), list_jobs_running=lambda reg: listing("rs"),
        store_job_collection=True, store_job_files=True, scheduler_latency=scheduler_latency,
        fs_latency=fs_latency, poll=1.0, poll_max=30.0, resource_check=check_script_resources,
        path_check=check_path_chars("'\"$", "SGE"), capabilities=Capabilities(per_job_resources=True, gpus=True),
    )
