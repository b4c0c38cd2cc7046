"""JobCollection: everything a node needs to run a chunk of jobs, in one small file.

The record the master hands to a backend and the node runs; it lives in ``core`` because both
sides build on it.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from ..persistence.layout import layout_of

PACK_MIN = 1000  # array collections of at least this many jobs keep each job spec pickled on its own
# the hashes of collections made to be run by hand (make_job_collection, do_job_collection) start
# so: the master records what such a run reports for jobs with no run pending, as R does. Like every
# hash, "job" and 32 letters or digits (R's pattern); the upper-case H never occurs in a hex uuid
BY_HAND = "jobH"


class PackedJobs(Sequence):
    """The job specs of a large array collection, each pickled on its own, so that an array task
    unpickles the one job it runs rather than all of them (12 ms for 10,000 jobs, per task)."""

    __slots__ = ("blobs",)

    def __init__(self, blobs: list[bytes]) -> None:
        self.blobs = blobs

    @classmethod
    def pack(cls, jobs: list[dict[str, Any]]) -> PackedJobs:
        # cloudpickle, as for the whole collection: a user's objects in the parameters travel by value
        return cls([cloudpickle.dumps(j, protocol=pickle.HIGHEST_PROTOCOL) for j in jobs])

    def __len__(self) -> int:
        return len(self.blobs)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [pickle.loads(b) for b in self.blobs[i]]
        return pickle.loads(self.blobs[i])

    def __reduce__(self):
        return (PackedJobs, (self.blobs,))


@dataclass
class JobCollection:
    """A chunk of jobs sharing one log file and one set of resources.

    ``jobs`` holds one dict per job: ``job_id`` and ``pars`` for ``batch_map``
    registries; ``problem``, ``algorithm``, ``prob_pars``, ``algo_pars`` and
    ``repl`` for experiment registries. ``array_var`` names the environment
    variable that selects one job of the collection on the node (array jobs).
    """

    file_dir: str
    work_dir: str
    job_hash: str
    jobs: list[dict[str, Any]]  # or PackedJobs, read back from a large array collection's file
    seed: int
    kind: str = "map"
    resources: dict[str, Any] = field(default_factory=dict)
    packages: tuple[str, ...] = ()
    source: tuple[str, ...] = ()
    load: tuple[str, ...] = ()
    positional: list[str] = field(default_factory=list)
    pass_job: bool = False
    log_file: str = ""
    array_var: str | None = None
    array_jobs: bool = False
    # the backend's node half, "module:qualname" of a batchtools.node.environment.NodeEnvironment
    node_environment: str | None = None
    job_names: list[str | None] = field(default_factory=list)
    python: str = ""
    # module name -> source file of functions pickled by value (cloudpickle drops co_filename)
    code_files: dict[str, str] = field(default_factory=dict)
    # node-side hooks of the cluster functions: pre_do_collection(jc), post_do_collection(jc)
    hooks: dict[str, Any] = field(default_factory=dict)
    # set for a pool worker (``submit_workers``): worker id, heartbeat, idle_timeout, max_claim, n_workers
    pool: dict[str, Any] | None = None
    # where results go (a ResultStore; None: the registry folder's results/)
    store: Any = None
    # report each job's start at once (the backend tells running from queued by it)
    start_reports: bool = False
    # installed modules the jobs will import (packages, and what the pickled functions refer to):
    # a backend that keeps a warm process (Multicore's fork server) imports them there once
    preload: tuple[str, ...] = ()
    # the submit_jobs call that made this collection (its collections run with the same set-up)
    submission: str = ""
    # the chunk of that call (the ``chunk`` column of its ids), for the scheduler's job name
    chunk: int | None = None
    # scheduler ids (the status table's ``batch_id``) of jobs this collection must wait for: set only
    # for a backend whose capabilities declare ``dependencies`` (the scheduler enforces them); the
    # collection starts once every one of them ended successfully (Slurm's ``afterok``)
    after: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if not k.startswith("_")}  # not the node's caches
        if self.array_jobs and isinstance(self.jobs, list) and len(self.jobs) >= PACK_MIN:
            state["jobs"] = PackedJobs.pack(self.jobs)
        return state

    @property
    def job_ids(self) -> list[int]:
        return [j["job_id"] for j in self.jobs]

    @property
    def uri(self) -> str:
        """The collection's file, ``jobs/<job_hash>.pkl`` (R's ``jc$uri``): where a backend that
        needs one writes it, and what ``python -m batchtools.worker`` is given."""
        return str(layout_of(self.file_dir).job_collection(self.job_hash))

    @property
    def job_name(self) -> str:
        """The name of the collection (R's ``jc$job.name``): its first job's name if every job has
        one, else its hash."""
        names = list(self.job_names)
        return names[0] if names and all(names) else self.job_hash

    def __len__(self) -> int:
        return len(self.jobs)

    def __repr__(self) -> str:
        if self.pool:
            return f"JobCollection({self.job_hash}, pool worker, resources={self.resources})"
        ids = self.job_ids
        shown = ", ".join(map(str, ids[:5])) + (", ..." if len(ids) > 5 else "")
        return f"JobCollection({self.job_hash}, {len(ids)} jobs: [{shown}], resources={self.resources})"
