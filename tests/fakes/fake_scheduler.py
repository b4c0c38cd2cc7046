#!/usr/bin/env python3
"""A stand-in for qsub/qselect/qdel (TORQUE), qsub/qstat/qdel (SGE), bsub/bjobs/bkill
(LSF, OpenLava), docker, sbatch/squeue/scancel/scontrol/sacct (Slurm) and nvidia-smi, dispatched
on the name it is called by. It replays the output formats of the real tools (from their
documentation) and keeps its state in $FAKE_SCHED_DIR/state.json.

sacct answers with the recorded output in the file $FAKE_SACCT once per job asked about (its
``{job}`` replaced by the job's id), or, without it, as a Slurm without accounting does;
nvidia-smi prints the samples in $FAKE_NVIDIA_SMI one after another (samples are separated by
blank lines; the last one is repeated).

Submitted scripts run at once, synchronously (array tasks one after another with the
scheduler's task variable set), unless $FAKE_SCHED_HOLD=1: then jobs stay queued, so
listing and killing can be checked. $FAKE_SCHED_FAIL="exit:message" makes the next N
submissions fail (N = $FAKE_SCHED_FAIL_TIMES, default 1) with that exit code and message.
"""

import json
import os
import re
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
    state["jobs"][str(jid)] = {"state": "Q" if hold else "done", "tasks": n_tasks}
    save(state)
    if not hold:
        path = Path(os.environ["FAKE_SCHED_DIR"]) / f"job{jid}.sh"
        path.write_text(script_text)
        for task in (range(1, n_tasks + 1) if n_tasks else [None]):
            env = dict(os.environ)
            if task is not None:
                env[array_var] = str(task)
            subprocess.run(["bash", str(path)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return jid


def active(state):
    return [(jid, j) for jid, j in state["jobs"].items() if j["state"] in ("Q", "R")]


def main():
    name = Path(sys.argv[0]).name
    args = sys.argv[1:]
    with CALLS.open("a") as fh:
        fh.write(json.dumps([name, *args]) + "\n")
    state = load()
    if name == "qsub":
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
