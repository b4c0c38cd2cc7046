"""Slurm: ``sbatch`` / ``squeue`` / ``scancel``, with array jobs."""

from __future__ import annotations

import getpass
import os
import re
import shutil
import subprocess
import time

from ..core.contract.backend import Capabilities, ClusterFunctions, SubmitJobResult, make_cluster_functions, restorable
from ..core.jobstate.retry import REQUEUE_START_DELAY, Accounting
from ..core.persistence.layout import Layout
from ..node.environment import NodeEnvironment
from ..node.session import say
from .commands import (
    cf_handle_unknown_submit_error,
    cf_kill_job,
    duration_seconds,
    run_os_command,
    size_mib,
    temporary_error,
)
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
RELEASE_EVERY = 2.0  # seconds between two tries to let a requeued job start (release_requeued)
QUEUED = {"PD", "CF", "RF", "RH", "RQ", "SE"}
RUNNING = {"R", "S", "CG", "RS", "SI", "SO", "ST"}
# what a Slurm job state says about why a job ended (core.retry's reasons); others name no cause
STATE_REASONS = {"TIMEOUT": "timeout", "DEADLINE": "timeout", "OUT_OF_MEMORY": "memory", "NODE_FAIL": "node_fail",
                 "BOOT_FAIL": "node_fail", "PREEMPTED": "preempted", "CANCELLED": "cancelled",
                 "REQUEUED": "requeued"}
SACCT_FIELDS = "JobID,State,ExitCode,MaxRSS,TotalCPU,Elapsed,TRESUsageInMax"
# states of a job that has ended (sacct may still show a job that ended a moment ago as running)
FINAL_STATES = {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL",
                "DEADLINE", "PREEMPTED"}
# the longest --dependency value sbatch takes: it exports it as SLURM_JOB_DEPENDENCY, and Slurm refuses an
# environment variable over 128 KiB (MAX_ENV_STRLEN; slurm-wlm 22.05 here took 130,974 characters and
# refused 137,867: "environment variable SLURM_JOB_DEPENDENCY is too long"); one command-line argument
# has the same limit (Linux's MAX_ARG_STRLEN); 1 KiB is left for the rest of a command sent over ssh
MAX_DEPENDENCY = 127 * 1024
# seconds a listing of the user's jobs is reused to check further collections' dependencies: far below
# MinJobAge (default 300 s; 60 s on the test suite's Slurm), so no job it showed as live can have ended
# and been forgotten since (one that ended since makes Slurm wait or refuse, as it should)
KNOWN_FOR = 5.0
# squeue's reasons of a job pending on its dependencies: still waiting, or one ended unsuccessfully
# (afterok can never be satisfied: the job stays pending until it is cancelled)
DEPENDENCY_REASONS = ("Dependency", "DependencyNeverSatisfied")
SQUEUE_ALL = ["--noheader", "-r", "--states=all", "--format=%i|%T|%r"]


class DependencyRefused(ValueError):
    """Slurm cannot be asked to enforce a collection's ``after`` (a dependency it no longer knows,
    one that ended unsuccessfully, or too many ids for ``--dependency``); ``temporary``: squeue
    could not be asked now (the submission is tried again)."""

    def __init__(self, msg: str, temporary: bool = False) -> None:
        super().__init__(msg)
        self.temporary = temporary


def parse_squeue_all(lines: list[str]) -> dict[str, tuple[str, str]]:
    """``squeue --noheader -r --states=all --format=%i|%T|%r`` as ``{job id: (state, reason)}``
    (array tasks as ``123_4``; the ``CLUSTER:`` lines of ``--clusters`` are left out).

    >>> parse_squeue_all(["CLUSTER: c1", "77|PENDING|Dependency", "78_2|COMPLETED|None"])
    {'77': ('PENDING', 'Dependency'), '78_2': ('COMPLETED', 'None')}
    """
    out = {}
    for line in lines:
        parts = line.strip().split("|")
        if len(parts) == 3 and parts[0][:1].isdigit():
            out[parts[0]] = (parts[1], parts[2])
    return out


def dependency_value(after, known: dict[str, tuple[str, str]], limit: int = MAX_DEPENDENCY) -> str | None:
    """The value of ``sbatch --dependency=`` for a collection that waits for the Slurm jobs
    ``after`` (the status table's batch ids: ``123`` for a job or a chunk, ``123_4`` for array
    task 4), given ``known``, what Slurm remembers of the user's jobs (:func:`parse_squeue_all`);
    None if there is nothing left to wait for.

    Ids are deduplicated; jobs that completed already are left out (afterok holds). Array tasks
    stay tasks, unless the value would be too long: then an array every task of which Slurm
    remembers is listed and none ended becomes its array id (``afterok:123`` waits for every
    task). Refused (:class:`DependencyRefused`, naming the ids):
    a job Slurm does not know (it ended over ``MinJobAge`` ago: Slurm would count it as satisfied,
    whether it succeeded or not), one that ended unsuccessfully (the collection could never start),
    and a value longer than ``limit``.

    >>> known = {"5": ("RUNNING", "None"), "6": ("COMPLETED", "None"), "7_1": ("PENDING", "None"),
    ...          "7_2": ("RUNNING", "None"), "7_3": ("COMPLETED", "None"), "8_1": ("PENDING", "None"),
    ...          "8_2": ("PENDING", "None")}
    >>> dependency_value(["5", "6", "5", "7_1", "7_2", "8_1"], known)
    'afterok:5:7_1:7_2:8_1'
    >>> dependency_value(["8_1", "8_2"], known, limit=12)  # too long: the whole array
    'afterok:8'
    >>> dependency_value(["6"], known) is None
    True
    >>> dependency_value(["5", "9"], known)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    batchtools.backends.slurm.DependencyRefused: Slurm cannot enforce the dependencies on 9 (not known to Slurm...
    """
    ids = list(dict.fromkeys(str(b) for b in after))
    wait, problems = [], []
    for b in ids:
        state = known.get(b, (None, None))[0]
        if state is None:
            problems.append(f"{b} (not known to Slurm any more: it ended over MinJobAge ago, or never existed; "
                            "Slurm would take it as satisfied)")
        elif state in FINAL_STATES and state != "COMPLETED":
            problems.append(f"{b} ({state}: the collection could never start)")
        elif state != "COMPLETED":
            wait.append(b)
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise DependencyRefused(f"Slurm cannot enforce the dependencies on {shown}: sync the registry to learn "
                                "how they ended")
    if not wait:
        return None
    value = "afterok:" + ":".join(wait)
    if len(value) > limit:
        # too long: an array whose every task Slurm remembers is listed and none of them ended becomes its
        # id. Not otherwise: Slurm's array record keeps the highest exit code of its tasks, so afterok on
        # the whole array never holds after one task failed, even once that task itself is forgotten
        tasks: dict[str, list[tuple[str, str]]] = {}
        for b, (state, _) in known.items():
            base, sep, task = b.partition("_")
            if sep and task.isdigit():
                tasks.setdefault(base, []).append((b, state))
        listed, out, whole = set(wait), [], set()
        for b in wait:
            base, sep, _ = b.partition("_")
            if sep and base in whole:
                continue
            if sep and all(t in listed and state not in FINAL_STATES for t, state in tasks.get(base, ())):
                whole.add(base)
                b = base
            out.append(b)
        value = "afterok:" + ":".join(out)
    if len(value) > limit:
        raise DependencyRefused(
            f"the collection waits for {len(wait)} Slurm jobs; sbatch --dependency takes at most {limit} characters "
            f"(this would be {len(value)}): submit the jobs it depends on as array jobs "
            "(resources={'chunks_as_arrayjobs': True}: a whole array is one id) or in fewer, larger chunks")
    return value


def _tres(text: str) -> dict[str, str]:
    """``cpu=00:01:02,gres/gpumem=1234M,gres/gpuutil=87,mem=2048K`` as a dict."""
    return dict(item.split("=", 1) for item in text.split(",") if "=" in item)


def parse_sacct(lines: list[str]) -> dict[str, Accounting]:
    """``sacct --parsable2 --noheader --format=JobID,State,ExitCode,MaxRSS,TotalCPU,Elapsed,TRESUsageInMax``
    output, one line per job and per step (``.batch``, ``.extern``, ``.0``, ...), as one record
    per job. With ``--duplicates`` a requeued job is listed once per run, each run's job line
    followed by its steps: the last run counts, with its own steps. The job line gives the state,
    exit code and Elapsed; out-of-memory if any step ran out of memory; MaxRSS (and the GPU
    memory and utilization of ``TRESUsageInMax``, where the scheduler samples GPUs) the largest
    over the steps; TotalCPU the job line's, else the steps' sum. Lines of four or five fields (an
    older format) are read too.

    >>> out = parse_sacct(["77|TIMEOUT|0:0||00:01.500|00:01:01|", "77.batch|CANCELLED|0:15|2048K|00:01.500|00:01:01|",
    ...                    "77.extern|COMPLETED|0:0|1024K|00:00:00|00:01:01|"])
    >>> a = out["77"]; (a.state, a.reason, a.signal, a.max_rss, a.cpu_time, a.elapsed)
    ('TIMEOUT', 'timeout', None, 2.0, 1.5, 61.0)
    """
    jobs: dict[str, Accounting] = {}
    steps: dict[str, list[tuple[str, float, float, float, float]]] = {}
    for line in lines:
        parts = line.strip().split("|")
        if len(parts) < 5 or not parts[0][:1].isdigit():
            continue
        job_id, state, exit_code, max_rss, cpu = parts[:5]
        elapsed = parts[5] if len(parts) > 5 else ""
        tres = _tres(parts[6]) if len(parts) > 6 else {}
        base, _, step = job_id.partition(".")
        state = state.split()[0] if state else ""  # "CANCELLED by 1000"
        if step:
            if base in jobs:  # a step of the run whose job line came last
                steps[base].append((state, size_mib(max_rss), duration_seconds(cpu),
                                    size_mib(tres.get("gres/gpumem"), "M"), _number(tres.get("gres/gpuutil"))))
            continue
        code, _, sig = exit_code.partition(":")
        rec = jobs[base] = Accounting(state=state, reason=STATE_REASONS.get(state))
        steps[base] = []
        rec.exit_code = int(code) if code.isdigit() else None
        rec.signal = int(sig) if sig.isdigit() and int(sig) else None
        rec.max_rss = size_mib(max_rss)
        rec.cpu_time = duration_seconds(cpu)
        rec.elapsed = duration_seconds(elapsed)
        rec.gpu_mem = size_mib(tres.get("gres/gpumem"), "M")
        rec.gpu_util = _number(tres.get("gres/gpuutil"))
        if state == "FAILED" and rec.exit_code and not rec.signal:
            rec.reason = "error"  # the job's own non-zero exit
    for base, found in steps.items():
        rec = jobs[base]
        for k, attr in ((1, "max_rss"), (3, "gpu_mem"), (4, "gpu_util")):
            values = [v for v in (getattr(rec, attr), *(s[k] for s in found)) if v == v]
            if values:
                setattr(rec, attr, max(values))
        if not rec.cpu_time > 0:
            cpus = [s[2] for s in found if s[2] == s[2]]
            if cpus:
                rec.cpu_time = sum(cpus)
        if rec.reason not in ("timeout", "node_fail", "preempted") and any(s[0] == "OUT_OF_MEMORY" for s in found):
            rec.reason = "memory"
    return jobs


def _number(text: str | None) -> float:
    try:
        return float(text) if text else float("nan")
    except ValueError:
        return float("nan")


def parse_scontrol_job(text: str) -> Accounting | None:
    """``scontrol show job -o ID`` (a finished job Slurm still remembers, for ``MinJobAge``
    seconds): the state and exit code, when accounting is off.

    >>> a = parse_scontrol_job("JobId=77 JobName=x JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15 RunTime=00:01:31")
    >>> a.state, a.reason, a.signal
    ('TIMEOUT', 'timeout', 15)
    """
    fields = dict(f.split("=", 1) for f in text.split() if "=" in f)
    state = fields.get("JobState")
    if not state:
        return None
    code, _, sig = fields.get("ExitCode", "").partition(":")
    rec = Accounting(state=state, reason=STATE_REASONS.get(state))
    rec.exit_code = int(code) if code.isdigit() else None
    rec.signal = int(sig) if sig.isdigit() and int(sig) else None
    if state == "FAILED" and rec.exit_code and not rec.signal:
        rec.reason = "error"
    return rec


def job_umask() -> str:
    """The umask a Slurm job gets (``SLURM_UMASK``): this process's, without group or world write.

    >>> old = os.umask(0); job_umask(), os.umask(old) == 0
    ('0022', True)
    """
    try:  # read, not set and reset: other threads may be creating files meanwhile
        with open("/proc/self/status") as fh:
            mask = next(int(line.split()[1], 8) for line in fh if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o077)
        os.umask(mask)
    return f"{mask | 0o022:04o}"


def cluster_args(reg) -> list[str]:
    """``--clusters=a,b`` for the clusters the registry's resources name (none: the default cluster)."""
    res = reg.tables["resources"]["resources"].tolist()
    names = sorted({str(r["clusters"]) for r in res if isinstance(r, dict) and r.get("clusters")})
    return [f"--clusters={','.join(names)}"] if names else []


def pending_on_dependencies(reg=None) -> dict[str, str]:
    """The registry's Slurm jobs that wait for their dependencies, ``{batch id: reason}`` in
    squeue's words: ``Dependency`` (the jobs they wait for have not all ended yet) or
    ``DependencyNeverSatisfied`` (one of them ended unsuccessfully: Slurm never starts the job,
    it stays pending until cancelled, e.g. by ``kill_jobs``). Both are queued jobs for
    ``get_status`` and ``find_queued``; this tells why. One ``squeue`` call.
    """
    from ..core.registry import resolve

    reg = resolve(reg)
    cf = reg.cluster_functions
    nodename = ((cf.spec or {}).get("kwargs") or {}).get("nodename", "localhost")
    out = run_os_command("squeue", [f"--user={getpass.getuser()}", *SQUEUE_ALL, *cluster_args(reg)],
                         nodename=nodename, timeout=60)
    if out["exit_code"] != 0:
        raise RuntimeError(f"Listing of jobs failed (squeue exit {out['exit_code']}): {out['output'][-5:]}")
    ours = {str(b) for b in reg.status["batch_id"].dropna().tolist()}
    return {b: reason for b, (state, reason) in parse_squeue_all(out["output"]).items()
            if b in ours and state == "PENDING" and reason in DEPENDENCY_REASONS}


class SlurmEnvironment(NodeEnvironment):
    """The node half of Slurm: the job id (``SLURM_ARRAY_JOB_ID_TASK`` for an array task),
    ``SLURM_RESTART_COUNT``, and requeueing itself with ``scontrol requeue``."""

    name = "slurm"
    variables = ("SLURM_JOB_ID",)
    array_variable = "SLURM_ARRAY_TASK_ID"
    fail_on_error = True  # a failed job fails its Slurm job: --dependency=afterok must not start its dependants

    @property
    def job_id(self) -> str | None:
        task, array = os.environ.get("SLURM_ARRAY_TASK_ID"), os.environ.get("SLURM_ARRAY_JOB_ID")
        return f"{array}_{task}" if task and array else os.environ.get("SLURM_JOB_ID")

    @property
    def restart_count(self) -> int:
        try:
            return int(os.environ.get("SLURM_RESTART_COUNT") or 0)
        except ValueError:
            return 0

    @property
    def can_requeue(self) -> bool:
        return self.job_id is not None

    def requeued_by_scheduler(self) -> bool:
        jid = self.job_id
        if not jid or not shutil.which("scontrol"):
            return False
        try:
            out = subprocess.run(["scontrol", "show", "job", jid], capture_output=True, text=True,
                                 timeout=1.5).stdout
        except (OSError, subprocess.SubprocessError):
            return False
        return any(f"JobState={s}" in out for s in ("PENDING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD"))

    def requeue(self) -> bool:
        jid = self.job_id
        try:
            out = subprocess.run(["scontrol", "requeue", jid], capture_output=True, text=True, timeout=60)
            if out.returncode != 0:
                say(f"Slurm refused to requeue job {jid} ({(out.stdout + out.stderr).strip()}); "
                    "the master resubmits it")
                return False
            say(f"Requeued Slurm job {jid}: the next run goes on from the checkpoint")
            # a requeued job is held for a while (BeginTime); it may start soon, but not within the second
            # of the requeue: slurmd revokes the old run's credential by the second, and a run started in
            # that same second is killed ("Job credential revoked") and the job is gone
            subprocess.run(["scontrol", "update", f"JobId={jid}", f"StartTime=now+{REQUEUE_START_DELAY}"],
                           capture_output=True, timeout=60)
            return True
        except (OSError, subprocess.SubprocessError) as e:
            say(f"Could not requeue Slurm job {jid} ({e}); the master resubmits it")
            return False


@restorable
def make_cluster_functions_slurm(template: str = "slurm", array_jobs: bool = True, nodename: str = "localhost",
                                 scheduler_latency: float = 1, fs_latency: float = 65) -> ClusterFunctions:
    """Submit job collections with ``sbatch``; list them with one ``squeue`` call per poll.

    Chunks submitted with ``resources={"chunks_as_arrayjobs": True}`` become array
    jobs (the node picks its job from ``SLURM_ARRAY_TASK_ID``); arrays larger than
    the cluster's ``MaxArraySize`` are split. ``max_concurrent_jobs`` becomes the
    array throttle ``--array=1-N%K``. A ``nodename`` other than localhost runs the
    Slurm commands there over ssh (the registry must be on a shared file system).

    ``scheduler_latency``: seconds a new job may take to appear in the listing (it counts as queued
    meanwhile; no sleep after submitting) and seconds slept after killing; ``fs_latency``: seconds a
    job may be missing from the listing before it counts as expired (shared file system delay).

    Why a job ended (for :class:`~batchtools.RetryPolicy`) comes from ``sacct`` (state,
    exit code, MaxRSS over all steps, TotalCPU); with accounting off, from ``scontrol show
    job`` while Slurm still remembers the job, and from the node's own evidence otherwise. The
    shipped template asks for ``--signal=B:USR1@<checkpoint_warning>`` (walltimes of 10
    minutes and more: Slurm sends it up to a minute early) and allows requeues, so a job that
    checkpoints requeues itself before its time limit.

    >>> import batchtools as bt
    >>> bt.make_cluster_functions_slurm()  # doctest: +ELLIPSIS
    ClusterFunctions(Slurm...)
    """
    if not isinstance(array_jobs, bool):
        raise TypeError("array_jobs: must be True or False")
    tmpl = cf_read_brew_template(template)
    user = getpass.getuser()
    cache: dict[str, int] = {}
    known: dict[str, tuple] = {}  # "jobs": (squeue's arguments, when, what it listed) for dependency checks

    def submit_job(reg, jc) -> SubmitJobResult:
        # Slurm expands %-patterns in --output: a literal % of the path is written %%
        extra = {"log_file": jc.log_file.replace("%", "%%")}
        if jc.array_jobs:
            extra = {"log_file": str(reg.layout.array_log(jc.job_hash, "@@")).replace("%", "%%").replace("@@", "%a"),
                     "array_throttle": jc.resources.get("max_concurrent_jobs")}
        script = cf_brew_template(reg, tmpl, jc, **extra)
        try:
            options = dependency_options(reg, jc.after)
        except DependencyRefused as e:
            return SubmitJobResult(1 if e.temporary else 101, None, None, str(e))
        # Slurm creates the job's log (--output) and runs the job with the umask sbatch passes on:
        # never one that lets other users write the log (the node would only fix it once it runs)
        out = run_os_command("sbatch", [*options, script], nodename=nodename, env={"SLURM_UMASK": job_umask()})
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

    def dependency_options(reg, after) -> list[str]:
        """sbatch's options for a collection that waits for the Slurm jobs ``after`` (none if it
        waits for nothing): ``--dependency=afterok:...`` and ``--kill-on-invalid-dep=no``, so a job
        whose dependency failed stays pending (reason ``DependencyNeverSatisfied``) whatever the
        site's ``DependencyParameters``, until the master cancels it."""
        if not after:
            return []
        args = [f"--user={user}", *SQUEUE_ALL, *cluster_args(reg)]
        seen = known.get("jobs")
        # one listing serves the collections of a few seconds; a job it does not show (just submitted) asks again
        if seen is None or seen[0] != args or time.time() - seen[1] > KNOWN_FOR or \
                not all(str(b) in seen[2] for b in after):
            t = time.time()
            out = run_os_command("squeue", args, nodename=nodename, timeout=60)
            if out["exit_code"] != 0:
                temp = temporary_error(out["output"], TEMP_ERRORS)
                raise DependencyRefused(temp or f"cannot check the dependencies with squeue (exit "
                                        f"{out['exit_code']}): {out['output'][-5:]}", temporary=bool(temp))
            seen = known["jobs"] = (args, t, parse_squeue_all(out["output"]))
        value = dependency_value(after, seen[2])
        return [f"--dependency={value}", "--kill-on-invalid-dep=no"] if value else []

    def list_jobs(reg) -> tuple[list[str], list[str]]:
        args = [f"--user={user}", "--noheader", "--format=%i %t", *cluster_args(reg)]
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
        cf_kill_job(reg, "scancel", [*cluster_args(reg), batch_id], nodename=nodename)

    def sacct(reg, batch_ids: list[str]) -> tuple[dict[str, Accounting] | None, bool]:
        """sacct for all of them in one call: (its records, or None if Slurm keeps no
        accounting; whether sacct answered)."""
        if cache.get("no_sacct"):
            return None, False
        out = run_os_command("sacct", ["--parsable2", "--noheader", "--duplicates", f"--format={SACCT_FIELDS}",
                                       f"--jobs={','.join(batch_ids)}", *cluster_args(reg)], nodename=nodename,
                             timeout=60)
        if out["exit_code"] == 0:
            wanted = set(batch_ids)
            return {b: a for b, a in parse_sacct(out["output"]).items() if b in wanted}, True
        if any("accounting storage is disabled" in line for line in out["output"]):
            cache["no_sacct"] = 1  # not asked again
            return None, False
        return {}, False  # a failure: asked again next time

    def usage(reg, batch_ids: list[str]) -> dict[str, Accounting] | None:
        """What the ended ones used (sacct, one call); None if Slurm keeps no accounting."""
        found, _ = sacct(reg, batch_ids)
        return found if found is None else {b: a for b, a in found.items() if a.state in FINAL_STATES}

    def account(reg, batch_ids: list[str]) -> dict[str, Accounting]:
        """sacct for all of them in one call; with accounting off or sacct failing, what
        ``scontrol`` still remembers of each (finished jobs stay for ``MinJobAge`` seconds); else nothing."""
        found, answered = sacct(reg, batch_ids)
        if answered:
            return found
        found = {}
        for b in batch_ids[:50]:
            out = run_os_command("scontrol", ["show", "job", "-o", b], nodename=nodename, timeout=30)
            rec = parse_scontrol_job(" ".join(out["output"])) if out["exit_code"] == 0 else None
            if rec is not None:
                found[b] = rec
        return found

    def release_requeued(reg) -> None:
        """After every sync: let jobs that requeued themselves start at once (Slurm holds a
        requeued job for two minutes; the node cannot lift that itself, as the hold is set once
        its run has ended)."""
        st = reg.status
        restart = st["restart"].to_numpy()
        waiting = (restart > 0) & st["started"].isna().to_numpy() & st["done"].isna().to_numpy()
        if not waiting.any():
            return
        released = reg.session.scratch("slurm")  # "batch@restart" -> last try, or None: done
        now = time.time()
        for b in {f"{b}@{int(r)}" for b, r in zip(st["batch_id"].to_numpy()[waiting].tolist(),
                                                  restart[waiting].tolist())}:
            if b not in released:
                # first try REQUEUE_START_DELAY after it was first seen waiting, as the node asks: a run
                # started within the second of the requeue is killed by slurmd ("Job credential revoked")
                released[b] = now - RELEASE_EVERY + REQUEUE_START_DELAY
                continue
            last = released[b]
            if last is None or now - last < RELEASE_EVERY:
                continue
            out = run_os_command("scontrol", ["update", f"JobId={b.split('@')[0]}", "StartTime=now", *cluster_args(reg)],
                                 nodename=nodename, timeout=30)
            text = " ".join(out["output"]).lower()
            # until it runs again (or is gone): a requeue still completing sets its hold after our update
            released[b] = None if "no longer pending" in text or "invalid job" in text else now

    def max_array_size(reg) -> int | None:
        if "max" not in cache:
            out = run_os_command("scontrol", ["show", "config"], nodename=nodename)
            m = re.search(r"MaxArraySize\s*=\s*(\d+)", "\n".join(out["output"]))
            cache["max"] = int(m.group(1)) - 1 if m else 1000  # indices must stay below MaxArraySize
        return cache["max"]

    return make_cluster_functions(
        "Slurm", submit_job, kill_job=kill_job, list_jobs=list_jobs,
        array_var=SlurmEnvironment.array_variable, node_environment=SlurmEnvironment,
        store_job_collection=True, store_job_files=True,
        scheduler_latency=scheduler_latency, fs_latency=fs_latency, poll=1.0, poll_max=30.0,
        max_array_size=max_array_size, info=nodename if nodename != "localhost" else "",
        resource_check=check_script_resources, account=account, usage=usage, hooks={"post_sync": release_requeued},
        # --output treats a backslash as "no %-patterns" and drops it: the log would land elsewhere
        path_check=check_path_chars("\\", "Slurm"),
        # --time is kept in whole minutes; --mem-per-cpu is memory per CPU
        # --dependency=afterok: Slurm starts a collection once the jobs it waits for ended successfully
        capabilities=Capabilities(array_jobs=array_jobs, gpus=True, walltime_unit=60,
                                  memory_per_cpu=True, dependencies=True),
    )
