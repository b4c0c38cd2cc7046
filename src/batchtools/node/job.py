"""Job objects handed to user functions (R's ``.job``)."""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.persistence.layout import layout_of
from . import progress as _progress


def load_numpy():
    """NumPy with its ``random`` module, or None if it is not installed.

    The node imports NumPy only when a job uses it (it is most of a node's start-up time);
    :func:`seed_everything` makes sure its global RNG is seeded all the same.
    """
    try:
        import numpy
        import numpy.random  # noqa: F401
    except ImportError:  # pragma: no cover
        return None
    return numpy


class _SeedingLoader(importlib.abc.Loader):
    """Loads ``numpy.random`` as usual, then seeds it with the running job's seed."""

    def __init__(self, loader, hook: _SeedNumpyOnImport) -> None:
        self.loader, self.hook = loader, hook

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        if self.hook.seed is not None:
            module.seed(self.hook.seed % (2**32))

    def __getattr__(self, name: str):  # resource readers and the like: the real loader's
        return getattr(self.loader, name)


class _SeedNumpyOnImport(importlib.abc.MetaPathFinder):
    """Until a job imports ``numpy.random``, remembers the seed it must start from."""

    def __init__(self) -> None:
        self.seed: int | None = None

    def find_spec(self, name, path, target=None):
        if name != "numpy.random" or self.seed is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _SeedingLoader(spec.loader, self)
        return spec


_HOOK = _SeedNumpyOnImport()


def seed_everything(seed: int) -> None:
    """Seed Python's ``random`` and NumPy's legacy global RNG with ``seed`` (NumPy's as soon as
    it is imported, if it is not yet)."""
    random.seed(seed)
    npr = sys.modules.get("numpy.random")
    if npr is not None and hasattr(npr, "seed"):
        npr.seed(seed % (2**32))
        return
    _HOOK.seed = seed
    if _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)


@contextlib.contextmanager
def rng_state_kept() -> Iterator[None]:
    """Run a block with its own seeding, then restore the global RNG states (``random``, NumPy's
    legacy global RNG), as R restores ``.Random.seed`` after ``testJob``/``execJob``."""
    py_state = random.getstate()
    np = load_numpy()  # imported now (and seeded, if a job's seed is pending), so its state can be kept
    npr = np.random if np is not None else None
    np_state = npr.get_state() if npr is not None else None
    try:
        yield
    finally:
        random.setstate(py_state)
        if np_state is not None:
            npr.set_state(np_state)


_UNREAD = object()


@dataclass
class Job:
    """One job as the mapped function sees it.

    Attributes: ``id`` (= ``job_id``), ``pars`` (the mapped arguments and ``more_args``, as R's
    ``job$pars``), ``seed`` (registry seed + job id), ``rng`` (a ``numpy.random.Generator``
    seeded with ``seed``), ``resources`` (those the job was submitted with), ``file_dir``,
    ``fun`` (the mapped function) and ``external_dir`` (a folder of the job's own); ``restored``
    and ``checkpoint(obj)`` let a long job go on where an earlier run stopped;
    ``progress(value, message)`` and ``heartbeat()`` report that it is alive (see the
    ``stall_timeout`` resource).
    """

    id: int
    pars: dict[str, Any]
    seed: int
    resources: dict[str, Any] = field(default_factory=dict)
    file_dir: str = ""
    _rng: Any = field(default=None, repr=False)
    _restored: Any = field(default=_UNREAD, repr=False)
    _buffer: Any = field(default=None, repr=False)  # the node's status rows, set by the node running it
    _watch: Any = field(default=None, repr=False)  # its progress (node/progress.py), made on first use

    @property
    def job_id(self) -> int:
        return self.id

    @property
    def external_dir(self) -> Path:
        """A folder of this job's own for files it writes besides its result (R's
        ``.job$external.dir``): ``external/<id>`` in the registry, made when asked for. It is
        kept while the job is submitted (a resubmission finds its files) and removed by
        ``reset_jobs`` and ``sweep_registry`` once the job is not.

        >>> import batchtools as bt
        >>> reg = bt.make_registry(file_dir=None, seed=1)
        >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
        >>> def f(x, job):
        ...     (job.external_dir / "note.txt").write_text(f"x was {x}")
        ...     return x
        >>> _ = bt.batch_map(f, x=[7]); _ = bt.submit_jobs()
        >>> (reg.file_dir / "external" / "1" / "note.txt").read_text()
        'x was 7'
        """
        path = layout_of(self.file_dir).external_dir(self.id)
        os.makedirs(path, exist_ok=True)
        return path

    @property
    def fun(self) -> Any:
        """The function the job runs (R's ``job$fun``): ``batch_map``'s function."""
        from .session import load_cached

        return load_cached(layout_of(self.file_dir).user_function)

    @property
    def rng(self):
        if self._rng is None:
            np = load_numpy()
            if np is None:  # pragma: no cover
                raise ImportError("job.rng needs numpy")
            self._rng = np.random.default_rng(self.seed)
        return self._rng

    def seed_rngs(self) -> None:
        seed_everything(self.seed)
        self._rng = None

    def checkpoint(self, obj: Any) -> None:
        """Save ``obj`` as this job's checkpoint (replacing the previous one): a later run of the
        job (after a time limit, a preemption or a node failure) finds it as :attr:`restored`.

        Call it whenever the state is worth keeping. When the time limit is near (the
        ``checkpoint_warning`` resource, default a tenth of the walltime) or the scheduler warns,
        the call saves and then stops the job, which goes on in a new run (its scheduler job is
        requeued on Slurm, resubmitted elsewhere). A job that ends successfully deletes its
        checkpoint; ``reset_jobs`` does too.

        >>> import batchtools as bt
        >>> reg = bt.make_registry(file_dir=None, seed=1)
        >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
        >>> def total(n, job):
        ...     i, acc = job.restored or (0, 0)  # where an earlier run stopped
        ...     while i < n:
        ...         i, acc = i + 1, acc + i
        ...         job.checkpoint((i, acc))
        ...     return acc
        >>> _ = bt.batch_map(total, n=[4]); _ = bt.submit_jobs()
        >>> bt.load_result(1)
        6
        """
        from .checkpoint import save

        save(self.file_dir, self.id, obj)
        self._restored = obj

    def progress(self, value: float | None = None, message: str | None = None) -> None:
        """Report progress: ``value`` a number (the fraction done, an epoch, a loss ...) and/or a
        short ``message``. ``get_job_table`` shows the last report (``progress_at``,
        ``progress``, ``progress_message``) while the job runs and after it ended.

        Each call is a sign of life: with the resource ``stall_timeout`` (seconds), a job that
        gives none for that long (counting from its start) is ended by its node, with the death
        reason ``stalled`` (which a :class:`~batchtools.RetryPolicy` with ``"stalled"`` in its
        ``reasons`` retries). A call costs a fraction of a microsecond: call it as often as you like.

        >>> import batchtools as bt
        >>> reg = bt.make_registry(file_dir=None, seed=1)
        >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
        >>> def train(epochs, job):
        ...     for epoch in range(epochs):
        ...         job.progress(epoch + 1, f"epoch {epoch + 1}/{epochs}")
        ...     return epochs
        >>> _ = bt.batch_map(train, epochs=[3]); _ = bt.submit_jobs(resources={"stall_timeout": 600})
        >>> bt.get_job_table()[["job_id", "progress", "progress_message"]]
           job_id  progress progress_message
        0       1       3.0       epoch 3/3
        """
        _progress.progress(self, value, message)

    def heartbeat(self) -> None:
        """A sign of life without news (see :meth:`progress`), e.g. from a long loop whose
        progress has no number."""
        _progress.progress(self)

    @property
    def restored(self) -> Any:
        """The last checkpoint this job saved in an earlier run (or in this one), None if none."""
        if self._restored is _UNREAD:
            from .checkpoint import load

            self._restored = load(self.file_dir, self.id) if self.file_dir else None
        return self._restored
