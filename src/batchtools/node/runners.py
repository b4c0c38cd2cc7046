"""What runs one job of each kind on the node: the runner (user function call) and the Job object.

The one place on the node that looks at a collection's kind.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from ..core.contract.collection import JobCollection
from ..core.persistence.layout import Layout, layout_of
from .experiment import ExperimentJob, experiment_runner
from .job import Job
from .session import load_cached, prepare_namespace, restore_code_files


def map_runner(jc: JobCollection) -> Callable[[Job], Any]:
    """Calls ``batch_map``'s function with one job's arguments."""
    layout = Layout(jc.file_dir)
    fun = load_cached(layout.user_function)
    more_args = load_cached(layout.more_args)  # written by batch_map, if empty too: missing means lost
    namespace = getattr(fun, "__globals__", {})
    prepare_namespace(jc, namespace)
    restore_code_files(namespace, jc.code_files, [fun])
    positional = list(jc.positional)

    def run(job: Job) -> Any:
        pars = job.pars
        args = [pars[c] for c in positional]
        kwargs = {k: v for k, v in pars.items() if k not in positional} if positional else dict(pars)
        kwargs.update(more_args)
        if jc.pass_job:
            kwargs["job"] = job
        return fun(*args, **kwargs)

    run.more_args = more_args  # the jobs' ``pars`` hold them too (see _more_args)
    return run


def _more_args(jc: JobCollection) -> dict[str, Any]:
    """``batch_map``'s ``more_args`` (read once per collection)."""
    more = jc.__dict__.get("_more_args")
    if more is None:
        path = layout_of(jc.file_dir).more_args
        more = jc.__dict__["_more_args"] = load_cached(path) if path.exists() else {}
    return more


def _map_job(jc: JobCollection, spec: dict[str, Any]) -> Job:
    job_id = spec["job_id"]
    more = _more_args(jc)
    pars = {**spec["pars"], **more} if more else spec["pars"]  # R: job$pars holds more.args too
    return Job(id=job_id, pars=pars, seed=jc.seed + job_id, resources=jc.resources, file_dir=jc.file_dir)


# kind -> (runner factory, job factory)
KINDS: dict[str, tuple[Callable, Callable]] = {
    "map": (map_runner, _map_job),
    "experiment": (experiment_runner, ExperimentJob.from_spec),
}


_runners: dict[tuple, Callable] = {}
_submission_keys: dict[str, tuple] = {}


@functools.lru_cache(maxsize=16)
def _setup_paths(file_dir: str, kind: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The folders and files a runner of ``kind`` is prepared from (as strings: a hot path)."""
    lay = layout_of(file_dir)
    dirs = ("exports",) if kind == "map" else ("exports", "problems", "algorithms")
    return (tuple(os.fspath(lay.dir(d)) for d in dirs),
            tuple((p.name, os.fspath(p)) for p in (lay.user_function, lay.more_args)))


def _runner_key(jc: JobCollection) -> tuple | None:
    """What a prepared runner depends on: the collection's set-up and the registry's function,
    problem/algorithm and export files as they are now (a process running many collections, like
    Interactive or a Socket process, then prepares each only once)."""
    dirs, named = _setup_paths(jc.file_dir, jc.kind)
    files = []
    try:
        for d in dirs:
            with os.scandir(d) as it:
                files += sorted((e.name, e.inode(), e.stat().st_mtime_ns) for e in it)
        for name, p in named:
            try:
                st = os.stat(p)
                files.append((name, st.st_ino, st.st_mtime_ns, st.st_size))
            except FileNotFoundError:
                files.append((name, None))
    except FileNotFoundError:
        return None
    return (jc.kind, jc.file_dir, jc.work_dir, tuple(jc.packages), tuple(jc.source), tuple(jc.load),
            tuple(jc.positional), jc.pass_job, tuple(sorted(jc.code_files.items())), tuple(files))


def make_runner(jc: JobCollection, in_process: bool = False) -> Callable[[Job], Any]:
    """The function that runs one job of ``jc`` and returns its result.

    ``in_process``: ``jc`` runs inside the master's ``submit_jobs`` (Interactive), which blocks
    until the submission's last collection ran, so nothing changes the registry's files meanwhile:
    the set-up is looked at once per submission, not once per collection."""
    key = _submission_keys.get(jc.submission) if in_process and jc.submission else None
    if key is None:
        key = _runner_key(jc)
        if in_process and jc.submission and key is not None:
            if len(_submission_keys) > 8:
                _submission_keys.clear()
            _submission_keys[jc.submission] = key
    runner = _runners.get(key) if key is not None else None
    if runner is None:
        runner = KINDS[jc.kind][0](jc)
        if key is not None:
            if len(_runners) > 8:
                _runners.clear()
            _runners[key] = runner
    if hasattr(runner, "more_args"):  # read with the set-up the runner was made from: not again per collection
        jc.__dict__.setdefault("_more_args", runner.more_args)
    return runner


def make_job(jc: JobCollection, spec: dict[str, Any]) -> Job:
    """The Job object (seed, pars, rng, resources) of one job spec of ``jc``."""
    return KINDS[jc.kind][1](jc, spec)
