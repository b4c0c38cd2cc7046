"""A small pre-warmed process that forks one child per job collection.

Started once per Multicore backend as ``python -m batchtools.jobs.forkserver``.
It imports the node code (and numpy, cloudpickle) once, so each job
collection costs a ``fork()`` instead of a new interpreter, and it is
single-threaded, so forking is safe (forking the user's session would not be:
it may hold threads and locks).

Protocol on stdin/stdout, one line each: ``run PATH`` -> ``pid N``;
whenever a child ends: ``exit N CODE``. On end of input it exits; running
children carry on and still write their results.
"""

from __future__ import annotations

import os
import select
import signal
import sys

from . import node  # preloads the node code: the point of this process


def _child(path: str, out_fd: int, wake_r: int, wake_w: int) -> None:
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for fd in (out_fd, wake_r, wake_w):
        os.close(fd)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    code = 1
    try:
        code = node.run_file(path)
    except BaseException:
        code = 1
    finally:
        try:
            sys.stdout.flush()
        except Exception:
            pass
        os._exit(code)


def main() -> int:
    out_fd = os.dup(1)
    out = os.fdopen(out_fd, "w", buffering=1)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    stdin = sys.stdin.buffer
    buf = b""
    open_input = True
    while open_input:
        ready, _, _ = select.select([0, wake_r], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            out.write(f"exit {pid} {os.waitstatus_to_exitcode(status)}\n")
        if 0 in ready:
            chunk = os.read(0, 65536)
            if not chunk:
                open_input = False
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                cmd, _, arg = line.decode().partition(" ")
                if cmd == "run":
                    pid = os.fork()
                    if pid == 0:
                        _child(arg, out_fd, wake_r, wake_w)
                    out.write(f"pid {pid}\n")
    del stdin
    return 0


if __name__ == "__main__":
    sys.exit(main())
