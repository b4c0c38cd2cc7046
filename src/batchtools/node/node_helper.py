"""Node helper for the SSH backend: ``python -m batchtools.helper CMD [ARGS]``.

Runs on the node with the registry's Python (R's ``linux-helper``). Prints one
JSON object on a line starting with ``[bt] ``:

- ``probe [FILE_DIR]``: ncpus, 1-minute load, running batchtools jobs (of FILE_DIR), versions
- ``start JOB_FILE``: start ``python -m batchtools.worker JOB_FILE`` detached (own session, so it
  outlives the ssh connection); returns its pid
- ``list FILE_DIR``: pids of running job processes of that registry
- ``kill PID``: TERM the job's process group, KILL after a second
- ``serve``: read such commands from stdin, one JSON list ``["cmd", "arg", ...]`` per line (so paths
  may hold spaces), answering each (the SSH backend keeps one such agent per node, so a command
  costs a round trip instead of a login)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from .._version import __version__
from ..core.persistence.layout import Layout

MARK = "[bt] "


def _job_processes(file_dir: str | None) -> list[int]:
    import psutil

    jobs_dir = str(Layout(file_dir).dir("jobs")) if file_dir else None
    pids = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = p.info.get("cmdline") or []
        if "batchtools.worker" in cmd and (jobs_dir is None or any(a.startswith(jobs_dir) for a in cmd)):
            pids.append(p.info["pid"])
    return sorted(pids)


def probe(file_dir: str | None = None) -> dict:
    return {"ncpus": os.cpu_count() or 1, "load": os.getloadavg()[0], "n_jobs": len(_job_processes(file_dir)),
            "python": sys.executable, "version": __version__}


_children: list[subprocess.Popen] = []


def start(job_file: str) -> dict:
    _children[:] = [c for c in _children if c.poll() is None]  # reap finished jobs
    proc = subprocess.Popen([sys.executable, "-m", "batchtools.worker", job_file], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            close_fds=True)
    _children.append(proc)
    return {"pid": proc.pid}


def kill(pid: int) -> dict:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return {"killed": False}
    for _ in range(50):
        time.sleep(0.02)
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return {"killed": True}
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return {"killed": True}


def answer(cmd: str, args: list[str]) -> dict | None:
    if cmd == "probe":
        out = probe(args[0] if args else None)
    elif cmd == "start":
        out = start(args[0])
    elif cmd == "list":
        out = {"pids": _job_processes(args[0])}
    elif cmd == "kill":
        out = kill(int(args[0]))
    else:
        return None
    return out


def serve() -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            parts = json.loads(line)
            if not isinstance(parts, list) or not parts or not all(isinstance(p, str) for p in parts):
                raise ValueError("expected a JSON list of strings")
        except ValueError as e:
            print(MARK + json.dumps({"error": f"unreadable command {line.strip()[:80]!r}: {e}"}), flush=True)
            continue
        try:
            out = answer(parts[0], parts[1:])
            out = out if out is not None else {"error": f"unknown command {parts[0]!r}"}
        except Exception as e:
            out = {"error": f"{type(e).__name__}: {e}"}
        print(MARK + json.dumps(out), flush=True)
    return 0


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    if argv[0] == "serve":
        return serve()
    out = answer(argv[0], argv[1:])
    if out is None:
        print(f"unknown command {argv[0]!r}", file=sys.stderr)
        return 2
    print(MARK + json.dumps(out), flush=True)
    return 0
