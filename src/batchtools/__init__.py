"""pybatchtools: persistent, reproducible batch computing, after R's batchtools.

>>> import batchtools as bt
>>> reg = bt.make_registry(file_dir=None, seed=1)
>>> _ = bt.batch_map(lambda x: x ** 2, x=[1, 2, 3])
>>> _ = bt.submit_jobs(); bt.wait_for_jobs()
True
>>> bt.reduce_results_list()
[1, 4, 9]

Names are imported lazily, so the node entry point (``python -m batchtools.worker``)
starts without pandas. Every function that takes ``reg`` is also a method of the registry
(:class:`batchtools.Registry`).
"""

from __future__ import annotations

import importlib

from ._moved import install as _install_moved
from ._version import __version__
from .backends import shipped as _shipped_backends
from .core.debug import maybe_enable_from_env

maybe_enable_from_env()
_install_moved()  # old module paths (registries on disk name them)

_EXPORTS: dict[str, tuple[str, ...]] = {
    "batchtools.registry": ("Registry", "ExperimentRegistry", "make_registry", "make_experiment_registry",
                            "load_registry"),
    "batchtools.core.registry": ("get_default_registry", "set_default_registry", "assert_registry"),
    "batchtools.core.errors": ("ReadOnlyRegistryError", "RegistryNotFoundError", "ResultNotFoundError",
                               "SubmitError", "LeaseError", "CorruptFileError"),
    "batchtools.core.config": ("find_conf_file",),
    "batchtools.core.contract.backend": ("ClusterFunctions", "SubmitJobResult", "Capabilities", "make_cluster_functions",
                                "make_submit_job_result", "run_hook"),
    "batchtools.core.contract.collection": ("JobCollection",),
    "batchtools.core.results.store": ("ResultStore", "FolderStore"),
    "batchtools.core.results.store_sqlite": ("SQLiteStore",),
    "batchtools.core.jobstate.retry": ("RetryPolicy", "Accounting"),
    "batchtools.api.maintenance": ("save_registry", "sync_registry", "sweep_registry", "clear_registry",
                                   "remove_registry", "batch_export"),
    "batchtools.api.repair": ("repair_registry",),
    "batchtools.api.define": ("batch_map", "batch_reduce", "batch_map_results"),
    "batchtools.api.convenience": ("btlapply", "btmapply"),
    "batchtools.api.submit": ("submit_jobs",),
    "batchtools.api.testing": ("make_job_collection", "make_job", "exec_job", "test_job"),
    "batchtools.api.wait": ("wait_for_jobs",),
    "batchtools.api.control": ("reset_jobs", "kill_jobs"),
    "batchtools.api.status": ("get_status", "Status"),
    "batchtools.api.find": ("find_jobs", "find_submitted", "find_not_submitted", "find_started",
                            "find_not_started", "find_done", "find_not_done", "find_errors", "find_on_system",
                            "find_running", "find_queued", "find_expired", "find_held", "find_tagged"),
    "batchtools.api.table": ("get_job_table", "get_job_status", "get_job_resources", "get_job_pars",
                             "get_job_attempts"),
    "batchtools.api.joins": ("unwrap", "flatten", "ijoin", "ljoin", "rjoin", "ojoin", "sjoin", "ajoin", "ujoin"),
    "batchtools.api.tags": ("add_job_tags", "remove_job_tags", "get_used_job_tags", "get_job_tags",
                            "get_job_names", "set_job_names"),
    "batchtools.api.results": ("load_result", "reduce_results", "reduce_results_list",
                               "reduce_results_dataframe"),
    "batchtools.api.logs": ("get_log", "show_log", "grep_logs", "get_error_messages"),
    "batchtools.api.chunking": ("chunk", "lpt", "binpack"),
    "batchtools.api.runtimes": ("estimate_runtimes", "RuntimeEstimate"),
    "batchtools.api.recommend": ("recommend_resources", "ResourceRecommendation"),
    "batchtools.api.workers": ("submit_workers", "get_workers"),
    "batchtools.api.cache": ("explain_cache", "prune_cache"),
    "batchtools.core.cache": ("CacheExplanation", "CachePruned", "CacheEntry", "CacheWarning"),
    "batchtools.plot": ("plot_timeline",),
    "batchtools.reports": ("report", "Report"),
    "batchtools.api.experiments": ("add_problem", "add_algorithm", "add_experiments", "find_experiments",
                                   "summarize_experiments", "remove_experiments", "remove_problems",
                                   "remove_algorithms"),
    "batchtools.api.benchmark": ("benchmark_grid", "batchmark", "reduce_results_batchmark"),
    "batchtools.api.benchmark_result": ("BenchmarkResult",),
    "batchtools.node.experiment": ("Problem", "Algorithm", "ExperimentJob"),
    "batchtools.node.node": ("do_job_collection",),
    "batchtools.node.job": ("Job",),
    "batchtools.node.environment": ("NodeEnvironment",),
    "batchtools.backends.commands": ("run_os_command", "cf_kill_job", "cf_handle_unknown_submit_error"),
    # every backend in backends/ (backends.shipped()) exports its constructor: added below
    "batchtools.backends.templates": ("find_template_file", "cf_read_brew_template", "cf_brew_template"),
}
_ALSO = {"ssh": ("Worker",)}  # a backend's exports besides its constructor
for _name in _shipped_backends():
    _EXPORTS[f"batchtools.backends.{_name}"] = (f"make_cluster_functions_{_name}", *_ALSO.get(_name, ()))
del _name
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE) + ["__version__"]


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'batchtools' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
