#!/usr/bin/env python3
"""``sbatch`` under a cap on live jobs per user, in front of the next ``sbatch`` on the PATH (the
fake scheduler's, or the real Slurm's): a submission while ``$FAKE_CAP`` jobs it passed on are
still queued or running (as ``squeue`` lists them) is refused with Slurm's own words for
``MaxSubmitJobsPerUser`` of a QOS, exit status 1, as the real ``sbatch`` does. Only the jobs
submitted through this wrapper count, so other users of a shared Slurm change nothing.

Each call is logged to ``$FAKE_CAP_DIR/sbatch.log`` as one JSON line: time, outcome
(``accepted`` with the job id, or ``refused``) and how many of its jobs were live.
"""

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REFUSAL = ("sbatch: error: QOSMaxSubmitJobPerUserLimit\n"
           "sbatch: error: Batch job submission failed: Job violates accounting/QOS policy "
           "(job submit limit, user's size and/or time limits)\n")


def next_command(name: str) -> str:
    """``name`` as found on the PATH after this wrapper's own folder."""
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [d for d in os.environ["PATH"].split(os.pathsep) if os.path.abspath(d) != here]
    found = shutil.which(name, path=os.pathsep.join(rest))
    if found is None:
        sys.exit(f"capped sbatch: no {name} on the PATH after {here}")
    return found


def main() -> int:
    cap = int(os.environ["FAKE_CAP"])
    folder = Path(os.environ["FAKE_CAP_DIR"])
    ours = folder / "submitted.txt"
    with open(folder / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one submission at a time, as the controller does
        mine = set(ours.read_text().split()) if ours.exists() else set()
        listing = subprocess.run([next_command("squeue"), "-h", "-r", "-o", "%i %t"], capture_output=True, text=True)
        listed = {line.split()[0].split("_")[0] for line in listing.stdout.splitlines() if line.split()}
        live = len(mine & listed)
        record = {"time": time.time(), "live": live}
        if live >= cap:
            sys.stderr.write(REFUSAL)
            record["outcome"] = "refused"
            code = 1
        else:
            proc = subprocess.run([next_command("sbatch"), *sys.argv[1:]], capture_output=True, text=True)
            sys.stdout.write(proc.stdout)
            sys.stderr.write(proc.stderr)
            code = proc.returncode
            words = proc.stdout.split()
            if code == 0 and words and words[-1].isdigit():
                with open(ours, "a") as fh:
                    fh.write(words[-1] + "\n")
                record.update(outcome="accepted", job=words[-1])
            else:
                record["outcome"] = f"failed {code}"
        with open(folder / "sbatch.log", "a") as fh:
            fh.write(json.dumps(record) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
