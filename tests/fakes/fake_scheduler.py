#!/usr/bin/env python3
"""A stand-in for qsub/qselect/qdel (TORQUE), qsub/qstat/qdel (SGE), qsub/qstat -f -F json/qdel/
qrerun (PBS Pro), bsub/bjobs/bkill (LSF, OpenLava), docker, sbatch/squeue/scancel/scontrol/sacct
(Slurm) and nvidia-smi, dispatched on the name it is called by. It replays the output formats of
the real tools (from their documentation) and keeps its state in $FAKE_SCHED_DIR/state.json.

PBS Pro (a script with ``#PBS -l select=``): ``qsub`` prints ``ID.pbs.example.org`` (``ID[].…``
for ``-J``), runs each subjob with ``PBS_JOBID``/``PBS_ARRAY_INDEX`` set and its ``run_count``
shown by ``qstat``, and runs a job again (run_count + 1) that ``qrerun`` requeued while it ran.
``qstat -B -f -F json`` names the user an Operator, unless $FAKE_PBS_NOT_OPERATOR=1 (then
``qrerun`` refuses, as PBS does); it says ``max_array_size`` ($FAKE_MAX_ARRAY_SIZE, default 10000).
``qstat -f -F json -t`` lists a job of another user too (the backend must leave it out).

sacct answers with the recorded output in the file $FAKE_SACCT once per job asked about (its
``{job}`` replaced by the job's id), or, without it, as a Slurm without accounting does;
nvidia-smi prints the samples in $FAKE_NVIDIA_SMI one after another (samples are separated by
blank lines; the last one is repeated).

Submitted scripts run at once, synchronously (array tasks one after another with the
scheduler's task variable set), unless $FAKE_SCHED_HOLD=1: then jobs stay queued, so
listing and killing can be checked. With $FAKE_SCHED_BACKGROUND=1 they run in the background
(a process group each, array tasks side by side) and are listed as running until their
processes end, as a scheduler with free nodes runs them. $FAKE_SCHED_FAIL="exit:message" makes
the next N submissions fail (N = $FAKE_SCHED_FAIL_TIMES, default 1) with that exit code and
message. Calls are serialized by a lock file, as a scheduler's controller serializes them.
"""

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

STATE = Path(os.environ["FAKE_SCHED_DIR"]) / "state.json"
CALLS = Path(os.environ["FAKE_SCHED_DIR"]) / "calls.log"


def load():
    return json.loads(STATE.read_text()) if STATE.exists() else {"next": 4711, "jobs": {}}


def save(state):
    STATE.write_text(json.dumps(state))


def failing():
    spec = os.environ.get("FAKE_SCHED_FAIL")
    if not spec:
        return None
    counter = Path(os.environ["FAKE_SCHED_DIR"]) / "failed"
    n = int(counter.read_text()) if counter.exists() else 0
    if n >= int(os.environ.get("FAKE_SCHED_FAIL_TIMES", "1")):
        return None
    counter.write_text(str(n + 1))
    code, _, msg = spec.partition(":")
    return int(code), msg


def submit(script_text, array_var=None, n_tasks=0):
    fail = failing()
    if fail:
        print(fail[1], file=sys.stderr)
        sys.exit(fail[0])
    state = load()
    jid = state["next"]
    state["next"] += 1
    hold = os.environ.get("FAKE_SCHED_HOLD") == "1"
    background = os.environ.get("FAKE_SCHED_BACKGROUND") == "1"
    job = state["jobs"][str(jid)] = {"state": "Q" if hold else "R" if background else "done", "tasks": n_tasks}
    save(state)
    if not hold:
        path = Path(os.environ["FAKE_SCHED_DIR"]) / f"job{jid}.sh"
        path.write_text(script_text)
        for task in (range(1, n_tasks + 1) if n_tasks else [None]):
            env = dict(os.environ)
            if task is not None:
                env[array_var] = str(task)
            if background:
                proc = subprocess.Popen(["bash", str(path)], env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
                job.setdefault("procs", []).append([proc.pid, start_ticks(proc.pid)])
            else:
                run_unlocked(["bash", str(path)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if background:
            save(state)
    return jid


PBS_SERVER = "pbs.example.org"


def pbs_id(jid, task=None, array=False):
    return f"{jid}[{task}].{PBS_SERVER}" if task is not None else f"{jid}[].{PBS_SERVER}" if array else f"{jid}.{PBS_SERVER}"


def pbs_submit(text):
    """qsub of PBS Pro: run the (sub)jobs at once unless held; rerun what qrerun requeued."""
    fail = failing()
    if fail:
        print(fail[1], file=sys.stderr)
        sys.exit(fail[0])
    m = re.search(r"^#PBS -J 1-(\d+)", text, re.M)
    n = int(m.group(1)) if m else 0
    state = load()
    jid = state["next"]
    state["next"] += 1
    hold = os.environ.get("FAKE_SCHED_HOLD") == "1"
    tasks = list(range(1, n + 1)) if n else [None]
    state["jobs"][str(jid)] = {"state": "Q" if hold else "done", "tasks": n, "pbspro": True,
                               "sub": {str(t): {"state": "Q", "run_count": 0} for t in tasks}}
    save(state)
    if not hold:
        path = Path(os.environ["FAKE_SCHED_DIR"]) / f"job{jid}.sh"
        path.write_text(text)
        for task in tasks:
            ident = pbs_id(jid, task)
            for _ in range(10):  # a run, and the reruns qrerun asked for during it
                state = load()
                sub = state["jobs"][str(jid)]["sub"][str(task)]
                sub["state"], sub["run_count"] = "R", sub["run_count"] + 1
                save(state)
                env = {**os.environ, "PBS_JOBID": ident, "PBS_ENVIRONMENT": "PBS_BATCH"}
                if task is not None:
                    env.update(PBS_ARRAY_INDEX=str(task), PBS_ARRAY_ID=pbs_id(jid, array=True))
                run_unlocked(["bash", str(path)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                state = load()
                sub = state["jobs"][str(jid)]["sub"][str(task)]
                rerun = sub.pop("rerun", False)
                sub["state"] = "Q" if rerun else "X"
                save(state)
                if not rerun:
                    break
    print(pbs_id(jid, array=bool(n)))


def pbs_qstat(args):
    """qstat -f -F json [-t] [ID]: the jobs on the system as PBS Pro prints them (-B: the server)."""
    import getpass

    if "-B" in args:
        operators = "" if os.environ.get("FAKE_PBS_NOT_OPERATOR") == "1" else f"{getpass.getuser()}@*"
        print(json.dumps({"timestamp": 1733500000, "pbs_version": "2022.1.3", "pbs_server": PBS_SERVER,
                          "Server": {PBS_SERVER: {"server_state": "Active", "managers": f"root@{PBS_SERVER}",
                                                  "operators": operators, "default_queue": "workq",
                                                  "max_array_size": int(os.environ.get("FAKE_MAX_ARRAY_SIZE",
                                                                                       "10000")),
                                                  "pbs_version": "2022.1.3"}}}, indent=4))
        return
    state = load()
    jobs = {"99.pbs.example.org": {"Job_Name": "theirs", "Job_Owner": "someone@login", "job_state": "R",
                                   "queue": "workq", "server": PBS_SERVER, "run_count": 1}}
    for jid, j in state["jobs"].items():
        if not j.get("pbspro") or not any(s["state"] in ("Q", "R") for s in j["sub"].values()):
            continue  # finished jobs are listed only with -x
        subs = {t: s for t, s in j["sub"].items() if s["state"] in ("Q", "R", "X")}
        common = {"Job_Name": "batchtools", "Job_Owner": f"{getpass.getuser()}@login", "queue": "workq",
                  "server": PBS_SERVER, "Rerunable": "True", "Keep_Files": "n",
                  "Resource_List": {"ncpus": 1, "nodect": 1, "place": "pack", "select": "1:ncpus=1"},
                  "Variable_List": {"PBS_O_HOME": "/home/u", "PBS_O_WORKDIR": "C:\\odd \"quoted\" dir"}}
        if j["tasks"]:
            states = [s["state"] for s in j["sub"].values()]
            left = [t for t, s in j["sub"].items() if s["state"] == "Q"]
            jobs[pbs_id(jid, array=True)] = {**common, "job_state": "B" if "R" in states else "Q", "array": "True",
                                            "array_indices_submitted": f"1-{j['tasks']}",
                                            "array_indices_remaining": ",".join(left) or "-",
                                            "array_state_count": f"Queued:{states.count('Q')} Running:"
                                                                 f"{states.count('R')} Exiting:0 Expired:"
                                                                 f"{states.count('X')} "}
            if "-t" in args:
                for t, s in subs.items():
                    jobs[pbs_id(jid, t)] = {**common, "job_state": s["state"], "array_id": pbs_id(jid, array=True),
                                           "array_index": int(t), "run_count": s["run_count"]}
        elif subs:
            s = subs["None"]
            jobs[pbs_id(jid)] = {**common, "job_state": s["state"], "run_count": s["run_count"]}
    wanted = [a for a in args if a[:1].isdigit()]
    if wanted:
        missing = [w for w in wanted if w not in jobs]
        if missing:
            print(f"qstat: Unknown Job Id {missing[0]}", file=sys.stderr)
            sys.exit(153)
        jobs = {w: jobs[w] for w in wanted}
    out = {"timestamp": 1733500000, "pbs_version": "2022.1.3", "pbs_server": PBS_SERVER}
    if jobs:
        out["Jobs"] = jobs
    print(json.dumps(out, indent=4))


def pbs_kill(ident):
    state = load()
    m = re.match(r"(\d+)(?:\[(\d*)\])?", ident)
    j = state["jobs"].get(m.group(1))
    if j is None:
        print(f"qdel: Unknown Job Id {ident}", file=sys.stderr)
        sys.exit(153)
    for t, s in j["sub"].items():
        if not m.group(2) or t == m.group(2):
            s["state"] = "killed"
    save(state)


def start_ticks(pid):
    """A process's start time (clock ticks since boot), to tell it from a later one with its pid."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def active(state):
    changed = False
    for j in state["jobs"].values():  # a background job runs while one of its processes lives
        if j["state"] == "R" and j.get("procs") and not any(start_ticks(p) == t for p, t in j["procs"]):
            j["state"] = "done"
            changed = True
    if changed:
        save(state)
    return [(jid, j) for jid, j in state["jobs"].items() if j["state"] in ("Q", "R")]


LOCK = []  # the lock file, held while a call runs


def main():
    with open(Path(os.environ["FAKE_SCHED_DIR"]) / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        LOCK.append(lock)
        command()


def run_unlocked(*args, **kwargs):
    """subprocess.run of a job script without the lock: a job that runs within its submit call
    asks the scheduler too (qstat, qrerun, scontrol), and would wait for the lock forever."""
    fcntl.flock(LOCK[0], fcntl.LOCK_UN)
    try:
        return subprocess.run(*args, **kwargs)
    finally:
        fcntl.flock(LOCK[0], fcntl.LOCK_EX)


def command():
    name = Path(sys.argv[0]).name
    args = sys.argv[1:]
    with CALLS.open("a") as fh:
        fh.write(json.dumps([name, *args]) + "\n")
    state = load()
    if name == "qsub" and re.search(r"^#PBS -l select=", Path(args[-1]).read_text(), re.M):
        pbs_submit(Path(args[-1]).read_text())
    elif name == "qstat" and "-F" in args:
        pbs_qstat(args)
    elif name == "qdel" and state["jobs"].get(re.match(r"\d+", args[-1]).group(0), {}).get("pbspro"):
        pbs_kill(args[-1])
    elif name == "qrerun":
        jid, task = re.match(r"(\d+)(?:\[(\d+)\])?", args[-1]).groups()
        if os.environ.get("FAKE_PBS_NOT_OPERATOR") == "1" or jid not in state["jobs"]:
            print(f"qrerun: Unauthorized Request  {args[-1]}", file=sys.stderr)
            sys.exit(159)
        state["jobs"][jid]["sub"][str(task)]["rerun"] = True
        save(state)
    elif name == "qsub":
        text = Path(args[-1]).read_text()
        torque = "#PBS" in text
        m = re.search(r"^#PBS -t 1-(\d+)", text, re.M)
        jid = submit(text, "PBS_ARRAYID", int(m.group(1)) if m else 0)
        if torque:
            print(f"{jid}[].torque.example.org" if m else f"{jid}.torque.example.org")
        else:
            print(f'Your job {jid} ("batchtools") has been submitted')
    elif name == "qselect":
        want = "Q" if args[args.index("-s") + 1] == "QW" else "R"
        for jid, j in active(state):
            if j["state"] == want:
                print(f"{jid}.torque.example.org")
    elif name == "qstat":
        want = "Q" if args[args.index("-s") + 1] == "p" else "R"
        print("job-ID  prior   name       user         state submit/start at     queue          slots ja-task-ID")
        print("-" * 100)
        for jid, j in active(state):
            if j["state"] == want:
                code = "qw" if want == "Q" else "r"
                print(f"   {jid} 0.55500 batchtools root         {code}     11/24/2026 18:00:00 all.q@node     1")
    elif name in ("qdel", "bkill", "scancel"):
        jid = re.match(r"\d+", args[-1]).group(0)
        if jid in state["jobs"]:
            for pid, ticks in state["jobs"][jid].get("procs", []):
                if start_ticks(pid) == ticks:
                    os.killpg(pid, signal.SIGTERM)
            state["jobs"][jid]["state"] = "killed"
            save(state)
        print(f"{args[-1]} killed" if name != "scancel" else "", end="")
    elif name == "bsub":
        jid = submit(sys.stdin.read())
        print(f"Job <{jid}> is submitted to default queue <normal>.")
    elif name == "bjobs":
        want = "Q" if "-p" in args else "R"
        hits = [(jid, j) for jid, j in active(state) if j["state"] == want]
        if not hits:
            print("No unfinished job found")
            sys.exit(255)
        print("JOBID   USER    STAT  QUEUE      FROM_HOST   EXEC_HOST   JOB_NAME   SUBMIT_TIME")
        for jid, _ in hits:
            print(f"{jid}    root    {'PEND' if want == 'Q' else 'RUN '}  normal     host1       host2       batchtools Nov 24 18:00")
    elif name == "docker":
        if "run" in args:
            cmd = args[args.index("run") + 1:]
            worker_at = cmd.index("python")  # the image's python; here: the test's interpreter
            text = "exec " + " ".join([os.environ["FAKE_PYTHON"], *cmd[worker_at + 1:]]) + "\n"
            jid = submit(text)
            print(f"{jid:064x}")
        elif "ps" in args:
            want = "Q" if "status=exited" in args else "R"
            for jid, j in active(state):
                if j["state"] == want:
                    print(f"{jid:012x}"[:12])
        elif "kill" in args:
            print(args[-1])
    elif name == "sbatch":
        text = Path(args[-1]).read_text()
        m = re.search(r"^#SBATCH --array=1-(\d+)", text, re.M)
        jid = submit(text, "SLURM_ARRAY_TASK_ID", int(m.group(1)) if m else 0)
        print(f"Submitted batch job {jid}")
    elif name == "squeue":
        for jid, j in active(state):
            code = "PD" if j["state"] == "Q" else "R"
            if j["tasks"]:
                for t in range(1, j["tasks"] + 1):
                    print(f"{jid}_{t} {code}")
            else:
                print(f"{jid} {code}")
    elif name == "scontrol" and args[:2] == ["show", "job"]:
        jid = args[-1]
        if jid not in state["jobs"]:
            print("slurm_load_jobs error: Invalid job id specified", file=sys.stderr)
            sys.exit(1)
        # what Slurm remembers of an ended job (MinJobAge) when it keeps no accounting
        print(f"JobId={jid} JobName=batchtools JobState={os.environ.get('FAKE_SCONTROL_STATE', 'COMPLETED')} "
              f"Reason=None ExitCode={os.environ.get('FAKE_SCONTROL_EXIT', '0:0')} RunTime=00:00:01")
    elif name == "scontrol":
        print(f"MaxArraySize            = {os.environ.get('FAKE_MAX_ARRAY_SIZE', '1001')}")
    elif name == "sacct":
        if os.environ.get("FAKE_SACCT_DOWN") == "1":  # slurmdbd not answering
            print("sacct: error: Problem talking to the database: Connection refused", file=sys.stderr)
            sys.exit(1)
        recorded = os.environ.get("FAKE_SACCT")
        if not recorded:
            print("Slurm accounting storage is disabled", file=sys.stderr)
            sys.exit(1)
        jobs = next(a.split("=", 1)[1] for a in args if a.startswith("--jobs="))
        text = Path(recorded).read_text()
        for jid in jobs.split(","):
            print(text.replace("{job}", jid), end="")
    elif name == "nvidia-smi":
        samples = Path(os.environ["FAKE_NVIDIA_SMI"]).read_text().split("\n\n")
        counter = Path(os.environ["FAKE_SCHED_DIR"]) / "nvidia-smi.count"
        n = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(n + 1))
        print(samples[min(n, len(samples) - 1)].strip())
    else:
        print(f"fake scheduler: unknown command {name}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
