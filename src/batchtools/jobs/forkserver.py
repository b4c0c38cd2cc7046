"""A small pre-warmed process that forks one child per job collection.

Started once per Multicore backend as ``python -m batchtools.jobs.forkserver``.
It imports the node code (and numpy, cloudpickle) once, so each job
collection costs a ``fork()`` instead of a new interpreter, and it is
single-threaded, so forking is safe (forking the user's session would not be:
it may hold threads and locks).

Protocol on stdin/stdout, one line each: ``run ID DEVICES PATH`` -> ``pid ID N`` (``DEVICES``:
the GPUs the child may see, comma-separated, ``+`` for none, ``-`` to leave its environment as it is);
whenever a child ends: ``exit N CODE``. A child starts its collection only after
the server has reported its pid (a one-byte go signal on a pipe): should the server
die in between, the child sees end-of-file and exits without running anything, so
a spawn that did not get its pid never starts a job. On end of input the server
exits; running children carry on and still write their results.
"""

from __future__ import annotations

import os
import select
import signal
import sys

from . import node  # preloads the node code: the point of this process


def _child(path: str, go: int, keep: set[int], devices: str = "-") -> None:
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for fd in keep:
        os.close(fd)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    code = 1
    try:
        if os.read(go, 1) != b"g":  # the server died before it reported this child: do not run
            os._exit(0)
        os.close(go)
        if devices != "-":
            os.environ["CUDA_VISIBLE_DEVICES"] = "" if devices == "+" else devices
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
                cmd, _, rest = line.decode().partition(" ")
                if cmd == "run":
                    request, _, rest = rest.partition(" ")
                    devices, _, path = rest.partition(" ")
                    go_r, go_w = os.pipe()
                    pid = os.fork()
                    if pid == 0:
                        _child(path, go_r, {out_fd, wake_r, wake_w, go_w}, devices)
                    os.close(go_r)
                    out.write(f"pid {request} {pid}\n")
                    out.flush()
                    os.write(go_w, b"g")
                    os.close(go_w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
