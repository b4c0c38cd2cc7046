"""Slurm: ``sbatch`` / ``squeue`` / ``scancel``, with array jobs."""

from __future__ import annotations

import getpass
import re

from ..core.backend import Capabilities, ClusterFunctions, SubmitJobResult, make_cluster_functions, restorable
from ..core.layout import Layout
from .commands import cf_handle_unknown_submit_error, cf_kill_job, run_os_command, temporary_error
from .templates import cf_brew_template, cf_read_brew_template, check_path_chars, check_script_resources

TEMP_ERRORS = (
    "Job violates accounting policy",
    "QOSMaxSubmitJobPerUserLimit",
    "AssocMaxSubmitJobLimit",
    "Socket timed out on send/recv operation",
    "Submission rate too high",
    "Resource temporarily unavailable",
    "Unable to contact slurm controller",
)
QUEUED = {"PD", "CF", "RF", "RH", "RQ", "SE"}
RUNNING = {"R", "S", "CG", "RS", "SI", "SO", "ST"}


@restorable
def make_cluster_functions_slurm(template: str = "slurm", array_jobs: bool = True, nodename: str = "localhost",
                                 scheduler_latency: float = 1, fs_latency: float = 65) -> ClusterFunctions:
    """Submit job collections with ``sbatch``; list them with one ``squeue`` call per poll.

    Chunks submitted with ``resources={"chunks_as_arrayjobs": True}`` become array
    jobs (the node picks its job from ``SLURM_ARRAY_TASK_ID``); arrays larger than
    the cluster's ``MaxArraySize`` are split. ``max_concurrent_jobs`` becomes the
    array throttle ``--array=1-N%K``. A ``nodename`` other than localhost runs the
    Slurm commands there over ssh (the registry must be on a shared file system).

    ``scheduler_latency``: seconds to sleep after submitting or killing; ``fs_latency``: seconds a
    job may be missing from the listing before it counts as expired (shared file system delay).

    >>> import batchtools as bt
    >>> bt.make_cluster_functions_slurm()  # doctest: +ELLIPSIS
    ClusterFunctions(Slurm...)
    """
    if not isinstance(array_jobs, bool):
        raise TypeError("array_jobs: must be True or False")
    tmpl = cf_read_brew_template(template)
    user = getpass.getuser()
    cache: dict[str, int] = {}

    def clusters(reg) -> list[str]:
        res = reg.tables["resources"]["resources"].tolist()
        names = sorted({str(r["clusters"]) for r in res if isinstance(r, dict) and r.get("clusters")})
        return [f"--clusters={','.join(names)}"] if names else []

    def submit_job(reg, jc) -> SubmitJobResult:
        # Slurm expands %-patterns in --output: a literal % of the path is written %%
        extra = {"log_file": jc.log_file.replace("%", "%%")}
        if jc.array_jobs:
            extra = {"log_file": str(reg.layout.array_log(jc.job_hash, "@@")).replace("%", "%%").replace("@@", "%a"),
                     "array_throttle": jc.resources.get("max_concurrent_jobs")}
        script = cf_brew_template(reg, tmpl, jc, **extra)
        out = run_os_command("sbatch", [script], nodename=nodename)
        if out["exit_code"] != 0:
            temp = temporary_error(out["output"], TEMP_ERRORS)
            if temp:
                return SubmitJobResult(1, None, None, temp)
            return cf_handle_unknown_submit_error("sbatch", out["exit_code"], out["output"])
        m = re.search(r"Submitted batch job (\d+)", "\n".join(out["output"])) or re.search(r"^(\d+)", "\n".join(out["output"]))
        if not m:
            return cf_handle_unknown_submit_error("sbatch", 0, out["output"])
        batch = m.group(1)
        if jc.array_jobs:
            tasks = range(1, len(jc.jobs) + 1)
            return SubmitJobResult(0, [f"{batch}_{i}" for i in tasks],
                                   [Layout.array_log_name(jc.job_hash, i) for i in tasks], "OK")
        return SubmitJobResult(0, batch, jc.log_file, "OK")

    def list_jobs(reg) -> tuple[list[str], list[str]]:
        args = [f"--user={user}", "--noheader", "--format=%i %t", *clusters(reg)]
        if array_jobs:
            args.append("-r")
        out = run_os_command("squeue", args, nodename=nodename)
        if out["exit_code"] != 0:
            raise RuntimeError(f"Listing of jobs failed (squeue exit {out['exit_code']}): {out['output'][-5:]}")
        queued, running = [], []
        for line in out["output"]:
            parts = line.split()
            if len(parts) != 2 or not parts[0][0].isdigit():
                continue  # e.g. the "CLUSTER: name" lines of --clusters
            (queued if parts[1] in QUEUED else running if parts[1] in RUNNING else []).append(parts[0])
        return queued, running

    def kill_job(reg, batch_id: str) -> None:
        cf_kill_job(reg, "scancel", [*clusters(reg), batch_id], nodename=nodename)

    def max_array_size(reg) -> int | None:
        if "max" not in cache:
            out = run_os_command("scontrol", ["show", "config"], nodename=nodename)
            m = re.search(r"MaxArraySize\s*=\s*(\d+)", "\n".join(out["output"]))
            cache["max"] = int(m.group(1)) - 1 if m else 1000  # indices must stay below MaxArraySize
        return cache["max"]

    return make_cluster_functions(
        "Slurm", submit_job, kill_job=kill_job, list_jobs=list_jobs,
        array_var="SLURM_ARRAY_TASK_ID", store_job_collection=True, store_job_files=True,
        scheduler_latency=scheduler_latency, fs_latency=fs_latency, poll=1.0, poll_max=30.0,
        max_array_size=max_array_size, info=nodename if nodename != "localhost" else "",
        resource_check=check_script_resources,
        # --output treats a backslash as "no %-patterns" and drops it: the log would land elsewhere
        path_check=check_path_chars("\\", "Slurm"), capabilities=Capabilities(array_jobs=array_jobs, per_job_resources=True),
    )
