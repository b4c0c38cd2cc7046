"""The public registry classes, and the functions that make and open registries.

:class:`Registry` is the registry's state (:class:`~batchtools.core.registry.RegistryState`) with
every verb that takes ``reg`` as a method, listed explicitly below: ``reg.submit_jobs(...)`` is
``bt.submit_jobs(..., reg=reg)``. :class:`ExperimentRegistry` adds the experiment verbs. This
module sits above all verbs (it imports them); no verb imports it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from . import plot, reports
from .api import (
    benchmark,
    cache,
    control,
    convenience,
    define,
    experiments,
    find,
    logs,
    maintenance,
    recommend,
    results,
    runtimes,
    setup,
    status,
    submit,
    table,
    tags,
    testing,
    wait,
    workers,
)
from .core.registry import RegistryState


def _method(fn: Callable) -> Callable:
    """``fn(..., reg=None)`` as a method: ``reg.fn(...)`` calls ``fn(..., reg=reg)``."""

    @functools.wraps(fn)
    def method(self, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, reg=self, **kwargs)

    return method


class Registry(RegistryState):
    """A batchtools registry: job definitions, seeds, resources, status, logs and results.

    Create one with :func:`make_registry`, open an existing one with :func:`load_registry`.
    Every function that takes ``reg`` is also a method.

    Attributes: ``file_dir`` (the folder, a ``Path``), ``work_dir`` (the jobs' working
    directory), ``seed`` (job *i* gets ``seed + i``), ``packages``, ``source``, ``load`` (node
    set-up), ``cluster_functions`` (the backend), ``default_resources`` (dict: ``walltime`` in
    seconds, ``memory`` in MB, ...), ``max_concurrent_jobs``, ``conf_file`` (the configuration
    file applied, or None), ``writeable``, ``kind`` (``"map"`` or ``"experiment"``).
    ``cluster_functions``, ``default_resources`` and ``max_concurrent_jobs`` set on the object
    last for this session; each make or load takes them from the configuration file.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None, seed=1)
    >>> reg
    Registry(file_dir=..., jobs=0, seed=1, ...)
    >>> _ = reg.batch_map(lambda x: x + 1, x=[1, 2])
    >>> reg.find_jobs("x > 1")["job_id"].tolist()
    [2]
    """

    kind = "map"

    # registries
    save_registry = _method(maintenance.save_registry)
    sync_registry = _method(maintenance.sync_registry)
    sweep_registry = _method(maintenance.sweep_registry)
    clear_registry = _method(maintenance.clear_registry)
    remove_registry = _method(maintenance.remove_registry)
    batch_export = _method(maintenance.batch_export)
    # defining jobs
    batch_map = _method(define.batch_map)
    batch_reduce = _method(define.batch_reduce)
    batch_map_results = _method(define.batch_map_results)
    btlapply = _method(convenience.btlapply)
    btmapply = _method(convenience.btmapply)
    # running
    submit_jobs = _method(submit.submit_jobs)
    wait_for_jobs = _method(wait.wait_for_jobs)
    reset_jobs = _method(control.reset_jobs)
    kill_jobs = _method(control.kill_jobs)
    make_job_collection = _method(testing.make_job_collection)
    make_job = _method(testing.make_job)
    exec_job = _method(testing.exec_job)
    test_job = _method(testing.test_job)
    estimate_runtimes = _method(runtimes.estimate_runtimes)
    recommend_resources = _method(recommend.recommend_resources)
    submit_workers = _method(workers.submit_workers)
    explain_cache = _method(cache.explain_cache)
    prune_cache = _method(cache.prune_cache)
    get_workers = _method(workers.get_workers)
    # status and queries
    get_status = _method(status.get_status)
    find_jobs = _method(find.find_jobs)
    find_submitted = _method(find.find_submitted)
    find_not_submitted = _method(find.find_not_submitted)
    find_started = _method(find.find_started)
    find_not_started = _method(find.find_not_started)
    find_done = _method(find.find_done)
    find_not_done = _method(find.find_not_done)
    find_errors = _method(find.find_errors)
    find_on_system = _method(find.find_on_system)
    find_running = _method(find.find_running)
    find_queued = _method(find.find_queued)
    find_expired = _method(find.find_expired)
    find_held = _method(find.find_held)
    find_tagged = _method(find.find_tagged)
    get_job_table = _method(table.get_job_table)
    get_job_status = _method(table.get_job_status)
    get_job_attempts = _method(table.get_job_attempts)
    get_job_resources = _method(table.get_job_resources)
    get_job_pars = _method(table.get_job_pars)
    add_job_tags = _method(tags.add_job_tags)
    remove_job_tags = _method(tags.remove_job_tags)
    get_used_job_tags = _method(tags.get_used_job_tags)
    get_job_tags = _method(tags.get_job_tags)
    get_job_names = _method(tags.get_job_names)
    set_job_names = _method(tags.set_job_names)
    # results and logs
    load_result = _method(results.load_result)
    reduce_results = _method(results.reduce_results)
    reduce_results_list = _method(results.reduce_results_list)
    reduce_results_dataframe = _method(results.reduce_results_dataframe)
    get_log = _method(logs.get_log)
    show_log = _method(logs.show_log)
    grep_logs = _method(logs.grep_logs)
    get_error_messages = _method(logs.get_error_messages)
    plot_timeline = _method(plot.plot_timeline)
    report = _method(reports.report)

    def _repr_html_(self) -> str:
        """Jupyter shows a registry as its run at a glance: counts, backend, elapsed, ETA."""
        return reports.glance_html(self)


class ExperimentRegistry(Registry):
    """A registry of experiments: problems x algorithms x designs x replications.

    >>> import batchtools as bt
    >>> reg = bt.make_experiment_registry(file_dir=None, seed=1)
    >>> _ = reg.add_problem("p", data=[1, 2, 3])
    >>> reg.problems
    ['p']
    """

    kind = "experiment"

    add_problem = _method(experiments.add_problem)
    add_algorithm = _method(experiments.add_algorithm)
    add_experiments = _method(experiments.add_experiments)
    find_experiments = _method(experiments.find_experiments)
    summarize_experiments = _method(experiments.summarize_experiments)
    remove_experiments = _method(experiments.remove_experiments)
    remove_problems = _method(experiments.remove_problems)
    remove_algorithms = _method(experiments.remove_algorithms)
    # ML benchmarks (tasks x learners x resamplings)
    batchmark = _method(benchmark.batchmark)
    reduce_results_batchmark = _method(benchmark.reduce_results_batchmark)

    @property
    def problems(self) -> list[str]:
        return list(self.extra.get("problems", []))

    @property
    def algorithms(self) -> list[str]:
        return list(self.extra.get("algorithms", []))


CLASSES: dict[str, type[Registry]] = {"map": Registry, "experiment": ExperimentRegistry}


def make_registry(file_dir: str | os.PathLike | None = "registry", work_dir: str | None = None,
                  conf_file: Any = ..., packages=(), source=(), load=(), seed: int | None = None,
                  make_default: bool = True, exist_ok: bool = False, cache_dir: Any = ...,
                  cache_max_size: Any = ...) -> Registry:
    """Create a new registry in ``file_dir`` (``None``: a temporary one, removed at exit).

    ``packages`` are imported, ``source`` files executed and ``load`` pickles
    loaded on the node before jobs run. ``seed`` (default: random) is the base of
    every job's seed (``seed + job_id``). ``conf_file`` defaults to the first
    ``batchtools.conf.py`` found (see :func:`find_conf_file`); ``None`` uses none.

    ``exist_ok=True`` makes a script re-runnable: a registry already in ``file_dir`` is opened
    writeable (as ``load_registry(file_dir, writeable=True)``) if it is of the same kind, and its
    seed (unless ``seed=None``), ``packages``, ``source`` and ``load`` are the ones asked for; otherwise
    the call is refused naming the difference, and nothing is written. Without it (the default,
    as in R) an existing registry raises ``FileExistsError``.

    ``cache_dir``: the folder of a shared cache of results (made if missing; any number of
    registries, processes and hosts may share it): ``submit_jobs`` takes every job whose result it
    holds from it instead of running it, and finished jobs add their results; ``cache_max_size``
    bounds it (bytes, or ``"20G"``; least recently used first). Both are saved with the registry
    (``reg.cache_dir = ...`` changes it); not given, the configuration file's keys of these names
    decide (default: no cache). See :func:`explain_cache` and :func:`prune_cache`.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None, seed=42)
    >>> reg.seed
    42
    """
    return setup.create_registry(Registry, file_dir, work_dir, conf_file, packages, source, load, seed,
                                 make_default, exist_ok, CLASSES, cache_dir, cache_max_size)


def make_experiment_registry(file_dir: str | os.PathLike | None = "registry", work_dir: str | None = None,
                             conf_file: Any = ..., packages=(), source=(), load=(), seed: int | None = None,
                             make_default: bool = True, exist_ok: bool = False, cache_dir: Any = ...,
                             cache_max_size: Any = ...) -> ExperimentRegistry:
    """Like :func:`make_registry` (``cache_dir`` too), for experiments (problems x algorithms) and ML benchmarks.
    ``exist_ok=True`` opens an existing experiment registry of the same seed instead (a script
    that defines and submits its study can run again: ``batchmark`` of the same design then adds
    nothing, and ``submit_jobs()`` submits only what was not submitted).

    >>> import batchtools as bt
    >>> reg = bt.make_experiment_registry(file_dir=None, seed=1)
    >>> reg.kind
    'experiment'
    """
    return setup.create_registry(ExperimentRegistry, file_dir, work_dir, conf_file, packages, source, load,
                                 seed, make_default, exist_ok, CLASSES, cache_dir, cache_max_size)


def load_registry(file_dir: str | os.PathLike, work_dir: str | None = None, conf_file: Any = ...,
                  make_default: bool = True, writeable: bool = False, force: bool = False) -> Registry:
    """Open an existing registry. ``writeable=False`` (the default, as in batchtools)
    allows queries only; pass ``writeable=True`` to submit, reset or change jobs.

    At most one session may change a registry at a time: ``writeable=True`` takes the registry's
    lease and is refused, naming the holder, while another live session holds it. A dead holder's
    lease is taken over with a warning; ``force=True`` takes it from a live one, which then turns
    read-only. The cluster functions the registry was made with are rebuilt (a configuration
    file that sets ``cluster_functions`` overrides them, with a warning).

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> bt.load_registry(reg.file_dir).writeable
    False
    """
    return setup.open_registry(CLASSES, file_dir, work_dir, conf_file, make_default, writeable, force)
