"""SSH: jobs on a few loosely connected machines, each reached with ``ssh``.

Each :class:`Worker` probes its node through ``python -m batchtools.helper``
(run with the registry's Python on that node): CPUs, load, running jobs. Jobs
start detached, so they survive the ssh session. ``localhost`` runs the helper
directly, without ssh. Extra ssh options (a config file, a port, a key) come from
``Worker(ssh_args=...)`` or the ``BATCHTOOLS_SSH_ARGS`` environment variable.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shlex
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence

from ..core.contract.backend import ClusterFunctions, SubmitJobResult, make_cluster_functions, restorable
from .commands import run_os_command

log = logging.getLogger("batchtools")
LOCAL = ("localhost",)
PROBE_TTL = 5.0  # seconds a node's probe stays valid while we account started jobs ourselves
# one multiplexed ssh connection per node: a command then costs a round trip, not a handshake. The
# sockets live in a folder only this user can enter (a predictable name in /tmp could be pre-created
# by someone else to hijack the connection). ssh names a socket "<%C: 40 hex digits>.<16 characters>"
# while it binds it, and a Unix socket's path holds at most 107 bytes: under a long TMPDIR the folder
# goes to /tmp instead (ssh would fail with "too long for Unix domain socket").
SOCKET_NAME_LEN = 57
SOCKET_PATH_MAX = 107


def _default_control_dir() -> str:
    for base in (tempfile.gettempdir(), "/tmp"):
        folder = os.path.join(base, f"batchtools-ssh-{os.getuid()}")
        if len(os.fsencode(folder)) + 1 + SOCKET_NAME_LEN <= SOCKET_PATH_MAX:
            break
    return folder


CONTROL_DIR = _default_control_dir()
NODENAME = re.compile(r"^[A-Za-z0-9_.@:\[\]%-]+$")


def private_control_dir() -> str:
    """The folder for ssh's multiplexing sockets: created 0700, refused if someone else owns it or can enter it."""
    try:
        os.mkdir(CONTROL_DIR, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(CONTROL_DIR)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise PermissionError(f"{CONTROL_DIR} (ssh connection sockets) is not a folder private to you "
                              f"(owner uid {st.st_uid}, mode {oct(st.st_mode & 0o777)}); remove it and try again")
    return CONTROL_DIR


def multiplex_args() -> list[str]:
    """ssh options for one shared connection per node, its socket in :func:`private_control_dir`."""
    return ["-o", "ControlMaster=auto", "-o", f"ControlPath={private_control_dir()}/%C", "-o", "ControlPersist=120"]


class Worker:
    """One node for :func:`make_cluster_functions_ssh`.

    ``ncpus`` defaults to the node's CPU count, ``max_load`` to ``ncpus``;
    ``python`` is the interpreter on the node (default: this one's path).

    >>> import batchtools as bt
    >>> bt.Worker("localhost", ncpus=2)
    Worker('localhost', ncpus=2, max_load=2.0, status='unknown')
    """

    def __init__(self, nodename: str, ncpus: int | None = None, max_load: float | None = None,
                 debug: bool = False, python: str | None = None, ssh_args: Sequence[str] | None = None):
        if not isinstance(nodename, str) or not NODENAME.match(nodename) or nodename.startswith("-"):
            raise ValueError(f"nodename: must be a host name (letters, digits and ._@:[]%-, not starting with '-'), "
                             f"got {nodename!r}")
        if ncpus is not None and (isinstance(ncpus, bool) or not isinstance(ncpus, int) or ncpus < 1):
            raise ValueError(f"ncpus: must be a positive int for worker '{nodename}', got {ncpus!r}")
        if max_load is not None and (isinstance(max_load, bool) or not isinstance(max_load, (int, float))
                                     or max_load <= 0):
            raise ValueError(f"max_load: must be a positive number for worker '{nodename}', got {max_load!r}")
        self.nodename = nodename
        self.debug = debug
        self.python = python or sys.executable
        env_args = shlex.split(os.environ.get("BATCHTOOLS_SSH_ARGS", ""))
        self.ssh_args = list(ssh_args) if ssh_args is not None else env_args
        self.status = "unknown"
        self._agent: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self.info: dict | None = None
        self.probed_at = 0.0
        info = self.run("probe") if ncpus is None else None
        self.ncpus = ncpus if ncpus is not None else int(info["ncpus"])
        self.max_load = float(max_load) if max_load is not None else float(self.ncpus)

    def __repr__(self) -> str:
        return f"Worker({self.nodename!r}, ncpus={self.ncpus}, max_load={self.max_load}, status={self.status!r})"

    def __reduce__(self):  # saved with the registry as its settings (no connection), probed ncpus included
        return (Worker, (self.nodename, self.ncpus, self.max_load, self.debug, self.python, self.ssh_args))

    def _argv(self, *args: str) -> list[str]:
        helper = [self.python, "-m", "batchtools.helper", *args]
        if self.nodename in LOCAL:
            return helper
        remote = " ".join(shlex.quote(a) for a in helper)
        return ["ssh", "-o", "BatchMode=yes", *multiplex_args(), *self.ssh_args, "--", self.nodename, remote]

    def _agent_call(self, line: str) -> dict | None:
        """Send one command to the node's agent (started on first use); None if it is gone."""
        with self._lock:
            if self._agent is None or self._agent.poll() is not None:
                log.debug("starting node agent: %s", shlex.join(self._argv("serve")))
                try:
                    self._agent = subprocess.Popen(self._argv("serve"), stdin=subprocess.PIPE,
                                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                                   bufsize=1)
                except OSError:
                    return None
            try:
                self._agent.stdin.write(line + "\n")
                self._agent.stdin.flush()
                for reply in self._agent.stdout:
                    if reply.startswith("[bt] "):
                        return json.loads(reply[5:])
            except (BrokenPipeError, OSError):
                pass
            self.close()
            return None

    def close(self) -> None:
        """End the connection to the node (running jobs carry on)."""
        agent, self._agent = self._agent, None
        if agent is not None:
            for stream in (agent.stdin, agent.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            try:
                agent.wait(timeout=5)
            except subprocess.TimeoutExpired:
                agent.kill()

    def run(self, *args: str) -> dict:
        """Run a node helper command; its JSON answer as a dict. Errors name the worker."""
        answer = self._agent_call(json.dumps(list(args)))
        if answer is not None:
            if "error" in answer:
                raise RuntimeError(f"worker '{self.nodename}': {answer['error']}")
            return answer
        argv = self._argv(*args)  # the agent could not start: run once more to report why
        out = run_os_command(argv[0], argv[1:])
        for line in out["output"]:
            if line.startswith("[bt] "):
                return json.loads(line[5:])
        text = "\n".join(out["output"][-10:])
        if out["exit_code"] == 255:
            raise ConnectionError(f"worker '{self.nodename}': ssh failed (host unreachable or login refused):\n{text}")
        if "No module named" in text:
            raise RuntimeError(f"worker '{self.nodename}': pybatchtools is not installed for {self.python} there:\n{text}")
        if out["exit_code"] == 127 or "not found" in text or "No such file" in text:
            raise RuntimeError(f"worker '{self.nodename}': no Python at {self.python} on the node:\n{text}")
        raise RuntimeError(f"worker '{self.nodename}': helper failed (exit {out['exit_code']}):\n{text}")

    def update(self, reg, force: bool = True) -> dict:
        """Probe the node (load, running jobs) unless a recent probe plus our own count
        of started jobs already says it has room."""
        fresh = self.info is not None and time.time() - self.probed_at < PROBE_TTL
        if force or not fresh or self._judge(self.info) != "available":
            self.info = self.run("probe", str(reg.file_dir))
            self.probed_at = time.time()
        self.status = self._judge(self.info)
        return self.info

    def _judge(self, info: dict) -> str:
        if info["load"] > self.max_load:
            return "max_load"
        if info["n_jobs"] >= self.ncpus:
            return "max_cpus"
        return "available"

    def start(self, reg, job_file: str) -> str:
        pid = self.run("start", job_file)["pid"]
        if self.info is not None:
            self.info["n_jobs"] += 1
        return f"{self.nodename}#{pid}"

    def list(self, reg) -> list[str]:
        return [f"{self.nodename}#{p}" for p in self.run("list", str(reg.file_dir))["pids"]]

    def kill(self, reg, batch_id: str) -> None:
        self.run("kill", batch_id.split("#", 1)[1])


@restorable
def make_cluster_functions_ssh(workers: Sequence[Worker], fs_latency: float = 65) -> ClusterFunctions:
    """Spread job collections over ``workers``: the least loaded one with a free CPU gets the next.

    When every worker is full (or over ``max_load``), ``submit_jobs`` waits with its
    ``sleep`` backoff and tries again. Batch ids are ``node#pid``. ``fs_latency`` (in seconds, 65 as in R:
    the nodes usually share the registry over a network file system) is how long a job may be missing
    from its node before it counts as expired; 0 for nodes that share a local file system.
    """
    workers = list(workers)
    if not workers or not all(isinstance(w, Worker) for w in workers):
        raise TypeError("workers: must be a non-empty list of bt.Worker(...) objects")
    names = [w.nodename for w in workers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"workers: duplicate nodename(s) {dupes}; give each node once (with ncpus=...)")
    by_name = {w.nodename: w for w in workers}

    def submit_job(reg, jc) -> SubmitJobResult:
        for w in workers:
            w.update(reg, force=False)
        free = [w for w in workers if w.status == "available"]
        if not free:
            return SubmitJobResult(1, None, None, "Busy: " + ", ".join(f"{w.nodename}={w.status}" for w in workers))
        weights = [1.0 / (w.max_load / w.ncpus + 0.1) for w in free]
        worker = random.choices(free, weights=weights)[0] if len(free) > 1 else free[0]
        batch_id = worker.start(reg, str(reg.layout.job_collection(jc.job_hash)))
        return SubmitJobResult(0, batch_id, jc.log_file, "OK")

    def kill_job(reg, batch_id: str) -> None:
        node = batch_id.split("#", 1)[0]
        if node not in by_name:
            raise ValueError(f"batch id {batch_id!r} names no known worker")
        by_name[node].kill(reg, batch_id)

    def list_jobs_running(reg) -> list[str]:
        return [b for w in workers for b in w.list(reg)]

    return make_cluster_functions(
        "SSH", submit_job, kill_job=kill_job, list_jobs_running=list_jobs_running, store_job_collection=True,
        fs_latency=fs_latency, poll=0.1, poll_max=5.0, info=", ".join(names),
    )
