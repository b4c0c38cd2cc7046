"""Dask: job collections as tasks of a Dask cluster, each running the node in a process of its own.

Any Dask deployment runs a registry's jobs: a ``distributed.LocalCluster``, dask-jobqueue's
``SLURMCluster``/``PBSCluster``, dask-kubernetes, dask-gateway, a cloud cluster. A task runs
the collection in a runner process of the worker's (:mod:`batchtools.node.engine_task`), so the
node owns its process (log, signals, environment) and writes results and status like on any
backend; the registry must be on a file system the workers share. The task carries the pickled
collection itself (compressed): the master writes no collection file. ``submit_job`` holds tasks
back and sends them in batches, one ``client.map`` each (``HOLD_TASKS``, ``HOLD_SECONDS``);
``submit_jobs`` sends the rest before it returns (``flush``), and listing and killing send first.
Tasks are fire-and-forget: they run on when this session ends, and the scheduler forgets each
one once it ended.

Listing asks the scheduler once per poll for the states of the ``batchtools-*`` tasks (waiting,
queued, no-worker, or processing = sent to a worker; such a task counts as running once one of
its jobs started); a task this session sent in the last ``SENT_GRACE`` seconds that the scheduler
does not list yet counts as queued. Killing cancels the task on the
scheduler and ends its process on the worker (``Client.run``), since Dask cannot interrupt a
task's thread. ``gpus`` becomes the Dask worker resource ``GPU`` (start workers with
``--resources GPU=n``); other resources are the deployment's business (worker sizes).
"""

from __future__ import annotations

import threading
import time
import zlib

from ..core.contract.backend import Capabilities, ClusterFunctions, SubmitJobResult, make_cluster_functions
from ..core.jobstate.state import started_batches
from ..core.persistence.files import cloud_dumps
from ..node.engine_task import kill_collection_process, run_collection_process

INSTALL = 'pip install "pybatchtools[engines]" (the PyPI package distributed)'
PREFIX = "batchtools-"
RUNNING = {"processing"}
QUEUED = {"released", "waiting", "queued", "no-worker"}
# submit_job holds tasks back and sends them with one client.map (a third of client.submit's cost
# per task) once this many wait or the oldest waited this long; listing, killing and the end of
# submit_jobs send them at once
HOLD_TASKS = 200
HOLD_SECONDS = 0.02
# a task sent this recently that the scheduler does not list is queued: the submission travels on
# the client's batched stream, which a listing can overtake
SENT_GRACE = 10.0


def _import_distributed():
    try:
        import distributed
    except ImportError as e:  # pragma: no cover - the extra is installed by make install
        raise ImportError(f"the Dask backend needs the distributed package: {INSTALL}") from e
    return distributed


def _states_function(prefix: str):
    # a closure is pickled by value, so the scheduler needs no batchtools to run it. It answers
    # {state: the keys in it, one per line}: one string per state is sent at once, where a dict of
    # 10,000 keys costs the scheduler's event loop tens of milliseconds to serialize
    def states(dask_scheduler=None) -> dict[str, str]:
        out: dict[str, list[str]] = {}
        for k, ts in dask_scheduler.tasks.items():
            if isinstance(k, str) and k.startswith(prefix):
                out.setdefault(ts.state, []).append(k)
        return {state: "\n".join(keys) for state, keys in out.items()}

    return states


class DaskConnection:
    """A ``distributed.Client``: the one given, or one connected to an address on first use."""

    def __init__(self, target, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        self.lock = threading.Lock()
        self._client = target if type(target).__name__ == "Client" else None
        self.held: dict[str, tuple] = {}  # key -> the task's arguments and GPUs, not sent yet
        self.held_since = 0.0
        self.sent: dict[str, float] = {}  # key -> when this session sent it (for SENT_GRACE)

    def hold(self, key: str, args: tuple, gpus) -> None:
        """Accept a task to send with others (:meth:`send`)."""
        with self.lock:
            if not self.held:
                self.held_since = time.monotonic()
            self.held[key] = (args, gpus)
            due = len(self.held) >= HOLD_TASKS or time.monotonic() - self.held_since >= HOLD_SECONDS
        if due:
            self.send()

    def drop(self, key: str) -> bool:
        """Forget a task not sent yet (killed before it left); True if it was held."""
        with self.lock:
            return self.held.pop(key, None) is not None

    def send(self) -> None:
        """Send the held tasks: one ``client.map`` per GPU request. They are fired and forgotten:
        they run on when this session ends, and the scheduler forgets each one once it ended (a
        result held for a client is computed again when its worker leaves, and a job collection
        must not run again)."""
        with self.lock:
            held, self.held = self.held, {}
        if not held:
            return
        distributed = _import_distributed()
        try:
            client = self.client()
            groups: dict[object, list[str]] = {}
            for key, (_, gpus) in held.items():
                groups.setdefault(gpus, []).append(key)
            for gpus, keys in groups.items():
                columns = list(zip(*(held[k][0] for k in keys)))
                distributed.fire_and_forget(client.map(run_collection_process, *columns, key=keys, pure=False,
                                                       resources={"GPU": gpus} if gpus else None))
                now = time.monotonic()
                for key in keys:
                    self.sent[key] = now
                    held.pop(key)
        except Exception as e:
            raise RuntimeError(
                f"Dask refused {len(held)} task(s) accepted by submit_jobs ({type(e).__name__}: {e}); their jobs "
                "show as expired once wait_for_jobs looks: submit_jobs(find_expired()) submits them again") from e

    def unheard(self) -> list[str]:
        """Tasks of this session the scheduler may not know yet: held, or sent within SENT_GRACE."""
        with self.lock:
            limit = time.monotonic() - SENT_GRACE
            self.sent = {k: t for k, t in self.sent.items() if t >= limit}
            return [*self.held, *self.sent]

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
        conn.client()  # reachable, or a ConnectionError before anything is accepted
        key = f"{PREFIX}{jc.job_hash}"
        # compressed: a pickle naming __main__ (the user's script, in code_files) makes Dask pickle
        # the whole task again with cloudpickle, on the client and on the scheduler
        payload = zlib.compress(cloud_dumps(jc), 1)
        conn.hold(key, (payload, key, str(reg.file_dir), jc.job_hash), jc.resources.get("gpus"))
        return SubmitJobResult(0, key, jc.log_file)

    def list_jobs(reg) -> tuple[list[str], list[str]]:
        conn.send()
        try:
            by_state = conn.client().run_on_scheduler(_states_function(PREFIX))
        except ConnectionError:
            raise
        except Exception as e:
            raise conn._unreachable(f"{type(e).__name__}: {e}") from e
        states = {k: state for state, keys in by_state.items() for k in keys.split("\n")}
        # tasks this session sent that the scheduler has not heard of yet are queued, not gone
        for key in conn.unheard():
            states.setdefault(key, "released")
        # "processing" means sent to a worker, perhaps still waiting there: running once it started
        started = started_batches(reg)
        queued = [k for k, s in states.items() if s in QUEUED or (s in RUNNING and k not in started)]
        running = [k for k, s in states.items() if s in RUNNING and k in started]
        return queued, running

    def kill_job(reg, batch_id: str) -> None:
        if conn.drop(batch_id):  # never sent: nothing runs
            return
        distributed = _import_distributed()
        client = conn.client()
        # also tasks another session fired and forgot
        client.cancel([distributed.Future(batch_id, client)], force=True)
        client.run(kill_collection_process, batch_id)  # the process a running task waits for

    def ping() -> None:
        conn.client()  # connects, or says which scheduler it cannot reach

    return make_cluster_functions(
        "Dask", submit_job, kill_job=kill_job, list_jobs=list_jobs, store_job_collection=False,
        poll=0.05, poll_max=1.0, info=conn.address, ping=ping, flush=conn.send,
        capabilities=Capabilities(start_reports=True, gpus=True),
    )
