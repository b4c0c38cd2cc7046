"""Docker (Swarm or a single engine): each job collection is a detached container."""

from __future__ import annotations

import getpass
import re
from collections.abc import Sequence

from ..core.contract.backend import Capabilities, ClusterFunctions, SubmitJobResult, make_cluster_functions, restorable
from .commands import cf_handle_unknown_submit_error, cf_kill_job, run_os_command

CONTAINER_ID = re.compile(r"^[0-9a-f]{64}$")


@restorable
def make_cluster_functions_docker(image: str, docker_args: Sequence[str] = (), image_args: Sequence[str] = (),
                                  scheduler_latency: float = 1, fs_latency: float = 65) -> ClusterFunctions:
    """Run each job collection as ``docker run --detach`` of ``image`` (which needs pybatchtools,
    and the registry mounted at the same path, e.g. ``image_args=["-v", "/data:/data"]``).

    Resources ``ncpus`` and ``memory`` (MB) are required; ``walltime`` (seconds) wraps the command in
    ``timeout``. Containers carry the labels ``batchtools=<job hash>`` and ``user=<you>``;
    ``docker ps`` lists them, ``docker kill`` stops them, exited ones are removed.

    ``scheduler_latency``: seconds a new job may take to appear in the listing (it counts as queued
    meanwhile; no sleep after submitting) and seconds slept after killing; ``fs_latency``: seconds a
    job may be missing from the listing before it counts as expired (shared file system delay).
    """
    if not isinstance(image, str) or not image:
        raise TypeError("image: the Docker image to run, e.g. 'python:3.11' with pybatchtools installed")
    user = getpass.getuser()
    docker_args, image_args = list(docker_args), list(image_args)

    def listing(*filters: str) -> list[str]:
        args = [*docker_args, "ps", "--format={{.ID}}", "--filter", "label=batchtools", "--filter", f"label=user={user}"]
        for f in filters:
            args += ["--filter", f]
        out = run_os_command("docker", args)
        if out["exit_code"] != 0:
            raise RuntimeError(f"Listing of jobs failed (docker exit {out['exit_code']}): {out['output'][-5:]}")
        return [line.strip() for line in out["output"] if line.strip()]

    def housekeeping(reg) -> None:
        exited = set(listing("status=exited")) & set(reg.status["batch_id"].dropna())
        if exited:
            run_os_command("docker", [*docker_args, "rm", *sorted(exited)])

    def submit_job(reg, jc) -> SubmitJobResult:
        res = jc.resources
        threads = [f"OMP_NUM_THREADS={res.get('omp_threads') or 1}", f"OPENBLAS_NUM_THREADS={res.get('blas_threads') or 1}",
                   f"MKL_NUM_THREADS={res.get('blas_threads') or 1}"]
        timeout = ["timeout", str(int(res["walltime"]))] if res.get("walltime") else []
        uri = str(reg.layout.job_collection(jc.job_hash))
        args = [*docker_args, "run", "--detach=true", *image_args, *sum((["-e", t] for t in threads), []),
                "-c", str(int(res["ncpus"])), "-m", f"{int(res['memory'])}m", "--memory-swap", f"{int(res['memory'])}m",
                "--label", f"batchtools={jc.job_hash}", "--label", f"user={user}", f"--name={user}_bt_{jc.job_hash}",
                image, *timeout, "python", "-m", "batchtools.worker", uri]
        out = run_os_command("docker", args)
        if out["exit_code"] != 0:
            housekeeping(reg)
            if out["exit_code"] == 1 and any("no resources available" in line for line in out["output"]):
                return SubmitJobResult(1, None, None, "no resources available")
            return cf_handle_unknown_submit_error("docker run", out["exit_code"], out["output"])
        ids = [line.strip() for line in out["output"] if CONTAINER_ID.match(line.strip())]
        if len(ids) != 1:
            return cf_handle_unknown_submit_error("docker run (no container id)", 0, out["output"])
        return SubmitJobResult(0, ids[0][:12], jc.log_file, "OK")

    return make_cluster_functions(
        "Docker", submit_job, kill_job=lambda reg, b: cf_kill_job(reg, "docker", [*docker_args, "kill", b]),
        list_jobs_running=lambda reg: listing("status=running"), store_job_collection=True,
        scheduler_latency=scheduler_latency, fs_latency=fs_latency, poll=1.0, poll_max=30.0,
        hooks={"post_sync": housekeeping}, info=image,
        capabilities=Capabilities(required_resources=("ncpus", "memory")),
    )
