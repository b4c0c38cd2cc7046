"""Running single jobs for testing and debugging: job collections, Job objects, ``test_job``."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import uuid
from typing import Any

from ..core.contract.collection import BY_HAND, JobCollection
from ..core.jobstate.resources import resources_by_id, validate_resources
from ..core.persistence.files import read_pickle, write_pickle
from ..core.registry import RegistryState, resolve
from ..core.submission import build_collection
from ..node.job import Job, rng_state_kept
from ..node.runners import make_job as _node_make_job
from ..node.runners import make_runner


def make_job_collection(ids=None, resources: dict | None = None, reg: RegistryState | None = None,
                        job_hash: str | None = None) -> JobCollection:
    """Everything a node needs to run ``ids`` (default: all jobs) in one chunk, with
    ``resources`` (``walltime`` in seconds, ``memory`` in MB, ...; merged over the defaults).

    Run by hand (:func:`~batchtools.do_job_collection`, ``python -m batchtools.worker``), its
    jobs' results and status are recorded by the next sync, as R does, for jobs with no run
    pending (not submitted, or ended); a job submitted and not ended keeps its pending run (the
    hand-run's report is ignored with a warning). ``job_hash``: the collection's hash (default: a
    new one marking it as run by hand).

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> _ = bt.batch_map(lambda x: x, x=[1, 2])
    >>> len(bt.make_job_collection())
    2
    """
    reg = resolve(reg)
    sel = reg.ids(ids)
    resources = {**reg.default_resources, **validate_resources(resources)}
    return build_collection(reg, sel, resources, job_hash or f"{BY_HAND}{uuid.uuid4().hex[:31]}")


def _single(id, reg: RegistryState, job_hash: str | None = None) -> JobCollection:
    """The collection of job ``id`` alone, with the resources of its submission (the default
    resources if it was never submitted), as R's ``makeJob``."""
    sel = reg.ids(id, arg="id")
    if len(sel) != 1:
        raise ValueError(f"id: expected exactly one job id, got {len(sel)}")
    submitted = resources_by_id(reg, reg.status["resource_id"].to_numpy()[reg.pos(sel)])[0]
    return build_collection(reg, sel, dict(reg.default_resources if submitted is None else submitted), job_hash)


def make_job(id: int, reg: RegistryState | None = None) -> Job:
    """The Job object of ``id`` as a node would see it (seed, pars, rng, and the resources the job
    was submitted with).

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None, seed=10)
    >>> _ = bt.batch_map(lambda x: x, x=[5])
    >>> bt.make_job(1).seed
    11
    """
    jc = _single(id, resolve(reg))
    return _node_make_job(jc, jc.jobs[0])


def exec_job(job: Job, reg: RegistryState | None = None) -> Any:
    """Run one Job object (from :func:`make_job`) here and return its result; writes nothing.
    The job runs with its own seed; the caller's random state is restored afterwards.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> _ = bt.batch_map(lambda x: x + 1, x=[41])
    >>> bt.exec_job(bt.make_job(1))
    42
    """
    jc = make_job_collection(job.id, reg=resolve(reg))
    with rng_state_kept():  # the caller's random state is as it was (as R)
        job.seed_rngs()
        return make_runner(jc)(job)


def test_job(id: int, external: bool = False, reg: RegistryState | None = None) -> Any:
    """Run job ``id`` right here (or, ``external=True``, in a fresh interpreter) and
    return its result. Output goes to the console; the registry is not changed, and the
    caller's random state is restored afterwards (the job runs with its own seed).

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> _ = bt.batch_map(lambda x: x ** 2, x=[3])
    >>> bt.test_job(1)
    9
    """
    reg = resolve(reg)
    if not isinstance(external, bool):
        raise TypeError("external: must be True or False")
    jc = _single(id, reg, job_hash="test")
    if not external:
        job = _node_make_job(jc, jc.jobs[0])
        with rng_state_kept():  # the caller's random state is as it was (as R)
            job.seed_rngs()
            return make_runner(jc)(job)
    with tempfile.TemporaryDirectory(prefix="batchtools-test-") as tmp:
        jc_path, out_path = os.path.join(tmp, "jc.pkl"), os.path.join(tmp, "result.pkl")
        write_pickle(jc_path, jc)
        code = subprocess.run([sys.executable, "-m", "batchtools.node.isolated", jc_path, out_path]).returncode
        outcome = read_pickle(out_path) if os.path.exists(out_path) else None
    if outcome is None:
        raise RuntimeError(f"test_job: the external interpreter exited with code {code} and no result")
    if outcome["error"] is not None:
        raise RuntimeError(f"test_job: job {id} failed in the external interpreter; to debug it, re-run with "
                           f"external=False:\n{outcome['error']}")
    return outcome["result"]


test_job.__test__ = False  # not a pytest test, despite its name
