"""HyperQueue: job collections as tasks of a running HyperQueue server (PyPI ``hyperqueue``).

One job collection is one HQ job whose task runs ``python -m batchtools.worker jobs/<hash>.pkl``;
a chunk submitted with ``chunks_as_arrayjobs`` is one HQ job with one task per job of the chunk
(HQ's array), the node picking its job from ``BATCHTOOLS_ARRAY_TASK``. ``ncpus``, ``gpus`` and
``walltime`` become the task's resource request (``walltime`` is HQ's ``min_time``: the task only
starts on a worker that has that long left, and automatic allocation asks for long enough
allocations; coreutils' ``timeout`` ends the task once it has run that long).

What HQ's Python API offers decides the rest: it submits task graphs and reports per HQ job how
many tasks finished, failed and whether the job is complete, but it cannot cancel a task nor tell
a queued task from a running one. So listing asks HQ for the job counters of the registry's
unfinished collections (one request per poll, whatever their number) and calls a collection
running once one of its jobs started; killing writes a cancel marker (``jobs/<hash>.cancel``)
that the node obeys within a second, and a task still waiting in HQ exits as soon as it starts.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

from ..core.contract.backend import Capabilities, ClusterFunctions, SubmitJobResult, make_cluster_functions
from ..core.jobstate.state import started_batches
from ..core.persistence.files import atomic_write_bytes
from ..core.workerpool.pool import FINAL, pool_state
from ..node.node import CANCEL_ENV

ARRAY_VAR = "BATCHTOOLS_ARRAY_TASK"
INSTALL = 'pip install "pybatchtools[engines]" (the PyPI package hyperqueue)'
PING_EVERY = 2.0  # seconds a successful contact with the server counts as "reachable"


class _Snapshot(Exception):
    """Raised from HQ's wait callback to take one look at the job counters and return."""

    def __init__(self, status: dict) -> None:
        super().__init__("snapshot")
        self.status = status


def _import_hq():
    try:
        import hyperqueue
        from hyperqueue.ffi.protocol import ResourceRequest
    except ImportError as e:  # pragma: no cover - the extra is installed by make install
        raise ImportError(f"the HyperQueue backend needs the hyperqueue package: {INSTALL}") from e
    return hyperqueue, ResourceRequest


def split_batch_id(batch_id: str) -> tuple[int, int | None, str]:
    """``"12@uid"`` -> (12, None, uid); ``"12.3@uid"`` (task 3 of an array) -> (12, 3, uid)."""
    left, _, uid = str(batch_id).rpartition("@")
    job, _, task = left.partition(".")
    return int(job), (int(task) if task else None), uid


class HQConnection:
    """The connection to one HQ server, opened on first use; HQ calls are serialised by a lock."""

    def __init__(self, server_dir: Path, cluster: Any = None) -> None:
        self.server_dir = server_dir
        self.cluster = cluster  # a hyperqueue.LocalCluster we keep alive, if given one
        self.lock = threading.RLock()
        self._client = None
        self.uid: str | None = None
        self.reached = 0.0

    def _unreachable(self, why: str) -> ConnectionError:
        return ConnectionError(
            f"server: cannot reach the HyperQueue server of {self.server_dir} ({why}); start one with "
            f"`hq server start --server-dir {self.server_dir}` (and workers: `hq worker start`), or pass a "
            "running hyperqueue.LocalCluster")

    def client(self):
        with self.lock:
            if self._client is None:
                hyperqueue, _ = _import_hq()
                access = self.server_dir / "hq-current" / "access.json"
                if not access.is_file():
                    raise self._unreachable(f"no {access}")
                try:
                    uid = json.loads(access.read_text())["server_uid"]
                    self._client = hyperqueue.Client(self.server_dir)
                except Exception as e:
                    raise self._unreachable(f"{type(e).__name__}: {e}") from e
                self.uid = uid
                self.reached = time.time()
            return self._client

    def counters(self, job_ids: list[int]) -> dict[int, dict]:
        """``{hq job id: {"finished", "failed", "total", "completed"}}`` for the jobs HQ knows."""

        def stop(status):
            raise _Snapshot(status)

        with self.lock:
            client = self.client()
            try:
                client.connection.wait_for_jobs(sorted(job_ids), stop)
            except _Snapshot as snap:
                self.reached = time.time()
                return {int(k): v for k, v in snap.status.items()}
            except Exception as e:
                self._client = None  # reconnect next time (the server may have been restarted)
                raise self._unreachable(f"{type(e).__name__}: {e}") from e
        return {}

    def ping(self) -> None:
        """Raise ConnectionError unless the server answered within the last few seconds."""
        if time.time() - self.reached > PING_EVERY or self._client is None:
            self.counters([])


def make_request(res: dict, gpu_resource: str):
    """HQ's resource request for a task with resources ``res`` (None: HQ's default, one CPU)."""
    _, ResourceRequest = _import_hq()
    cpus = int(res.get("ncpus") or 1)
    extra = {gpu_resource: int(res["gpus"])} if res.get("gpus") else None
    walltime = res.get("walltime")
    min_time = datetime.timedelta(seconds=float(walltime)) if walltime else None
    if cpus == 1 and extra is None and min_time is None:
        return None
    return ResourceRequest(cpus=cpus, resources=extra, min_time=min_time)


def _server(server) -> tuple[Path, Any]:
    if server is None:
        return Path(os.environ.get("HQ_SERVER_DIR") or Path.home() / ".hq-server"), None
    if isinstance(server, (str, os.PathLike)):
        return Path(server).expanduser().absolute(), None
    cluster = getattr(server, "cluster", None)
    if cluster is not None and hasattr(cluster, "server_dir") and hasattr(server, "client"):
        return Path(cluster.server_dir), server  # a hyperqueue.LocalCluster
    raise TypeError("server: give an HQ server directory (str or path; default $HQ_SERVER_DIR or ~/.hq-server) "
                    f"or a hyperqueue.LocalCluster, got {type(server).__name__}")


def make_cluster_functions_hyperqueue(server=None, array_jobs: bool = True,
                                      gpu_resource: str = "gpus/nvidia") -> ClusterFunctions:
    """Run job collections as tasks of a HyperQueue server.

    ``server``: the server directory (default: ``$HQ_SERVER_DIR`` or ``~/.hq-server``, as for
    ``hq``) or a ``hyperqueue.LocalCluster``. The connection is opened on first use, and
    ``submit_jobs`` checks that the server answers before it writes anything. Resources:
    ``ncpus`` (HQ ``cpus``), ``gpus`` (the HQ resource ``gpu_resource``), ``walltime``
    (HQ ``min_time``, enforced on the node with ``timeout``). The registry must be on a
    file system the HQ workers share.

    >>> import batchtools as bt
    >>> bt.make_cluster_functions_hyperqueue("/shared/hq-server")
    ClusterFunctions(HyperQueue, server_dir=/shared/hq-server)
    """
    if not isinstance(array_jobs, bool):
        raise TypeError("array_jobs: must be True or False")
    if not isinstance(gpu_resource, str) or not gpu_resource:
        raise TypeError("gpu_resource: must be the name of HQ's GPU resource, e.g. 'gpus/nvidia'")
    server_dir, cluster = _server(server)
    hq = HQConnection(server_dir, cluster)
    recent: dict[int, list[str]] = {}  # HQ jobs submitted by this session -> their batch ids

    def submit_job(reg, jc) -> SubmitJobResult:
        hyperqueue, _ = _import_hq()
        client = hq.client()
        command = [jc.python, "-m", "batchtools.worker", str(reg.layout.job_collection(jc.job_hash))]
        walltime = jc.resources.get("walltime")
        if walltime:  # HQ's Python API cannot set a task time limit: coreutils' timeout is one
            command = ["timeout", "--signal=TERM", "--kill-after=30", str(math.ceil(float(walltime))), *command]
        env = {CANCEL_ENV: "1"}
        rq = make_request(jc.resources, gpu_resource)
        job = hyperqueue.Job(max_fails=None, name=jc.job_hash)
        n = len(jc.jobs) if jc.array_jobs else 1
        for i in range(1, n + 1):
            log = reg.layout.array_log(jc.job_hash, i) if jc.array_jobs else jc.log_file
            job.program(command, env={**env, ARRAY_VAR: str(i)} if jc.array_jobs else env, cwd=jc.work_dir,
                        stdout=None, stderr=str(log), resources=rq)
        try:
            with hq.lock:
                job_id = client.submit(job).id
        except Exception as e:
            return SubmitJobResult(101, None, None, f"HyperQueue refused the job: {type(e).__name__}: {e}")
        hq.reached = time.time()
        if jc.array_jobs:  # HQ numbers the tasks of a job from 0
            batch = [f"{job_id}.{i}@{hq.uid}" for i in range(n)]
            recent[job_id] = batch
            return SubmitJobResult(0, batch, [reg.layout.array_log_name(jc.job_hash, i) for i in range(1, n + 1)])
        recent[job_id] = [f"{job_id}@{hq.uid}"]
        return SubmitJobResult(0, recent[job_id][0], jc.log_file)

    def candidates(reg) -> dict[int, set[str]]:
        """This server's HQ jobs of ``reg`` that may still be on the system -> their batch ids."""
        suffix = f"@{hq.uid}"
        st = reg.status
        unfinished = st["submitted"].notna().to_numpy() & st["done"].isna().to_numpy()
        batch = [b for b in st["batch_id"].to_numpy()[unfinished] if isinstance(b, str) and b.endswith(suffix)]
        pool = pool_state(reg)
        if pool is not None:
            batch += [w["batch_id"] for w in pool.workers.values()
                      if isinstance(w.get("batch_id"), str) and w["batch_id"].endswith(suffix)
                      and w.get("state") not in FINAL]
        out: dict[int, set[str]] = {}
        for b in batch:
            out.setdefault(split_batch_id(b)[0], set()).add(b)
        for job_id, ids in recent.items():
            out.setdefault(job_id, set()).update(ids)
        return out

    def list_jobs(reg) -> tuple[list[str], list[str]]:
        if hq.uid is None and not recent:
            hq.client()  # the server's uid tells this server's batch ids from another's
        ours = candidates(reg)
        if not ours:
            return [], []
        counters = hq.counters(list(ours))
        for job_id in [j for j in recent if counters.get(j, {}).get("completed", True)]:
            del recent[job_id]
        started = started_batches(reg)
        queued, running = [], []
        for job_id, ids in ours.items():
            c = counters.get(job_id)
            if c is None or c["completed"]:
                continue
            for b in ids:
                (running if b in started else queued).append(b)
        return queued, running

    def kill_job(reg, batch_id: str) -> None:
        _, task, _ = split_batch_id(batch_id)
        st = reg.status
        hashes = st["job_hash"].to_numpy()[st["batch_id"].to_numpy() == batch_id]
        pool = pool_state(reg)
        workers = [w for w, info in (pool.workers.items() if pool is not None else ()) if info["batch_id"] == batch_id]
        job_hash = hashes[0] if len(hashes) else (workers[0] if workers else None)
        if job_hash is None:
            raise ValueError(f"batch_id: {batch_id} is not a job collection of this registry")
        # the node picks its array task by a 1-based number, HQ counts tasks from 0
        marker = reg.layout.cancel_marker(job_hash, None if task is None else task + 1)
        atomic_write_bytes(marker, b"")

    return make_cluster_functions(
        "HyperQueue", submit_job, kill_job=kill_job, list_jobs=list_jobs, array_var=ARRAY_VAR,
        store_job_collection=True, poll=0.2, poll_max=1.0, info=f"server_dir={server_dir}",
        capabilities=Capabilities(array_jobs=array_jobs, start_reports=True, gpus=True), ping=hq.ping,
    )
