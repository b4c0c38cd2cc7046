"""Node entry point: ``python -m batchtools.worker JOB_COLLECTION_FILE``.

Redirects the process's stdout and stderr (file descriptors, so output of C
code is caught too) to the collection's log file and runs its jobs.
"""

from __future__ import annotations

import os
import signal
import sys

from ..core.files import read_pickle
from .execute import TERMINATING, _run_collection

UPDATE_INTERVAL = 1.0


def redirect_output(log_file: str) -> None:
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    # one Python-level stream for both, so tracebacks and prints stay in order
    sys.stdout = sys.stderr = open(1, "w", encoding="utf-8", errors="replace", closefd=False)


def _terminated(signum, frame) -> None:
    # a scheduler ending the job (walltime, memory, scancel) sends SIGTERM before SIGKILL:
    TERMINATING.set()
    # raise, so the running job is recorded as an error with this reason
    raise SystemExit(f"terminated by {signal.Signals(signum).name} (scheduler's time or memory limit, or a kill)")


def run_file(path: str) -> int:
    """Run the job collection stored at ``path``; 0 if it ran (jobs may have failed)."""
    jc = read_pickle(path)
    log_file = jc.log_file
    if jc.array_jobs and jc.array_var and os.environ.get(jc.array_var):
        root, ext = os.path.splitext(log_file)
        log_file = f"{root}-{os.environ[jc.array_var]}{ext}"
    if log_file:
        redirect_output(log_file)
    signal.signal(signal.SIGTERM, _terminated)
    if os.environ.get("BATCHTOOLS_DEBUG"):
        from ..debug import enable_debug

        enable_debug()
    try:
        _run_collection(jc, UPDATE_INTERVAL)
    finally:
        sys.stdout.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m batchtools.worker JOB_COLLECTION_FILE", file=sys.stderr)
        return 2
    return run_file(argv[0])
