"""Dask: job collections as tasks of a Dask cluster, each running the node in a process of its own.

Any Dask deployment runs a registry's jobs: a ``distributed.LocalCluster``, dask-jobqueue's
``SLURMCluster``/``PBSCluster``, dask-kubernetes, dask-gateway, a cloud cluster. A task runs
the collection in a process forked from a warm fork server of the worker's
(:mod:`batchtools.jobs.engine_task`), so the node owns its process (log, signals, environment)
and writes results and status like on any backend; the registry must be on a file system the
workers share. The task carries the pickled collection itself: the master writes no collection file. Tasks are fire-and-forget: they run on when this session ends.

Listing asks the scheduler once per poll for the states of the ``batchtools-*`` tasks (waiting,
queued, no-worker, or processing = sent to a worker; such a task counts as running once one of
its jobs started). Killing cancels the task on the
scheduler and ends its process on the worker (``Client.run``), since Dask cannot interrupt a
task's thread. ``gpus`` becomes the Dask worker resource ``GPU`` (start workers with
``--resources GPU=n``); other resources are the deployment's business (worker sizes).
"""

from __future__ import annotations

import threading

from ..core.backend import Capabilities, ClusterFunctions, SubmitJobResult, make_cluster_functions
from ..core.files import cloud_dumps
from ..core.state import started_batches
from ..jobs.engine_task import kill_collection_process, run_collection_process

INSTALL = 'pip install "pybatchtools[engines]" (the PyPI package distributed)'
PREFIX = "batchtools-"
RUNNING = {"processing"}
QUEUED = {"released", "waiting", "queued", "no-worker"}


def _import_distributed():
    try:
        import distributed
    except ImportError as e:  # pragma: no cover - the extra is installed by make install
        raise ImportError(f"the Dask backend needs the distributed package: {INSTALL}") from e
    return distributed


def _states_function(prefix: str):
    # a closure is pickled by value, so the scheduler needs no batchtools to run it
    def states(dask_scheduler=None) -> dict[str, str]:
        return {k: ts.state for k, ts in dask_scheduler.tasks.items() if isinstance(k, str) and k.startswith(prefix)}

    return states


class DaskConnection:
    """A ``distributed.Client``: the one given, or one connected to an address on first use."""

    def __init__(self, target, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        self.lock = threading.Lock()
        self._client = target if type(target).__name__ == "Client" else None
        self.futures: dict[str, object] = {}  # tasks of this session not known to be finished
        self.cond = threading.Condition()
        self.changes = 0

    def finished(self, future) -> None:
        """Done callback of a task: forget it, wake a waiting ``wait``."""
        with self.cond:
            self.futures.pop(future.key, None)
            self.changes += 1
            self.cond.notify_all()

    def wait(self, timeout: float) -> None:
        """Return when a task of this session ends, or after ``timeout`` seconds."""
        with self.cond:
            seen = self.changes
            self.cond.wait_for(lambda: self.changes != seen, timeout)

    @property
    def address(self) -> str:
        return self.target if isinstance(self.target, str) else getattr(self.target, "scheduler_address", "?")

    def _unreachable(self, why: str) -> ConnectionError:
        return ConnectionError(
            f"client_or_address: cannot reach the Dask scheduler at {self.address} ({why}); start one "
            "(`dask scheduler`, plus `dask worker ADDRESS`) or pass a running distributed.Client")

    def client(self):
        with self.lock:
            if self._client is None:
                distributed = _import_distributed()
                try:
                    self._client = distributed.Client(self.target, timeout=self.timeout, set_as_default=False)
                except Exception as e:
                    raise self._unreachable(f"{type(e).__name__}: {e}") from e
            if self._client.status not in ("running", "newly-created"):
                raise self._unreachable(f"the client is {self._client.status}")
            return self._client


def make_cluster_functions_dask(client_or_address, timeout: float = 10) -> ClusterFunctions:
    """Run job collections as tasks of a Dask cluster, each in a process of its own on a worker.

    ``client_or_address``: a ``distributed.Client``, a scheduler address
    (``"tcp://host:8786"``; connected on first use, giving up after ``timeout`` seconds) or a
    cluster object (``LocalCluster``, ``SLURMCluster``, ...). ``submit_jobs`` checks that the
    scheduler answers before it writes anything.

    >>> import batchtools as bt
    >>> bt.make_cluster_functions_dask("tcp://scheduler:8786")
    ClusterFunctions(Dask, tcp://scheduler:8786)
    """
    ok = isinstance(client_or_address, str) or type(client_or_address).__name__ == "Client" \
        or hasattr(client_or_address, "scheduler_address")
    if not ok:
        raise TypeError("client_or_address: give a distributed.Client, a scheduler address like 'tcp://host:8786' "
                        f"or a Dask cluster object, got {type(client_or_address).__name__}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout: must be a positive number of seconds, got {timeout!r}")
    conn = DaskConnection(client_or_address, float(timeout))

    def submit_job(reg, jc) -> SubmitJobResult:
        distributed = _import_distributed()
        client = conn.client()
        key = f"{PREFIX}{jc.job_hash}"
        gpus = jc.resources.get("gpus")
        try:
            fut = client.submit(run_collection_process, cloud_dumps(jc), key, str(reg.file_dir), jc.job_hash, key=key,
                                pure=False, resources={"GPU": gpus} if gpus else None)
        except Exception as e:
            return SubmitJobResult(101, None, None, f"Dask refused the task: {type(e).__name__}: {e}")
        distributed.fire_and_forget(fut)  # runs on when this session ends
        conn.futures[key] = fut
        # let go of a finished task at once: a result held in memory is recomputed when its worker
        # leaves, and a job collection must not run again
        fut.add_done_callback(conn.finished)
        return SubmitJobResult(0, key, jc.log_file)

    def list_jobs(reg) -> tuple[list[str], list[str]]:
        try:
            states = conn.client().run_on_scheduler(_states_function(PREFIX))
        except ConnectionError:
            raise
        except Exception as e:
            raise conn._unreachable(f"{type(e).__name__}: {e}") from e
        # tasks this session submitted that the scheduler has not heard of yet (a submission travels
        # on the client's batched stream, which this call can overtake) are queued, not gone
        for key in list(conn.futures):
            states.setdefault(key, "released")
        # "processing" means sent to a worker, perhaps still waiting there: running once it started
        started = started_batches(reg)
        queued = [k for k, s in states.items() if s in QUEUED or (s in RUNNING and k not in started)]
        running = [k for k, s in states.items() if s in RUNNING and k in started]
        return queued, running

    def kill_job(reg, batch_id: str) -> None:
        distributed = _import_distributed()
        client = conn.client()
        fut = conn.futures.pop(batch_id, None) or distributed.Future(batch_id, client)
        client.cancel([fut], force=True)  # also tasks another session fired and forgot
        client.run(kill_collection_process, batch_id)  # the process a running task waits for

    def resource_check(res: dict) -> None:
        conn.client()

    return make_cluster_functions(
        "Dask", submit_job, kill_job=kill_job, list_jobs=list_jobs, store_job_collection=False,
        poll=0.05, poll_max=1.0, info=conn.address, wait=conn.wait, resource_check=resource_check,
        capabilities=Capabilities(start_reports=True, gpus=True),
    )
