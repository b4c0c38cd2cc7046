"""Experiments on the node: problem instances, algorithms and the ExperimentJob."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.contract.collection import JobCollection
from ..core.persistence.files import atomic_write_bytes, dumps, make_dir, read_pickle
from ..core.persistence.layout import Layout
from .job import Job, load_numpy, rng_state_kept, seed_everything
from .session import load_cached, prepare_namespace, restore_code_files, say


@dataclass
class Problem:
    """A problem: static ``data`` and an instance function ``fun(data=, job=, **prob_pars)``."""

    name: str
    data: Any = None
    fun: Callable | None = None
    seed: int | None = None
    cache: bool = False
    # names this definition of the problem: cached instances live under it, so an instance of a
    # removed or overwritten problem (even one a late node writes) is never read for the new one
    version: str = field(default="", compare=False)

    def __repr__(self) -> str:
        return f"Problem({self.name!r}, seed={self.seed}, cache={self.cache}, fun={'yes' if self.fun else 'no'})"


@dataclass
class Algorithm:
    """An algorithm: ``fun(data=, job=, instance=, **algo_pars)``; without ``fun`` it returns the instance."""

    name: str
    fun: Callable | None = None

    def __repr__(self) -> str:
        return f"Algorithm({self.name!r})"


def call_with(fun: Callable, fixed: dict[str, Any], pars: dict[str, Any]) -> Any:
    """Call ``fun(**fixed, **pars)``, leaving out fixed arguments (data, job, instance) it does not take."""
    try:
        params = inspect.signature(fun).parameters
    except (TypeError, ValueError):
        return fun(**fixed, **pars)
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return fun(**fixed, **pars)
    return fun(**{k: v for k, v in fixed.items() if k in params}, **pars)


def load_problem(file_dir: str, name: str) -> Problem:
    return load_cached(Layout(file_dir).problem(name))


def load_algorithm(file_dir: str, name: str) -> Algorithm:
    return load_cached(Layout(file_dir).algorithm(name))


@dataclass
class ExperimentJob(Job):
    """The job of an experiment: ``problem`` and ``algorithm`` (their names; R's ``prob.name`` and
    ``algo.name``, also as ``prob_name`` / ``algo_name``), ``prob_pars``, ``algo_pars``, ``repl``,
    ``seed``, ``rng`` and the (lazily generated) ``instance``."""

    problem: str = ""
    algorithm: str = ""
    prob_pars: dict[str, Any] = field(default_factory=dict)
    algo_pars: dict[str, Any] = field(default_factory=dict)
    repl: int = 1
    _instance: Any = field(default=None, repr=False)
    _has_instance: bool = field(default=False, repr=False)
    _say: Callable[[str], None] | None = field(default=None, repr=False)

    @property
    def prob_name(self) -> str:
        """The problem's name (R's ``job$prob.name``; ``problem`` is the name too)."""
        return self.problem

    @property
    def algo_name(self) -> str:
        """The algorithm's name (R's ``job$algo.name``; ``algorithm`` is the name too)."""
        return self.algorithm

    @property
    def fun(self) -> Any:
        """The function the job runs: its algorithm's."""
        return load_algorithm(self.file_dir, self.algorithm).fun

    @classmethod
    def from_spec(cls, jc: JobCollection, spec: dict[str, Any]) -> ExperimentJob:
        job_id = spec["job_id"]
        return cls(id=job_id, pars={"prob_pars": spec["prob_pars"], "algo_pars": spec["algo_pars"]},
                   seed=jc.seed + job_id, resources=jc.resources, file_dir=jc.file_dir,
                   problem=spec["problem"], algorithm=spec["algorithm"], prob_pars=spec["prob_pars"],
                   algo_pars=spec["algo_pars"], repl=spec["repl"])

    @property
    def instance(self) -> Any:
        if not self._has_instance:
            self._instance = self._make_instance()
            self._has_instance = True
        return self._instance

    def _make_instance(self) -> Any:
        prob = load_problem(self.file_dir, self.problem)
        if self._say:
            self._say(f"Generating problem instance for problem '{self.problem}' ...")
        if prob.fun is None:
            return prob.data
        cache = Layout(self.file_dir).instance_cache(self.problem, self.prob_pars, self.repl,
                                                     prob.version) if prob.cache else None
        if cache and cache.exists():
            return read_pickle(cache)
        if prob.seed is not None:
            # one instance per replication, the same for every algorithm (batchtools' rule)
            inst_seed = prob.seed + self.repl - 1
            with rng_state_kept():
                np = load_numpy()
                seed_everything(inst_seed)
                saved, self._rng = self._rng, (np.random.default_rng(inst_seed) if np is not None else None)
                try:
                    instance = call_with(prob.fun, {"data": prob.data, "job": self}, self.prob_pars)
                finally:
                    self._rng = saved
        else:
            instance = call_with(prob.fun, {"data": prob.data, "job": self}, self.prob_pars)
        if cache:
            make_dir(cache.parent)
            atomic_write_bytes(cache, dumps(instance))
        return instance


# an object of a problem's data or an algorithm's function with this method is asked to load what
# it needs once per process (a task's data from its loader, a learner's scikit-learn modules and
# scorers) before the first job that uses it starts: start-up, not that job's run time
WARM_UP = "__batchtools_warm_up__"


def experiment_runner(jc: JobCollection) -> Callable[[ExperimentJob], Any]:
    """The function that runs one experiment job of ``jc``: instance, then algorithm. Its
    ``prepare(job)`` loads the job's problem and algorithm (once per process) before the job starts."""
    namespaces_done: set[int] = set()
    prepared: set[tuple[str, str]] = set()

    def setup(fn: Callable | None) -> None:
        g = getattr(fn, "__globals__", None)
        if g is not None and id(g) not in namespaces_done:
            namespaces_done.add(id(g))
            prepare_namespace(jc, g)
            restore_code_files(g, jc.code_files, [fn])

    def prepare(job: ExperimentJob) -> None:
        key = (job.problem, job.algorithm)
        if key in prepared:
            return
        prob = load_problem(jc.file_dir, job.problem)
        algo = load_algorithm(jc.file_dir, job.algorithm)
        setup(prob.fun)
        setup(algo.fun)
        for part in (prob.data, algo.fun):
            warm = getattr(type(part), WARM_UP, None)
            if warm is not None:
                warm(part)
        prepared.add(key)

    def run(job: ExperimentJob) -> Any:
        prob = load_problem(jc.file_dir, job.problem)
        algo = load_algorithm(jc.file_dir, job.algorithm)
        setup(prob.fun)
        setup(algo.fun)
        job._say = say
        instance = job.instance
        say(f"Applying algorithm '{job.algorithm}' on problem '{job.problem}' for job {job.id} (seed = {job.seed}) ...")
        if algo.fun is None:
            return instance
        return call_with(algo.fun, {"data": prob.data, "job": job, "instance": instance}, job.algo_pars)

    run.prepare = prepare  # type: ignore[attr-defined]
    return run
