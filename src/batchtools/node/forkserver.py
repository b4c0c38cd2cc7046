"""A small pre-warmed process that forks the processes that run job collections.

Started once per Multicore backend as ``python -m batchtools.node.forkserver`` by ``batchtools.backends.forkclient.ForkServer``.
It imports the node code (and numpy, cloudpickle) once, so a job collection
costs a ``fork()`` instead of a new interpreter, and it is single-threaded,
so forking is safe (forking the user's session would not be: it may hold
threads and locks).

Protocol on stdin/stdout, one line each: ``run ID DEVICES PATH`` -> ``pid ID N`` (the
process now running the collection; ``DEVICES``: the GPUs it may see, comma-separated, ``+``
for none, ``-`` to leave its environment as it is); when that collection ends: ``exit N CODE``;
``import MOD ...`` (no answer) asks the server to import installed modules
before its next fork. On end of input it exits; running children carry on and
still write their results.

A process gets the path of its next collection on its own pipe only after the
server has reported its pid: should the server die in between, the process reads
end-of-file and exits without running anything, so a ``run`` that got no pid never
runs a job. A process whose collection ended reports that before its (slow)
teardown, so its slot is free at once.

Warm processes (``BATCHTOOLS_WARM=0`` turns both off):

- Warm imports. A job collection names the installed modules its jobs will
  import (``JobCollection.preload``: the registry's packages and what its pickled
  functions refer to), and every child reports the installed modules it imported
  (say, what scikit-learn imports lazily during a fit). The server imports both
  before its next fork, so a module costs one import per server, not one per job.
  Only modules of installed packages and the standard library are imported
  (never the user's own code), each at most once; packages known not to survive
  a fork (MPI, TensorFlow, JAX, Ray, Spark, CuPy, Numba) are left out. What is
  asked for is imported before the next fork (a hand-over to an idle child waits
  for nothing).
- Reuse. A child whose collection ended without being told to stop (SIGTERM)
  and was not a pool worker (the pool tells workers apart by their batch ids)
  reports ``exit N 0`` for it and waits; the next ``run`` goes to such an idle
  child instead of a new fork, so its pid runs one collection after another, as
  a Socket process does (the node code restores the working directory, the
  environment and the output streams between collections, and seeds every job).
  A reused child imports what it lacks itself, once; new forks (the first ones,
  and after a child ended) get everything the server imported. Idle children
  are retired after ``IDLE_SECONDS``; a child ends after ``MAX_RUNS`` collections.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import os
import select
import signal
import sys
import threading
import time
from dataclasses import dataclass

from ..core.persistence.files import read_pickle
from ..core.persistence.pickling import installed_path
from . import checkpoint, node  # preloads the node code: the point of this process
from .session import TERMINATING

# top-level packages never imported into the server: they start threads or runtimes on import
# that a forked child cannot use
NO_PRELOAD = frozenset({"mpi4py", "tensorflow", "jax", "jaxlib", "ray", "pyspark", "cupy", "numba"})
WARM = os.environ.get("BATCHTOOLS_WARM", "1") != "0"
IDLE_SECONDS = 10.0  # an idle child is retired after this long without a collection
MAX_RUNS = 1000  # ... or after this many collections


class Preloader:
    """The modules this server imported (or refused) and those it was asked to import."""

    def __init__(self) -> None:
        self.wanted: set[str] = set()
        self.tried: set[str] = set()
        self.tops: dict[str, bool] = {}

    def allowed(self, name: str) -> bool:
        top = name.partition(".")[0]
        if top not in self.tops:
            ok = top not in NO_PRELOAD and not top.startswith("_")
            if ok:
                try:
                    spec = importlib.util.find_spec(top)  # a top-level name: finds, imports nothing
                except (ImportError, ValueError):
                    spec = None
                where = list(spec.submodule_search_locations or []) if spec is not None else []
                if spec is not None and not where and spec.origin:
                    where = [spec.origin]
                ok = spec is not None and (spec.origin in ("built-in", "frozen") or top == "batchtools"
                                           or bool(where) and all(installed_path(w) for w in where))
            self.tops[top] = ok
        return self.tops[top]

    def want(self, names) -> None:
        if WARM:
            self.wanted.update(n for n in names if n and n not in sys.modules and n not in self.tried)

    def run(self) -> None:
        """Import what was asked for (parents before their submodules); failures are skipped."""
        if not self.wanted:
            return
        threads = threading.active_count()
        for name in sorted(self.wanted):
            self.tried.add(name)
            if name in sys.modules or not self.allowed(name):
                continue
            try:
                importlib.import_module(name)
            except (Exception, SystemExit):
                pass
        self.wanted.clear()
        if threading.active_count() > threads:
            print("batchtools fork server: a preloaded module started a thread; set BATCHTOOLS_WARM=0 "
                  "if jobs hang", file=sys.stderr)


def _write_lines(fd: int, lines: list[str]) -> None:
    """Write whole lines in pieces of at most PIPE_BUF bytes (atomic: lines of children never mix)."""
    chunk = ""
    for line in lines:
        if len(chunk) + len(line) > 4000:
            os.write(fd, chunk.encode())
            chunk = ""
        chunk += line
    if chunk:
        os.write(fd, chunk.encode())


def _new_modules(before: set[str]) -> list[str]:
    """``m NAME`` lines for the installed modules imported since ``before``."""
    out = []
    for name, mod in list(sys.modules.items()):
        file = getattr(mod, "__file__", None)
        if name not in before and isinstance(file, str) and installed_path(file):
            out.append(f"m {name}\n")
    return out


def _silence(devnull: int) -> None:
    sys.stdout = sys.__stdout__
    sys.stderr = sys.__stderr__
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def _read_path(fd: int) -> str | None:
    """The next ``DEVICES PATH[<tab>FILE_DIR]`` line sent to this child, or None when the server retires it."""
    buf = b""
    while not buf.endswith(b"\n"):
        part = os.read(fd, 4096)
        if not part:
            return None
        buf += part
    return buf.decode().strip()


def run_collections(cmd_r: int, report_w: int, close: list[int], report_modules: bool = True) -> None:
    """Run the collections whose paths arrive on ``cmd_r``, until end of input or reuse ends, then
    end the process. After each one, ``i PID`` on ``report_w`` says this process waits for the next
    one, ``d PID CODE`` that it ends; ``report_modules``: also ``m NAME`` for each installed module
    it imported (a fork server imports those before its next fork)."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for fd in close:
        os.close(fd)
    devnull = os.open(os.devnull, os.O_RDWR)
    code = 0
    runs = 0
    cuda = os.environ.get("CUDA_VISIBLE_DEVICES")
    report_modules = WARM and report_modules
    try:
        _silence(devnull)
        while True:
            line = _read_path(cmd_r)
            if line is None:  # retired, or the server died before it reported this process
                break
            devices, _, path = line.partition(" ")
            path, _, file_dir = path.partition("\t")  # a registry folder never holds a tab
            if devices == "-":  # as the process started (a reused process may have had others)
                if cuda is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = cuda
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = "" if devices == "+" else devices
            checkpoint.new_run()
            before = set(sys.modules) if report_modules else set()
            # a pool worker's process is not reused: the pool tells workers apart by their batch ids
            try:
                pool_worker = bool(getattr(read_pickle(path), "pool", None))
            except Exception:  # unreadable: the node reports that for its jobs; no reuse after it
                pool_worker = True
            code = node.run_file(path, file_dir or None)
            runs += 1
            sys.stdout.flush()
            _silence(devnull)
            lines = _new_modules(before) if report_modules else []
            if not WARM or pool_worker or TERMINATING.is_set() or runs >= MAX_RUNS:
                _write_lines(report_w, [*lines, f"d {os.getpid()} {code}\n"])
                break
            _write_lines(report_w, [*lines, f"i {os.getpid()}\n"])
    except OSError:  # the server is gone (its report pipe broke): everything is written, end
        pass
    except BaseException:
        code = 1
    finally:
        os._exit(code)


@dataclass
class Child:
    pid: int
    cmd_w: int  # the server's end of the pipe that hands this child its next collection
    busy: bool = True
    idle_since: float = 0.0
    runs: int = 1


def main() -> int:
    out_fd = os.dup(1)
    out = os.fdopen(out_fd, "w", buffering=1)
    os.dup2(2, 1)  # whatever an imported module prints must not reach the protocol channel
    preloader = Preloader()
    children: dict[int, Child] = {}
    report_r, report_w = os.pipe()
    reports = b""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    buf = b""
    open_input = True

    def retire(child: Child) -> None:
        if child.cmd_w >= 0:
            os.close(child.cmd_w)  # the child reads end of input and exits
            child.cmd_w = -1

    def hand_over(child: Child, job: str, request: str) -> bool:
        """Report the pid, then give the process its ``DEVICES PATH`` (a dead server's process gets none)."""
        out.write(f"pid {request} {child.pid}\n")
        try:
            os.write(child.cmd_w, f"{job}\n".encode())
        except OSError:  # it died meanwhile: the master sees it end
            retire(child)
            return False
        return True

    def start(request: str, job: str) -> None:
        """Run ``job`` (``DEVICES PATH``) in the process that became idle last, or in a new fork."""
        for child in sorted((c for c in children.values() if not c.busy and c.cmd_w >= 0),
                            key=lambda c: -c.idle_since):
            if child.runs >= MAX_RUNS:
                retire(child)
                continue
            child.busy, child.runs = True, child.runs + 1
            hand_over(child, job, request)
            return
        preloader.run()  # only a new fork needs what was asked for or learned since the last one
        cmd_r, cmd_w = os.pipe()
        gc.freeze()  # the child's collector then leaves the inherited objects (and their pages) alone
        pid = os.fork()
        if pid == 0:
            run_collections(cmd_r, report_w, [out_fd, wake_r, wake_w, report_r, cmd_w]
                   + [c.cmd_w for c in children.values() if c.cmd_w >= 0])
        os.close(cmd_r)
        children[pid] = child = Child(pid, cmd_w)
        hand_over(child, job, request)

    while open_input or any(not c.busy and c.cmd_w >= 0 for c in children.values()):
        idle = [c for c in children.values() if not c.busy and c.cmd_w >= 0]
        timeout = None if not idle else max(0.0, min(c.idle_since for c in idle) + IDLE_SECONDS - time.monotonic())
        ready, _, _ = select.select(([0] if open_input else []) + [wake_r, report_r], [], [], timeout)
        if wake_r in ready:
            os.read(wake_r, 4096)
        if report_r in ready:
            reports += os.read(report_r, 65536)
            lines, _, reports = reports.rpartition(b"\n")
            for line in lines.decode().splitlines():
                kind, _, arg = line.partition(" ")
                if kind == "m":
                    preloader.want([arg])
                elif kind == "i" and int(arg) in children and children[int(arg)].busy:
                    child = children[int(arg)]
                    child.busy, child.idle_since = False, time.monotonic()
                    out.write(f"exit {child.pid} 0\n")
                elif kind == "d":  # a process that ends: its work is written, its slot is free
                    pid_s, _, code = arg.partition(" ")
                    child = children.get(int(pid_s))
                    if child is not None and child.busy:
                        child.busy = False
                        retire(child)
                        out.write(f"exit {pid_s} {code}\n")
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            child = children.pop(pid, None)
            if child is not None:
                retire(child)
            if child is None or child.busy:
                out.write(f"exit {pid} {os.waitstatus_to_exitcode(status)}\n")
        now = time.monotonic()
        for child in children.values():
            if not child.busy and (now - child.idle_since >= IDLE_SECONDS or not open_input):
                retire(child)
        if open_input and 0 in ready:
            chunk = os.read(0, 65536)
            if not chunk:  # the master closed its end: let the idle processes go now, not at their timeout
                open_input = False
                for child in children.values():
                    if not child.busy:
                        retire(child)
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                cmd, _, arg = line.decode().partition(" ")
                if cmd == "import":
                    preloader.want(arg.split())
                elif cmd == "run":
                    request, _, job = arg.partition(" ")
                    start(request, job)
    return 0


if __name__ == "__main__":
    sys.exit(main())
