"""PBS Professional / OpenPBS: ``qsub`` (array jobs with ``-J``) / ``qstat -f -F json`` / ``qdel``,
and its node half (``PBS_JOBID``, ``PBS_ARRAY_INDEX``, the job's ``run_count``, ``qrerun``)."""

from __future__ import annotations

import fnmatch
import getpass
import json
import os
import shutil
import socket
import subprocess

from ..core.contract.backend import Capabilities, ClusterFunctions, SubmitJobResult, make_cluster_functions, restorable
from ..node.environment import NodeEnvironment
from ..node.session import say
from .commands import cf_kill_job, qsub_result, run_os_command
from .templates import cf_brew_template, cf_read_brew_template, check_path_allowed, check_script_resources

TEMP_ERRORS = ("Maximum number of jobs already in queue", "would exceed queue generic's per-user limit",
               "Resource temporarily unavailable", "Connection refused", "cannot connect to server",
               "Server is busy")
# job_state letters of qstat (subjobs listed with -t): B is an array with a running subjob, X a
# finished or deleted subjob; F (finished), M (moved) and X are off the system
QUEUED = {"Q", "H", "W", "T"}
RUNNING = {"R", "E", "B", "S", "U"}


def qstat_jobs(text: str) -> dict[str, dict]:
    """The ``Jobs`` of ``qstat -f -F json`` output (job id -> attributes; {} when none are listed,
    as PBS then prints no ``Jobs`` key). Lines around the JSON object (messages on stderr) are
    skipped; control characters in values (PBS copies environment variables as they are) are
    allowed. ValueError if there is no JSON object."""
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object in qstat's output")
    found, _ = json.JSONDecoder(strict=False).raw_decode(text[start:])
    return found.get("Jobs") or {}


def server_attributes(text: str) -> dict:
    """The first server's attributes in ``qstat -B -f -F json`` output ({} if none).

    >>> server_attributes('{"pbs_version": "2022.1.3", "Server": {"pbs01": {"max_array_size": 500}}}')
    {'max_array_size': 500}
    """
    start = text.find("{")
    if start < 0:
        return {}
    found, _ = json.JSONDecoder(strict=False).raw_decode(text[start:])
    servers = found.get("Server") or {}
    return next(iter(servers.values()), {}) if isinstance(servers, dict) else {}


def privileged(attrs: dict, user: str, hosts: list[str]) -> bool:
    """Whether ``user`` on one of ``hosts`` is a PBS Operator or Manager (the server's ``operators``
    and ``managers`` lists, ``user@host`` with ``*`` wildcards in the host), as ``qrerun`` needs.

    >>> privileged({"managers": "root@pbs01", "operators": "ann@*.cluster.org"}, "ann", ["n01.cluster.org"])
    True
    >>> privileged({"managers": "root@pbs01"}, "ann", ["n01.cluster.org"])
    False
    """
    for entry in f"{attrs.get('managers', '')},{attrs.get('operators', '')}".split(","):
        name, _, host = entry.strip().partition("@")
        if name == user and any(fnmatch.fnmatch(h, host or "*") for h in hosts):
            return True
    return False


def _qstat(args: list[str]) -> str:
    """stdout of ``qstat ARGS`` on the node ("" if it failed)."""
    if not shutil.which("qstat"):
        return ""
    try:
        out = subprocess.run(["qstat", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout if out.returncode == 0 else ""


def parse_qstat_json(text: str, user: str | None = None) -> tuple[list[str], list[str]]:
    """``qstat -f -F json -t`` output as (queued, running) job ids of ``user`` (all users if None);
    the array parent itself (``123[].server``) is left out: its subjobs are listed.

    >>> text = json.dumps({"Jobs": {"7.pbs": {"job_state": "R", "Job_Owner": "ann@login"},
    ...                             "8[].pbs": {"job_state": "B", "Job_Owner": "ann@login"},
    ...                             "8[1].pbs": {"job_state": "X", "Job_Owner": "ann@login"},
    ...                             "8[2].pbs": {"job_state": "Q", "Job_Owner": "ann@login"},
    ...                             "9.pbs": {"job_state": "Q", "Job_Owner": "bob@login"}}})
    >>> parse_qstat_json(text, "ann")
    (['8[2].pbs'], ['7.pbs'])
    """
    jobs = qstat_jobs(text)
    queued, running = [], []
    for jid, attrs in jobs.items():
        if "[]" in jid:
            continue
        if user is not None and str(attrs.get("Job_Owner", "")).partition("@")[0] != user:
            continue
        state = attrs.get("job_state")
        (queued if state in QUEUED else running if state in RUNNING else []).append(jid)
    return queued, running


class PBSProEnvironment(NodeEnvironment):
    """The node half of PBS Pro: ``PBS_JOBID`` (``123[4].server`` for a subjob), ``PBS_ARRAY_INDEX``,
    the restart count from the job's ``run_count`` (one ``qstat -f -F json`` per node process: PBS
    sets no variable for it) and requeueing itself with ``qrerun``.

    ``qrerun`` needs PBS Operator or Manager privilege, so a job requeues itself only if the
    server's ``operators`` or ``managers`` list names its user (asked once it wants to) and its
    ``run_count`` is readable (else a rerun could not tell itself from the first run); otherwise
    the run reports ``checkpointed`` and the master resubmits it.
    """

    name = "pbspro"
    # TORQUE sets PBS_JOBID too: a PBS Pro job is told apart by its backend (the collection names this class)
    variables = ("PBS_JOBID",)
    array_variable = "PBS_ARRAY_INDEX"

    def __init__(self, array_var: str | None = None) -> None:
        super().__init__(array_var)
        self._status: dict | None = None

    @property
    def job_id(self) -> str | None:
        return os.environ.get("PBS_JOBID") or None

    def _job(self, fresh: bool = False) -> dict:
        """This job's attributes from ``qstat -f -F json`` ({} if qstat cannot say)."""
        if self._status is None or fresh:
            try:
                jobs = qstat_jobs(_qstat(["-f", "-F", "json", "-t", self.job_id or ""]))
            except ValueError:
                jobs = {}
            self._status = jobs.get(self.job_id) or (next(iter(jobs.values())) if len(jobs) == 1 else {})
        return self._status

    @property
    def restart_count(self) -> int:
        count = self._job().get("run_count")
        return max(0, int(count) - 1) if isinstance(count, int) else 0

    @property
    def can_requeue(self) -> bool:
        if self.job_id is None or not isinstance(self._job().get("run_count"), int):
            return False
        try:
            attrs = server_attributes(_qstat(["-B", "-f", "-F", "json"]))
        except ValueError:
            return False
        return privileged(attrs, getpass.getuser(), [socket.getfqdn(), socket.gethostname()])

    def requeued_by_scheduler(self) -> bool:
        return self._job(fresh=True).get("job_state") in QUEUED

    def requeue(self) -> bool:
        jid = self.job_id
        try:
            out = subprocess.run(["qrerun", jid], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as e:
            say(f"Could not requeue PBS job {jid} ({e}); the master resubmits it")
            return False
        if out.returncode != 0:
            say(f"PBS refused to requeue job {jid} ({(out.stdout + out.stderr).strip()}; qrerun needs Operator "
                "or Manager privilege); the master resubmits it")
            return False
        say(f"Requeued PBS job {jid}: the next run goes on from the checkpoint")
        return True


@restorable
def make_cluster_functions_pbspro(template: str = "pbspro", scheduler_latency: float = 1,
                                  fs_latency: float = 65) -> ClusterFunctions:
    """PBS Professional and OpenPBS: submit with ``qsub``; ``qstat -f -F json -t`` lists the jobs
    (one call for queued and running, subjobs included); ``qdel`` kills.

    Chunks submitted with ``resources={"chunks_as_arrayjobs": True}`` become array jobs (``qsub -J
    1-N``; the node picks its job from ``PBS_ARRAY_INDEX``), whose batch ids are the subjobs'
    ``ID[i].server``; ``max_concurrent_jobs`` becomes ``-W max_run_subjobs=K``. A chunk of one job
    is submitted as an ordinary job (PBS Pro refuses one-element arrays); arrays larger than the
    server's ``max_array_size`` are split.

    ``scheduler_latency``: seconds a new job may take to appear in the listing (it counts as queued
    meanwhile; no sleep after submitting) and seconds slept after killing; ``fs_latency``: seconds a
    job may be missing from the listing before it counts as expired (shared file system delay).

    >>> import batchtools as bt
    >>> bt.make_cluster_functions_pbspro()
    ClusterFunctions(PBSPro)
    """
    tmpl = cf_read_brew_template(template)
    user = getpass.getuser()
    cache: dict[str, int] = {}

    def submit_job(reg, jc) -> SubmitJobResult:
        extra = {"array_throttle": jc.resources.get("max_concurrent_jobs")} if jc.array_jobs else {}
        return qsub_result(run_os_command("qsub", [cf_brew_template(reg, tmpl, jc, **extra)]), jc, TEMP_ERRORS)

    def max_array_size(reg) -> int:
        """The server's ``max_array_size`` (PBS's default 10000 if it cannot say); asked once."""
        if "max" not in cache:
            out = run_os_command("qstat", ["-B", "-f", "-F", "json"])
            try:
                size = server_attributes("\n".join(out["output"])).get("max_array_size")
            except ValueError:
                size = None
            cache["max"] = int(size) if out["exit_code"] == 0 and isinstance(size, int) and size > 0 else 10000
        return cache["max"]

    def list_jobs(reg) -> tuple[list[str], list[str]]:
        out = run_os_command("qstat", ["-f", "-F", "json", "-t"])
        if out["exit_code"] != 0:
            raise RuntimeError(f"Listing of jobs failed (qstat exit {out['exit_code']}): {out['output'][-5:]}")
        try:
            return parse_qstat_json("\n".join(out["output"]), user)
        except ValueError as e:
            raise RuntimeError(f"Listing of jobs failed: qstat -F json printed no JSON ({e}): {out['output'][:5]}") \
                from None

    return make_cluster_functions(
        "PBSPro", submit_job, kill_job=lambda reg, b: cf_kill_job(reg, "qdel", [b]), list_jobs=list_jobs,
        array_var=PBSProEnvironment.array_variable, node_environment=PBSProEnvironment,
        store_job_collection=True, store_job_files=True,
        scheduler_latency=scheduler_latency, fs_latency=fs_latency, poll=1.0, poll_max=30.0,
        max_array_size=max_array_size, resource_check=check_script_resources, path_check=check_path_allowed("/._-+,:=@~", "PBS Pro"),
        capabilities=Capabilities(array_jobs=True, gpus=True),
    )
