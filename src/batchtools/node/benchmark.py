"""ML benchmarks on the node: a task's data and folds, one fold as a problem instance, one learner
fitted and scored on it (the pieces :func:`batchtools.batchmark` stores as problems and algorithms).

A task is a problem whose data is a :class:`TaskData` (X, y, groups or a loader, and the folds of
every resampling, split once on the master); its instance for ``resampling``/``fold`` is a
:class:`Fold`. A learner is an algorithm whose function is a :class:`Learner`: clone, fit, score.
scikit-learn is imported only when a job runs; pandas never (DataFrames are indexed by duck typing).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCALARS = (str, int, float, bool, type(None))


def _missing_sklearn() -> ImportError:
    return ImportError("ML benchmarks need scikit-learn: pip install 'pybatchtools[ml]' (or scikit-learn)")


def n_rows(a: Any) -> int:
    """Number of rows (samples) of an array, DataFrame, sparse matrix or sequence."""
    shape = getattr(a, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[0])
    return len(a)


def take(a: Any, idx) -> Any:
    """Rows ``idx`` of ``a`` (positional, also for DataFrames and Series)."""
    if a is None:
        return None
    if hasattr(a, "iloc"):
        return a.iloc[idx]
    return a[idx]


def _is_frame(a: Any) -> bool:
    return hasattr(a, "columns") and hasattr(a, "iloc") and hasattr(a, "drop")


def _as_rows(a: Any) -> Any:
    """DataFrames, Series and sparse matrices as they are; anything else as a NumPy array."""
    if a is None or hasattr(a, "iloc") or hasattr(a, "tocsr"):
        return a
    return np.asarray(a)


def task_arrays(value: Any, name: str) -> tuple[Any, Any, Any]:
    """``(X, y, groups)`` of one task given as ``(X, y)``, ``(X, y, groups)``, ``(DataFrame, "target")``,
    ``(DataFrame, "target", "group column")`` or a scikit-learn Bunch (``.data``, ``.target``).
    Raises ``ValueError``/``TypeError`` naming the task and the fix.

    >>> X, y, g = task_arrays(([[1, 2], [3, 4]], [0, 1]), "t")
    >>> X.shape, y.tolist(), g
    ((2, 2), [0, 1], None)
    """
    groups = None
    if hasattr(value, "data") and hasattr(value, "target") and not isinstance(value, (tuple, list)):
        X, y = value.data, value.target
    elif isinstance(value, (tuple, list)) and len(value) in (2, 3):
        X, y = value[0], value[1]
        groups = value[2] if len(value) == 3 else None
        if isinstance(y, str):
            if not _is_frame(X):
                raise TypeError(f"tasks: task '{name}' names a target column {y!r}, so its first element must "
                                f"be a DataFrame; got {type(X).__name__}")
            drop = [y]
            for what, col in (("target", y), ("groups", groups)):
                if isinstance(col, str) and col not in X.columns:
                    raise ValueError(f"tasks: task '{name}' has no {what} column {col!r}; "
                                     f"its columns are {list(X.columns)[:10]}")
            if isinstance(groups, str):
                drop.append(groups)
                groups = X[groups]
            X, y = X.drop(columns=drop), X[y]
        elif isinstance(groups, str):
            raise TypeError(f"tasks: task '{name}': a groups column name needs (DataFrame, 'target', 'groups'); "
                            "with (X, y, groups) give the groups as an array")
    else:
        raise TypeError(f"tasks: task '{name}' is not data: give (X, y), (X, y, groups), (DataFrame, 'target') "
                        f"or a function returning one of these; got {type(value).__name__}")
    for what, a in (("X", X), ("y", y)):
        if a is None or isinstance(a, (str, bytes, int, float)) or not hasattr(a, "__len__") and \
                getattr(a, "shape", None) is None:
            raise TypeError(f"tasks: task '{name}': {what} must be an array, DataFrame or list, "
                            f"got {type(a).__name__}")
    X, y, groups = _as_rows(X), _as_rows(y), _as_rows(groups)
    if getattr(X, "ndim", 2) != 2:
        raise ValueError(f"tasks: task '{name}': X must be 2-dimensional (rows x features), "
                         f"got shape {getattr(X, 'shape', None)}; reshape it, e.g. X.reshape(-1, 1)")
    n = n_rows(X)
    if n_rows(y) != n:
        raise ValueError(f"tasks: task '{name}': X has {n} rows but y has {n_rows(y)}; give one label per row")
    if groups is not None and n_rows(groups) != n:
        raise ValueError(f"tasks: task '{name}': X has {n} rows but groups has {n_rows(groups)}; "
                         "give one group per row")
    if n == 0:
        raise ValueError(f"tasks: task '{name}' has no rows")
    return X, y, groups


@dataclass
class TaskData:
    """The data of one task (or the function that loads it on the node) and its folds.

    ``folds``: resampling name -> list of ``(train indices, test indices, info dict)``; the info
    (e.g. which subset was trained on) becomes columns of the score table.
    """

    name: str
    X: Any = None
    y: Any = None
    groups: Any = None
    loader: Callable[[], Any] | None = None
    n: int = 0
    folds: dict[str, list[tuple[Any, Any, dict]]] = field(default_factory=dict)

    def __repr__(self) -> str:
        if self.loader is not None:
            how = f"loaded on the node by {getattr(self.loader, '__name__', type(self.loader).__name__)}()"
        else:
            how = f"{self.n} rows x {self.X.shape[1] if hasattr(self.X, 'shape') else '?'} features"
        return f"<Task {self.name}: {how}>"

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_loaded"}

    def __batchtools_warm_up__(self) -> None:
        """Before the first job of this task in a process starts: load the data (start-up)."""
        self.arrays()

    def arrays(self) -> tuple[Any, Any, Any]:
        """``(X, y, groups)``: stored, or loaded once per process."""
        if self.loader is None:
            return self.X, self.y, self.groups
        loaded = self.__dict__.get("_loaded")
        if loaded is None:
            loaded = task_arrays(self.loader(), self.name)
            if self.n and n_rows(loaded[0]) != self.n:
                raise ValueError(f"task '{self.name}': its loader returned {n_rows(loaded[0])} rows on this node "
                                 f"but {self.n} when the folds were split; it must return the same data everywhere")
            self.__dict__["_loaded"] = loaded
        return loaded


@dataclass
class Fold:
    """One fold of one task: the problem instance every learner of the fold is given."""

    task: str
    resampling: str
    fold: int
    train: Any
    test: Any
    info: dict = field(default_factory=dict)
    X_train: Any = None
    y_train: Any = None
    X_test: Any = None
    y_test: Any = None
    groups_train: Any = None

    def __repr__(self) -> str:
        return (f"<Fold {self.fold} of {self.resampling} on {self.task}: "
                f"{len(self.train)} train, {len(self.test)} test>")


def fold_instance(data: TaskData, resampling: str, fold: int) -> Fold:
    """The problem function of a task: fold ``fold`` (1-based) of ``resampling``."""
    try:
        folds = data.folds[resampling]
    except KeyError:
        raise KeyError(f"task '{data.name}' has no resampling '{resampling}'") from None
    train, test, info = folds[fold - 1]
    X, y, groups = data.arrays()
    return Fold(data.name, resampling, fold, train, test, dict(info), take(X, train), take(y, train),
                take(X, test), take(y, test), take(groups, train))


def params_of(estimator: Any) -> dict[str, Any]:
    """The estimator's parameters with plain values (numbers, strings, None), nested ones included."""
    get = getattr(estimator, "get_params", None)
    if get is None:
        return {}
    try:
        pars = get(deep=True)
    except Exception:
        return {}
    return {k: v for k, v in sorted(pars.items()) if isinstance(v, SCALARS)}


def _fresh(estimator: Any) -> Any:
    if hasattr(estimator, "get_params"):
        try:
            from sklearn.base import clone
        except ImportError:
            raise _missing_sklearn() from None
        return clone(estimator)
    return copy.deepcopy(estimator)


def resolve_scorer(spec: Any) -> Callable | None:
    """A scorer ``f(estimator, X, y)``: ``spec`` itself, scikit-learn's scorer of that name, or
    None (the estimator's own ``score``)."""
    if spec is None or callable(spec):
        return spec
    try:
        from sklearn.metrics import get_scorer
    except ImportError:
        raise _missing_sklearn() from None
    return get_scorer(spec)


@dataclass
class Learner:
    """The algorithm function of one learner: clone the estimator, fit it on the fold's training
    rows, score it on the test rows with every scorer."""

    name: str
    estimator: Any
    scoring: dict[str, Any] = field(default_factory=lambda: {"score": None})
    store_model: bool = False
    store_predictions: bool = False
    code: str = ""  # digest of the source of the user's own classes and scorers in it, when it was added

    def __repr__(self) -> str:
        return f"<Learner {self.name}: {type(self.estimator).__name__}, scoring {list(self.scoring)}>"

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_scorers"}

    def __batchtools_warm_up__(self) -> None:
        """Before the first job of this learner in a process starts: import what cloning needs
        and resolve the scorers (scikit-learn's metrics), so no job's run time holds the imports."""
        if hasattr(self.estimator, "get_params"):
            try:
                import sklearn.base  # noqa: F401
            except ImportError:
                raise _missing_sklearn() from None
        self._scorer_functions()

    def _scorer_functions(self) -> dict[str, Callable | None]:
        found = self.__dict__.get("_scorers")
        if found is None:
            found = self.__dict__["_scorers"] = {name: resolve_scorer(spec) for name, spec in self.scoring.items()}
        return found

    def __call__(self, instance: Fold, job: Any = None) -> dict[str, Any]:
        est = _fresh(self.estimator)
        fit_kw = {}
        if instance.groups_train is not None and _takes_groups(est):
            fit_kw["groups"] = instance.groups_train
        t0 = time.perf_counter()
        est.fit(instance.X_train, instance.y_train, **fit_kw)
        fit_time = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores: dict[str, Any] = {}
        for name, scorer in self._scorer_functions().items():
            value = est.score(instance.X_test, instance.y_test) if scorer is None else \
                scorer(est, instance.X_test, instance.y_test)
            if isinstance(value, dict):  # a callable returning several scores
                scores.update({f"{k}": float(v) for k, v in value.items()})
            else:
                scores[name] = float(value)
        score_time = time.perf_counter() - t0
        out: dict[str, Any] = {"scores": scores, "fit_time": fit_time, "score_time": score_time,
                               "n_train": len(instance.train), "n_test": len(instance.test),
                               "info": instance.info, "params": params_of(est)}
        if self.store_predictions:
            truth = instance.y_test
            out["predictions"] = {"row_ids": np.asarray(instance.test), "truth": np.asarray(truth),
                                  "response": np.asarray(est.predict(instance.X_test))}
        if self.store_model:
            out["model"] = est
        return out


def _takes_groups(est: Any) -> bool:
    """Does ``est.fit`` take a ``groups`` argument (e.g. a search with a group-aware inner splitter)?"""
    import inspect

    try:
        return "groups" in inspect.signature(est.fit).parameters
    except (TypeError, ValueError):
        return False
