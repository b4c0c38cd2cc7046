"""Job objects handed to user functions (R's ``.job``)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

try:  # numpy is a dependency of pandas, but the node path must not need pandas
    import numpy as np
except ImportError:  # pragma: no cover
    np = None  # type: ignore[assignment]


def seed_everything(seed: int) -> None:
    """Seed Python's ``random`` and NumPy's legacy global RNG with ``seed``."""
    random.seed(seed)
    if np is not None:
        np.random.seed(seed % (2**32))


@contextlib.contextmanager
def rng_state_kept() -> Iterator[None]:
    """Run a block with its own seeding, then restore the global RNG states (``random``, NumPy's
    legacy global RNG), as R restores ``.Random.seed`` after ``testJob``/``execJob``."""
    py_state = random.getstate()
    np_state = np.random.get_state() if np is not None else None
    try:
        yield
    finally:
        random.setstate(py_state)
        if np_state is not None:
            np.random.set_state(np_state)


@dataclass
class Job:
    """One job as the mapped function sees it.

    Attributes: ``id`` (= ``job_id``), ``pars`` (the mapped arguments), ``seed``
    (registry seed + job id), ``rng`` (a ``numpy.random.Generator`` seeded with
    ``seed``), ``resources`` and ``file_dir``.
    """

    id: int
    pars: dict[str, Any]
    seed: int
    resources: dict[str, Any] = field(default_factory=dict)
    file_dir: str = ""
    _rng: Any = field(default=None, repr=False)

    @property
    def job_id(self) -> int:
        return self.id

    @property
    def rng(self):
        if self._rng is None:
            if np is None:  # pragma: no cover
                raise ImportError("job.rng needs numpy")
            self._rng = np.random.default_rng(self.seed)
        return self._rng

    def seed_rngs(self) -> None:
        seed_everything(self.seed)
        self._rng = None
