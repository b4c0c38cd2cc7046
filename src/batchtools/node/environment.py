"""The node half of a backend: what the scheduler that started this process tells it (its job id,
the array index, how often it ran the job before) and what it lets it do (requeue itself), after
submitit's ``JobEnvironment``.

A backend names its node environment (a subclass of :class:`NodeEnvironment`, usually defined in
the backend's own file) with ``make_cluster_functions(..., node_environment=...)``; each job
collection carries it to the node, which uses it when the scheduler's variables are set
(:meth:`NodeEnvironment.activated`), and the plain default otherwise (the collection run by hand,
by a local backend, or by a backend without a node half). :mod:`.checkpoint` asks the environment
for the restart count and to requeue; it knows no scheduler.

>>> env = NodeEnvironment("MY_TASK")
>>> env.job_id, env.restart_count, env.can_requeue, env.requeue()
(None, 0, False, False)
"""

from __future__ import annotations

import functools
import importlib
import os

from .session import say


class NodeEnvironment:
    """The plain default: no scheduler job to name, no restarts, no requeue.

    A scheduler's environment overrides what it knows: ``variables`` (environment variables that
    scheduler sets in its jobs: all set means this process runs under it), ``array_variable``,
    :attr:`job_id`, :attr:`restart_count`, :attr:`can_requeue`, :meth:`requeue` and
    :meth:`requeued_by_scheduler`. Only :meth:`requeue` and :meth:`requeued_by_scheduler` may run
    scheduler commands; they never raise.
    """

    name = "plain"
    variables: tuple[str, ...] = ()
    array_variable: str | None = None
    # the process exits with 1 when a job of its collection failed (the scheduler starts dependants on
    # success only, and reads success from the exit code: Slurm's afterok); otherwise 0 once it ran
    fail_on_error: bool = False

    def __init__(self, array_var: str | None = None) -> None:
        self.array_var = self.array_variable or array_var

    @classmethod
    def activated(cls) -> bool:
        """Whether this process runs under this environment's scheduler (all its variables are set)."""
        return all(os.environ.get(v) for v in cls.variables)

    @property
    def job_id(self) -> str | None:
        """The scheduler's id of the job running this process (an array task's own id), if any."""
        return None

    @property
    def array_index(self) -> int | None:
        """The array task this process runs (1-based), None outside an array job."""
        value = os.environ.get(self.array_var) if self.array_var else None
        return int(value) if value and value.strip().isdigit() else None

    @property
    def restart_count(self) -> int:
        """How often the scheduler ran this job before this run (0: the first run)."""
        return 0

    @property
    def can_requeue(self) -> bool:
        """Whether :meth:`requeue` can put this job back in the queue (it may still be refused)."""
        return False

    def requeue(self) -> bool:
        """Put this process's scheduler job back in the queue; True if the scheduler accepted
        (it then ends this run). Say why not otherwise; the master then resubmits the job."""
        return False

    def requeued_by_scheduler(self) -> bool:
        """After a SIGTERM: whether the scheduler shows this job queued again (preemption, or a
        requeue by hand), so the job goes on in a next run of the same scheduler job."""
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(job_id={self.job_id!r}, array_index={self.array_index!r})"


def environment_of(ref: str | None, array_var: str | None = None) -> NodeEnvironment:
    """The node environment a collection names (``"module:qualname"``, see
    :attr:`batchtools.ClusterFunctions.node_environment_ref`) if its scheduler runs this process,
    else the plain default. A node half that cannot be imported here is said in the log (once),
    and the plain default is used (the job runs; it only cannot requeue itself).

    >>> environment_of(None, "MY_TASK").array_var
    'MY_TASK'
    """
    cls = _load(ref) if ref else None
    if cls is not None and cls.activated():
        return cls(array_var)
    return NodeEnvironment(array_var)


def array_index(jc) -> int | None:
    """The array task of collection ``jc`` this process runs (1-based), None if it runs them all."""
    return environment_of(jc.node_environment, jc.array_var).array_index if jc.array_jobs else None


@functools.cache
def _load(ref: str) -> type[NodeEnvironment] | None:
    module, _, qualname = ref.partition(":")
    try:
        cls = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
    except Exception as e:  # the node runs on; it only loses the scheduler's extras
        say(f"The backend's node environment {ref} cannot be loaded ({type(e).__name__}: {e}); "
            "this run cannot requeue itself")
        return None
    return cls
