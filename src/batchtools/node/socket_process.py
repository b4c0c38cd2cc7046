"""A persistent process of the Socket backend: ``python -m batchtools.node.socket_process``.

Reads job collection paths from stdin, one per line, runs each in this process
(no new interpreter per job; loaded functions stay cached) with stdout/stderr
redirected to the collection's log, and answers ``done PATH`` on its original stdout.
"""

from __future__ import annotations

import os
import sys

from ..core.persistence.files import read_pickle
from . import progress
from .node import UPDATE_INTERVAL, log_file_of, report_unreadable, run_collection


def run_redirected(path: str) -> None:
    try:
        jc = read_pickle(path)
    except Exception as e:
        report_unreadable(path, e)
        return
    saved = os.dup(1), os.dup(2)
    fd = os.open(log_file_of(jc), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    out = open(fd, "w", encoding="utf-8", errors="replace", closefd=False)
    sys.stdout.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    old_streams = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = out
    try:
        run_collection(jc, UPDATE_INTERVAL)
    finally:
        out.flush()
        sys.stdout, sys.stderr = old_streams
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (*saved, fd):
            os.close(f)


def main() -> int:
    progress.node_process()
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # stray prints between jobs must not corrupt the protocol
    os.close(devnull)
    for line in sys.stdin:
        path = line.strip()
        if not path:
            continue
        try:
            run_redirected(path)
            channel.write(f"done {path}\n")
        except Exception as e:  # the collection could not even start; report and carry on
            channel.write(f"fail {path} {type(e).__name__}: {e}\n".replace("\n", " ") + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
