"""Grid Engine (SGE, Son of Grid Engine, Univa): ``qsub`` / ``qstat`` / ``qdel``."""

from __future__ import annotations

import getpass

from ..core.contract.backend import Capabilities, ClusterFunctions, SubmitJobResult, make_cluster_functions, restorable
from ..core.jobstate.retry import Accounting
from .commands import (
    cf_handle_unknown_submit_error,
    cf_kill_job,
    duration_seconds,
    first_number,
    run_os_command,
    size_mib,
)
from .templates import cf_brew_template, cf_read_brew_template, check_path_chars, check_script_resources


def _limits(category: str) -> dict[str, str]:
    """The ``-l`` requests of a qacct ``category`` ("-l h_rt=60,h_vmem=512M -pe smp 2")."""
    out: dict[str, str] = {}
    words = category.split()
    for k, w in enumerate(words[:-1]):
        if w == "-l":
            for item in words[k + 1].split(","):
                key, _, value = item.partition("=")
                out[key] = value
    return out


def parse_qacct(text: str) -> dict[str, Accounting]:
    """``qacct -j ID`` output (records separated by ``=====`` lines; the last record of a job
    wins: a rerun) as one record per job number: ``failed`` and ``exit_status`` (a signal is
    ``128 + n``), ``maxvmem`` and ``cpu``, judged against the limits the job asked for
    (``category``: ``h_rt``, ``h_vmem``).

    >>> lines = ["jobnumber    240", "failed       100 : assumedly after job", "exit_status  137",
    ...          "ru_wallclock 61s", "cpu          0.258s", "maxvmem      39.770MB",
    ...          "category     -l h_rt=60,h_vmem=1024M"]
    >>> rec = parse_qacct("=" * 62 + chr(10) + chr(10).join(lines))["240"]
    >>> rec.state, rec.reason, rec.signal, rec.cpu_time
    ('failed 100: assumedly after job', 'timeout', 9, 0.258)
    """
    out: dict[str, Accounting] = {}
    for block in text.split("=" * 20):
        fields = {}
        for line in block.splitlines():
            key, _, value = line.strip().partition(" ")
            if key:
                fields[key] = value.strip()
        job = fields.get("jobnumber")
        if not job:
            continue
        failed = fields.get("failed", "0").split(":", 1)
        code = int(failed[0].strip()) if failed[0].strip().isdigit() else 0
        status = int(fields["exit_status"]) if fields.get("exit_status", "").isdigit() else None
        rec = Accounting(state=f"failed {code}: {failed[1].strip()}" if code and len(failed) > 1 else
                         f"failed {code}" if code else "done")
        rec.exit_code = status
        rec.signal = status - 128 if status is not None and status > 128 else None
        rec.max_rss = max(size_mib(fields.get("maxvmem"), "B"), size_mib(fields.get("ru_maxrss"), "K"))
        rec.cpu_time = duration_seconds(fields.get("cpu"))
        limits = _limits(fields.get("category", ""))
        wall = duration_seconds(fields.get("ru_wallclock"))
        h_rt, h_vmem = duration_seconds(limits.get("h_rt")), size_mib(limits.get("h_vmem"), "B")
        if code == 37 or (rec.signal is not None and h_rt == h_rt and wall >= h_rt - 1):
            rec.reason = "timeout"
        elif rec.signal is not None and h_vmem == h_vmem and rec.max_rss >= 0.95 * h_vmem:
            rec.reason = "memory"
        elif code == 0 and status and rec.signal is None:
            rec.reason = "error"
        out[job] = rec
    return out


@restorable
def make_cluster_functions_sge(template: str = "sge", nodename: str = "localhost", scheduler_latency: float = 1,
                               fs_latency: float = 65) -> ClusterFunctions:
    """Submit with ``qsub`` (the id is the first number of "Your job 123 (...) has been submitted");
    ``qstat -u USER -s p`` / ``-s rs`` list queued / running jobs; ``qdel`` kills. No array jobs.

    ``scheduler_latency``: seconds a new job may take to appear in the listing (it counts as queued
    meanwhile; no sleep after submitting) and seconds slept after killing; ``fs_latency``: seconds a
    job may be missing from the listing before it counts as expired (shared file system delay).
    Why a job ended (for :class:`~batchtools.RetryPolicy`) comes from ``qacct``; the shipped
    template's soft limit ``s_rt`` warns a checkpointing job (SIGUSR1) before ``h_rt``.
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

    def account(reg, batch_ids: list[str]) -> dict[str, Accounting]:
        """qacct for each (it reads the accounting file; a job is in it once it ended)."""
        found = {}
        for b in batch_ids[:50]:
            out = run_os_command("qacct", ["-j", b], nodename=nodename, timeout=60)
            if out["exit_code"] == 0:
                found.update({k: v for k, v in parse_qacct("\n".join(out["output"])).items() if k == b})
        return found

    return make_cluster_functions(
        "SGE", submit_job, kill_job=lambda reg, b: cf_kill_job(reg, "qdel", [b], nodename=nodename),
        list_jobs_queued=lambda reg: listing("p"), list_jobs_running=lambda reg: listing("rs"),
        store_job_collection=True, store_job_files=True, scheduler_latency=scheduler_latency,
        fs_latency=fs_latency, poll=1.0, poll_max=30.0, resource_check=check_script_resources,
        path_check=check_path_chars("'\"$", "SGE"),
        # h_vmem is a limit per slot (CPU of a parallel environment)
        capabilities=Capabilities(gpus=True, memory_per_cpu=True),
        account=account,
    )
