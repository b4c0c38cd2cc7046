"""ML benchmarks on an experiment registry: ``benchmark_grid`` -> ``batchmark`` -> ``submit_jobs``
-> ``reduce_results_batchmark`` (after mlr3's ``benchmark_grid`` and mlr3batchmark).

Each task becomes a problem whose data holds the folds of every resampling (split once, on the
master, seeded with the registry's seed: every learner sees the same folds), each learner an
algorithm that clones, fits and scores it (:mod:`batchtools.node.benchmark`), and each fold one
job: ``prob_pars = {"resampling": ..., "fold": k}``. Everything is checked before anything is
written. This file orchestrates the experiment verbs (problems, algorithms, experiments).
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import logging
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..core.checks import check_flag
from ..core.jobstate.ids import ids_frame
from ..core.jobstate.kinds import ALGO, PROB, Side
from ..core.jobstate.state import done_mask, masks
from ..core.persistence.pickling import pickle_by_value, user_module
from ..core.registry import RegistryState, require_kind, resolve
from ..node.benchmark import Learner, TaskData, fold_instance, n_rows, params_of, task_arrays
from ..node.experiment import Algorithm, Problem, rng_state_kept
from ..node.job import seed_everything
from ..node.session import load_cached
from .benchmark_result import KEYS, TIMES, BenchmarkResult
from .control import reset_jobs
from .experiments import NAME, add_experiments, register, remove_experiments

log = logging.getLogger("batchtools")

COLUMNS = ["task", "learner", "resampling", "task_data", "estimator", "splitter"]
RESERVED = set(KEYS + TIMES + ["n_train", "n_test", "job_id", "params", "n"])


def _sklearn(what: str):
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ImportError(f"{what} needs scikit-learn: pip install 'pybatchtools[ml]' (or scikit-learn)") from None


def _names(arg: str, value: Any, what: str) -> Mapping:
    if not isinstance(value, Mapping) or not value:
        raise TypeError(f"{arg}: a non-empty dict name -> {what}, got {type(value).__name__ if value is not None else None}")
    for name in value:
        if not isinstance(name, str) or not NAME.match(name):
            raise ValueError(f"{arg}: name {name!r} must be a non-empty string of letters, digits, '_', '.', '-' "
                             "(it names files and columns)")
    return value


def _task(name: str, value: Any) -> TaskData:
    if callable(value) and not isinstance(value, (tuple, list)) and not hasattr(value, "data"):
        return TaskData(name, loader=value)
    X, y, groups = task_arrays(value, name)
    return TaskData(name, X, y, groups, n=n_rows(X))


def _check_learner(name: str, est: Any) -> Any:
    if isinstance(est, type):
        raise TypeError(f"learners: learner '{name}' is the class {est.__name__}, not an estimator; "
                        f"write {est.__name__}() (with its parameters)")
    for method in ("fit",):
        if not callable(getattr(est, method, None)):
            raise TypeError(f"learners: learner '{name}' ({type(est).__name__}) has no {method}() method; "
                            "give a scikit-learn estimator or pipeline (anything with fit and predict)")
    return est


def _splitters(resamplings: Any) -> dict[str, Any]:
    from sklearn.model_selection import KFold

    def one(name: str, sp: Any) -> Any:
        if isinstance(sp, (int, np.integer)) and not isinstance(sp, bool):
            if sp < 2:
                raise ValueError(f"resamplings: '{name}': {sp} folds; cross-validation needs at least 2")
            return KFold(n_splits=int(sp), shuffle=True)
        if isinstance(sp, type):
            raise TypeError(f"resamplings: '{name}' is the class {sp.__name__}, not a splitter; "
                            f"write {sp.__name__}(...) with its parameters")
        if isinstance(sp, (str, bytes)) or not callable(getattr(sp, "split", None)):
            raise TypeError(f"resamplings: '{name}' ({type(sp).__name__}) is not a splitter: give an int (k-fold "
                            "cross-validation) or an object with split(X, y, groups), e.g. KFold(5)")
        return sp

    if isinstance(resamplings, Mapping):
        _names("resamplings", resamplings, "splitter")
        return {name: one(name, sp) for name, sp in resamplings.items()}
    if isinstance(resamplings, (int, np.integer)) and not isinstance(resamplings, bool):
        return {f"cv{int(resamplings)}": one(f"cv{int(resamplings)}", resamplings)}
    return {type(resamplings).__name__: one(type(resamplings).__name__, resamplings)}


def _object_column(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def benchmark_grid(tasks: Mapping, learners: Mapping, resamplings: Any) -> pd.DataFrame:
    """The design of an ML benchmark: one row per task x learner x resampling (mlr3's ``benchmark_grid``).

    ``tasks``: dict name -> ``(X, y)``, ``(X, y, groups)``, ``(DataFrame, "target")``,
    ``(DataFrame, "target", "group column")``, a scikit-learn Bunch, or a function returning one of
    these (called on the master once to split it, and on the node to load it; the data itself is
    not stored). ``learners``: dict name -> scikit-learn estimator or pipeline (cloned per job).
    ``resamplings``: an int (k-fold cross-validation, shuffled), a splitter (``KFold(5)``,
    ``GroupKFold(3)``, your own class with ``split(X, y, groups)``), or a dict name -> either. A
    splitter may yield ``(train, test, info)``: the ``info`` dict describes the fold in the scores.

    Returns a DataFrame with ``task``, ``learner``, ``resampling`` (names) and the objects
    (``task_data``, ``estimator``, ``splitter``); filter its rows freely before :func:`batchmark`.

    >>> import batchtools as bt
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.dummy import DummyClassifier
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> design = bt.benchmark_grid({"iris": load_iris(return_X_y=True)},
    ...                            {"dummy": DummyClassifier(), "tree": DecisionTreeClassifier()}, 3)
    >>> design[["task", "learner", "resampling"]]
      task learner resampling
    0  iris   dummy        cv3
    1  iris    tree        cv3
    """
    _sklearn("benchmark_grid")
    tasks = {name: _task(name, value) for name, value in _names("tasks", tasks, "data").items()}
    learners = {name: _check_learner(name, est) for name, est in _names("learners", learners, "estimator").items()}
    splitters = _splitters(resamplings)
    rows = [(t, lr, r) for t in tasks for lr in learners for r in splitters]
    return pd.DataFrame({
        "task": [t for t, _, _ in rows], "learner": [lr for _, lr, _ in rows], "resampling": [r for _, _, r in rows],
        "task_data": _object_column([tasks[t] for t, _, _ in rows]),
        "estimator": _object_column([learners[lr] for _, lr, _ in rows]),
        "splitter": _object_column([splitters[r] for _, _, r in rows]),
    })


# ------------------------------------------------------------------------------------ batchmark
def _scoring(scoring: Any) -> dict[str, Any]:
    """name -> scorer name, callable scorer, or None (the estimator's ``score``)."""
    if scoring is None:
        return {"score": None}
    if isinstance(scoring, str) or callable(scoring) and not isinstance(scoring, Mapping):
        scoring = [scoring]
    if isinstance(scoring, Mapping):
        items = list(scoring.items())
    elif isinstance(scoring, (list, tuple)) and scoring:
        items = [(s if isinstance(s, str) else getattr(s, "__name__", type(s).__name__), s) for s in scoring]
    else:
        raise TypeError("scoring: give a scorer name ('accuracy'), a scorer f(estimator, X, y), "
                        f"a list of these or a dict name -> scorer; got {scoring!r}")
    from sklearn.metrics import get_scorer, get_scorer_names

    out: dict[str, Any] = {}
    for name, spec in items:
        if not isinstance(name, str) or not name or name in RESERVED:
            raise ValueError(f"scoring: {name!r} cannot name a score column (reserved: {sorted(RESERVED)})")
        if name in out:
            raise ValueError(f"scoring: {name!r} is given twice")
        if isinstance(spec, str):
            try:
                get_scorer(spec)
            except (ValueError, KeyError):
                close = difflib.get_close_matches(spec, get_scorer_names(), n=3)
                hint = f"; did you mean {close}?" if close else ""
                raise ValueError(f"scoring: unknown scorer {spec!r}{hint} (all: sklearn.metrics.get_scorer_names())") \
                    from None
        elif callable(spec):
            try:
                inspect.signature(spec).bind(None, None, None)
            except TypeError:
                raise TypeError(f"scoring: {name!r} must be a scorer f(estimator, X, y); wrap a metric "
                                "f(y_true, y_pred) with sklearn.metrics.make_scorer(...)") from None
            except ValueError:
                pass
        else:
            raise TypeError(f"scoring: {name!r} must be a scorer name or a callable, got {type(spec).__name__}")
        out[name] = spec
    return out


def _same(a: Any, b: Any) -> bool:
    """Do two objects under one name (e.g. from two concatenated grids) stand for the same thing?"""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, TaskData):
        if a.loader is not None or b.loader is not None:
            return a.loader is b.loader
        return all(x is y for x, y in ((a.X, b.X), (a.y, b.y), (a.groups, b.groups))) or _data_hash(a) == _data_hash(b)
    if hasattr(a, "get_params"):
        return params_of(a) == params_of(b)
    return repr(a) == repr(b)


def _by_name(design: pd.DataFrame, name_col: str, obj_col: str, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, obj in zip(design[name_col].tolist(), design[obj_col].tolist()):
        if name in out and not _same(out[name], obj):
            raise ValueError(f"design: the {what} name '{name}' stands for two different objects; give them "
                             "different names")
        out.setdefault(name, obj)
    return out


def _check_design(design: Any) -> tuple[dict, dict, dict, list[tuple[str, str, str]]]:
    if not isinstance(design, pd.DataFrame) or any(c not in design.columns for c in COLUMNS):
        raise TypeError(f"design: give the DataFrame of benchmark_grid(tasks, learners, resamplings) "
                        f"(columns {COLUMNS}), got {type(design).__name__}")
    if not len(design):
        raise ValueError("design: has no rows; nothing to benchmark")
    tasks = _by_name(design, "task", "task_data", "task")
    learners = _by_name(design, "learner", "estimator", "learner")
    splitters = _by_name(design, "resampling", "splitter", "resampling")
    for name, td in tasks.items():
        if not isinstance(td, TaskData) or td.name != name:
            raise TypeError(f"design: task '{name}' was not made by benchmark_grid; build the design with it")
    for name, est in learners.items():
        _check_learner(name, est)
    for name, sp in splitters.items():
        if isinstance(sp, (str, bytes)) or not callable(getattr(sp, "split", None)):
            raise TypeError(f"design: resampling '{name}' is not a splitter; build the design with benchmark_grid")
    rows = list(dict.fromkeys(zip(design["task"].tolist(), design["learner"].tolist(),
                                  design["resampling"].tolist())))
    return tasks, learners, splitters, rows


def _indices(part: Any, n: int) -> np.ndarray:
    a = np.asarray(part)
    if a.dtype == bool:
        if a.size != n:
            raise ValueError(f"a boolean mask of {a.size} values for {n} rows")
        return np.flatnonzero(a)
    if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise ValueError("indices must be a 1-d array of row positions")
    if a.size and (a.min() < -n or a.max() >= n):
        raise ValueError(f"row positions outside 0..{n - 1}")
    return np.where(a < 0, a + n, a).astype(np.int64)


def _split(seed: int, task: str, name: str, splitter: Any, X, y, groups) -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """The folds of ``task`` under ``splitter``, split with the registry's seed."""
    n = n_rows(X)
    with rng_state_kept():
        seed_everything(seed)
        try:
            raw = list(splitter.split(X, y, groups))
        except Exception as e:
            hint = "; give the task groups: (X, y, groups)" if groups is None and "group" in str(e).lower() else ""
            raise ValueError(f"resamplings: '{name}' cannot split task '{task}' ({type(e).__name__}: {e}){hint}") \
                from None
    if not raw:
        raise ValueError(f"resamplings: '{name}' yields no folds for task '{task}' ({n} rows); check its settings "
                         "(n_splits, groups) against the task")
    folds = []
    for k, item in enumerate(raw, start=1):
        try:
            train, test, *rest = item
            if len(rest) > 1 or rest and not isinstance(rest[0], Mapping):
                raise ValueError("items must be (train, test) or (train, test, info dict)")
            train, test = _indices(train, n), _indices(test, n)
        except (TypeError, ValueError) as e:
            raise ValueError(f"resamplings: fold {k} of '{name}' on task '{task}' is not a split ({e})") from None
        if not train.size or not test.size:
            raise ValueError(f"resamplings: fold {k} of '{name}' on task '{task}' has an empty "
                             f"{'training' if not train.size else 'test'} set; check the splitter against the task")
        info = dict(rest[0]) if rest else {}
        bad = [c for c in info if not isinstance(c, str) or c in RESERVED]
        if bad:
            raise ValueError(f"resamplings: '{name}' describes its folds with reserved or non-string keys {bad}")
        folds.append((train, test, info))
    return folds


def _data_hash(td: TaskData) -> str | None:
    """A fingerprint of a task's stored data (None for a loader: its data is not stored)."""
    if td.loader is not None:
        return None
    return hashlib.md5(pickle.dumps((td.X, td.y, td.groups), protocol=4)).hexdigest()


def _same_folds(a: list, b: list) -> bool:
    return len(a) == len(b) and all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) and x[2] == y[2]
                                    for x, y in zip(a, b))


def _stored(reg: RegistryState, side: Side, name: str):
    if name not in reg.extra.get(side.plural, []):
        return None
    return load_cached(side.path(reg.layout, name))


def batchmark(design: pd.DataFrame, scoring: Any = None, store_models: bool = False, store_predictions: bool = False,
              replace: bool = False, reg: RegistryState | None = None) -> pd.DataFrame:
    """Add an ML benchmark to an experiment registry: one job per task x learner x resampling x fold.

    ``design``: from :func:`benchmark_grid` (rows may be filtered or concatenated). Each task is
    split once per resampling, here, with the registry's seed, so every learner sees the same
    folds on every backend. ``scoring``: None (the estimator's ``score``), a scikit-learn scorer
    name (``"accuracy"``, ``"neg_root_mean_squared_error"``), a scorer ``f(estimator, X, y)``, a
    list of these or a dict name -> scorer. ``store_models`` / ``store_predictions`` keep the
    fitted models / test predictions in the results. Adding the same design again adds nothing,
    so a script that defines and submits its benchmark can run again.

    A learner already in the registry under the same name with other settings (parameters,
    scoring, what is stored, or the source code of your own estimator class or scorer in it), or a
    task with other data or other folds, is refused, saying what differs, unless
    ``replace=True``: then its jobs are replaced (reset to run again with the new settings; their
    results and errors are discarded, and a warning says how many), and unchanged learners and
    tasks keep theirs. This is how a broken learner is fixed in place. A replaced task must be split
    again for every resampling it has jobs of, so the design must include them.

    Returns the ids of the jobs to run: those added, and those replaced. Run them with
    ``submit_jobs`` (or ``submit_workers``) and collect the scores with
    :func:`reduce_results_batchmark`. Nothing is written unless every check passes; a failure
    leaves the registry as it was.

    >>> import batchtools as bt
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> reg = bt.make_experiment_registry(file_dir=None, seed=1)
    >>> design = bt.benchmark_grid({"iris": load_iris(return_X_y=True)}, {"tree": DecisionTreeClassifier()}, 3)
    >>> bt.batchmark(design, scoring="accuracy")["job_id"].tolist()
    [1, 2, 3]
    >>> len(bt.batchmark(design, scoring="accuracy"))
    0
    >>> deeper = bt.benchmark_grid({"iris": load_iris(return_X_y=True)}, {"tree": DecisionTreeClassifier(max_depth=3)}, 3)
    >>> bt.batchmark(deeper, scoring="accuracy", replace=True)["job_id"].tolist()  # the same jobs, to run again
    [1, 2, 3]
    """
    reg = resolve(reg)
    require_kind(reg, "experiment", "batchmark")
    reg.assert_writeable("add a benchmark")
    check_flag("store_models", store_models)
    check_flag("store_predictions", store_predictions)
    check_flag("replace", replace)
    _sklearn("batchmark")
    tasks, learners, splitters, rows = _check_design(design)
    scorers = _scoring(scoring)

    # every check and every payload first: nothing is written until all of them pass
    problems: dict[str, tuple[Problem, Any]] = {}
    n_folds: dict[tuple[str, str], int] = {}
    replaced_tasks: dict[str, set[str] | None] = {}  # task -> its resamplings whose jobs are replaced (None: all)
    replaced_learners: list[str] = []
    for name, td in tasks.items():
        if td.loader is not None:
            try:
                value = td.loader()
            except Exception as e:
                raise ValueError(f"tasks: the loader of task '{name}' failed ({type(e).__name__}: {e})") from None
            X, y, groups = task_arrays(value, name)
        else:
            X, y, groups = td.X, td.y, td.groups
        wanted = list(dict.fromkeys(r for t, _, r in rows if t == name))
        folds = {r: _split(reg.seed, name, r, splitters[r], X, y, groups) for r in wanted}
        n_folds.update({(name, r): len(f) for r, f in folds.items()})
        new = TaskData(name, None if td.loader else X, None if td.loader else y, None if td.loader else groups,
                       td.loader, n_rows(X), {})
        old = _stored(reg, PROB, name)
        if old is None:
            new.folds = folds
        elif not isinstance(old.data, TaskData):
            raise ValueError(f"tasks: '{name}' is a problem of this registry that batchmark did not add; "
                             "give the task another name")
        elif _data_hash(old.data) != _data_hash(new) or old.data.n != new.n:
            if not replace:
                raise ValueError(f"tasks: task '{name}' is already in this registry with other data; pass "
                                 "replace=True to replace its jobs (their results go), or give it another name")
            missing = [r for r in old.data.folds if r not in folds]
            if missing:
                raise ValueError(f"tasks: task '{name}' has other data, and it has jobs of the resampling(s) "
                                 f"{missing} that this design does not split again; add them to the design, or "
                                 f"remove_problems('{name}') first")
            new.folds = folds
            replaced_tasks[name] = None
        else:
            other = [r for r, f in folds.items() if r in old.data.folds and not _same_folds(old.data.folds[r], f)]
            if other and not replace:
                raise ValueError(f"resamplings: '{other[0]}' of task '{name}' is already in this registry with other "
                                 "folds; pass replace=True to replace its jobs (their results go), or give the "
                                 "resampling another name")
            if not other and all(r in old.data.folds for r in folds):
                continue  # nothing new for this task
            new.folds = {**old.data.folds, **folds}
            if other:
                replaced_tasks[name] = set(other)
        prob = Problem(name, new, fold_instance)
        problems[name] = (prob, pickle_by_value(prob, f"tasks['{name}']", also=(td.loader,)))
    algorithms: dict[str, tuple[Algorithm, Any]] = {}
    for name, est in learners.items():
        learner = Learner(name, est, scorers, store_models, store_predictions, _user_code(est, scorers))
        old = _stored(reg, ALGO, name)
        if old is not None:
            if not isinstance(old.fun, Learner):
                raise ValueError(f"learners: '{name}' is an algorithm of this registry that batchmark did not add; "
                                 "give the learner another name")
            changed = _difference(old.fun, learner)
            if not changed:
                continue
            if not replace:
                raise ValueError(f"learners: learner '{name}' is already in this registry with other settings "
                                 f"({changed}); pass replace=True to replace its jobs (their results go), or give "
                                 "it another name")
            replaced_learners.append(name)
        algo = Algorithm(name, learner)
        algorithms[name] = (algo, pickle_by_value(algo, f"learners['{name}']", also=(est, *scorers.values())))

    plan = _replacement(reg, replaced_tasks, replaced_learners, n_folds, rows) \
        if replaced_tasks or replaced_learners else None
    with reg.mutation("add a benchmark"):
        for name, (prob, pickled) in problems.items():
            register(reg, PROB, name, prob, prob.fun, pickled, quiet=True)
        for name, (algo, pickled) in algorithms.items():
            register(reg, ALGO, name, algo, algo.fun, pickled, quiet=True)
        if not reg.extra.get("benchmark"):
            reg.extra = {**reg.extra, "benchmark": True}  # task/learner name problem/algorithm (core.kinds)
            reg.save(())
        if plan is not None:
            if plan.surplus.size:
                remove_experiments(plan.surplus, reg=reg)
            if plan.reset.size:
                reset_jobs(plan.reset, reg=reg)
        new_ids = _add_jobs(reg, rows + (plan.rows if plan is not None else []), n_folds)
    if plan is not None:
        for line in plan.messages:
            log.warning("batchmark: %s", line)
        new_ids = np.union1d(new_ids, plan.reset)
    return ids_frame(np.sort(new_ids).astype(np.int64))


def _add_jobs(reg: RegistryState, rows: list[tuple[str, str, str]], n_folds: dict[tuple[str, str], int]) -> np.ndarray:
    """One add_experiments per group of learners that share the same (task, resampling) pairs."""
    pairs: dict[str, list[tuple[str, str]]] = {}
    for t, lr, r in dict.fromkeys(rows):
        pairs.setdefault(lr, []).append((t, r))
    groups: dict[tuple, list[str]] = {}
    for lr, tr in pairs.items():
        groups.setdefault(tuple(tr), []).append(lr)
    new_ids = []
    for tr, lrs in groups.items():
        prob_designs: dict[str, list[dict]] = {}
        for t, r in tr:
            prob_designs.setdefault(t, []).extend({"resampling": r, "fold": k} for k in range(1, n_folds[t, r] + 1))
        ids = add_experiments({t: pd.DataFrame(d) for t, d in prob_designs.items()}, {lr: None for lr in lrs}, reg=reg)
        new_ids.append(ids["job_id"].to_numpy())
    return np.concatenate(new_ids) if new_ids else np.empty(0, np.int64)


@dataclass
class _Replacement:
    reset: np.ndarray  # jobs that run again with the new settings
    surplus: np.ndarray  # jobs of folds a replaced task no longer has
    rows: list[tuple[str, str, str]]  # (task, learner, resampling) of learners outside the design on replaced folds
    messages: list[str]


def _replacement(reg: RegistryState, tasks: dict[str, set[str] | None], learners: list[str],
                 n_folds: dict[tuple[str, str], int], rows: list[tuple[str, str, str]]) -> _Replacement:
    """Which jobs ``batchmark(replace=True)`` resets or removes; refused (before anything is
    written) while any of them is queued or running."""
    reg.sync()
    sel = reg.job_ids
    jobs = reg.definitions.job_pars(sel)
    task = jobs["problem"].to_numpy()
    learner = jobs["algorithm"].to_numpy()
    resampling = np.array([p.get("resampling") for p in jobs["prob_pars"]], dtype=object)
    fold = np.array([p.get("fold", 0) for p in jobs["prob_pars"]], dtype=np.int64)
    reset = np.zeros(sel.size, bool)
    surplus = np.zeros(sel.size, bool)
    extra_rows: list[tuple[str, str, str]] = []
    what = []
    for name in learners:
        hit = learner == name
        what.append((f"learner '{name}' has other settings", hit))
        reset |= hit
    for name, which in tasks.items():
        hit = (task == name) & (np.isin(resampling, list(which)) if which is not None else True)
        for r in dict.fromkeys(resampling[hit].tolist()):
            on = hit & (resampling == r)
            surplus |= on & (fold > n_folds[name, r])
            extra_rows += [(name, lr, r) for lr in dict.fromkeys(learner[on].tolist())]
        what.append((f"task '{name}' has " + (f"other folds of {', '.join(map(repr, sorted(which)))}" if which
                                               else "other data"), hit))
        reset |= hit
    reset &= ~surplus
    m = masks(reg, reg.pos(sel))
    busy = sel[(reset | surplus) & m["system"]]
    if busy.size:
        raise ValueError(f"replace: {busy.size} job(s) to replace are queued or running, e.g. {busy[:5].tolist()}; "
                         "wait_for_jobs() or kill_jobs() them first")
    messages = []
    for text, hit in what:
        hit = hit & (reset | surplus)
        gone = hit & surplus
        messages.append(f"{text} (replace=True): its {int((hit & reset).sum())} jobs will run again"
                        + (f", {int(gone.sum())} removed (folds it no longer has)" if gone.any() else "")
                        + f"; {int((hit & m['done']).sum())} results and {int((hit & m['error']).sum())} errors "
                        "discarded")
    known = set(rows)
    return _Replacement(sel[reset], sel[surplus], [r for r in dict.fromkeys(extra_rows) if r not in known], messages)


def _settings(learner: Learner) -> dict[str, Any]:
    """What makes two learners of one name the same: class, parameters, scorers, what is stored,
    and the source of the user's own classes and scorers in it (a fixed bug is a change)."""
    est = learner.estimator
    return {"class": f"{type(est).__module__}.{type(est).__qualname__}", "params": params_of(est),
            "scoring": list(learner.scoring), "store_models": learner.store_model,
            "store_predictions": learner.store_predictions, "code": learner.code}


def _difference(old: Learner, new: Learner) -> str:
    """What differs between two learners' settings, in words ("" if nothing)."""
    a, b = _settings(old), _settings(new)
    out = []
    for key in a:
        if a[key] == b[key] or key == "code" and not (a[key] and b[key]):  # code: compared when both are known
            continue
        if key == "params":
            keys = [k for k in dict.fromkeys([*a[key], *b[key]]) if a[key].get(k) != b[key].get(k)]
            out += [f"{k}={a[key].get(k)!r} -> {b[key].get(k)!r}" for k in keys]
        elif key == "code":
            out.append("the source of its own code changed")
        else:
            out.append(f"{key} {a[key]!r} -> {b[key]!r}")
    return "; ".join(out)


def _user_code(est: Any, scorers: dict[str, Any]) -> str:
    """A digest of the source of the user's own code in a learner: the classes of the estimator and
    of the estimators nested in it (pipeline steps, wrapped models), and scorer functions; "" if
    none (or its source cannot be read, e.g. typed into an interpreter)."""
    try:
        nested = list(est.get_params(deep=True).values()) if callable(getattr(est, "get_params", None)) else []
    except Exception:  # an estimator whose parameters cannot be listed: its own class still counts
        nested = []
    objects = [type(o) for o in (est, *nested) if callable(getattr(o, "fit", None))] + \
        [getattr(s, "_score_func", s) for s in scorers.values() if callable(s)]  # make_scorer keeps the metric
    sources = []
    for obj in dict.fromkeys(objects):
        if getattr(obj, "__module__", None) != "__main__" and user_module(obj) is None:
            continue  # installed code: its version is not the benchmark's business
        try:
            sources.append(f"{obj.__module__}.{obj.__qualname__}\n{inspect.getsource(obj)}")
        except (OSError, TypeError):
            continue
    return hashlib.sha1("\n".join(sources).encode()).hexdigest()[:12] if sources else ""


# ------------------------------------------------------------------------------------ results
def reduce_results_batchmark(ids=None, reg: RegistryState | None = None) -> BenchmarkResult:
    """The scores of a benchmark's finished jobs (default: every job :func:`batchmark` added that is
    done; jobs not done yet or failed are left out, see ``get_status()``).

    Returns a :class:`~batchtools.api.benchmark_result.BenchmarkResult`: ``.scores`` (one row per job:
    ``task``, ``learner``, ``resampling``, ``fold``, one column per scorer, ``fit_time``,
    ``score_time``, ``job_id``, the learner's ``params``), ``.aggregate()`` (mean and sd per task x
    learner), ``.plot()``, and ``.predictions`` / ``.models`` when stored.

    >>> import batchtools as bt
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.dummy import DummyClassifier
    >>> reg = bt.make_experiment_registry(file_dir=None, seed=1)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batchmark(bt.benchmark_grid({"iris": load_iris(return_X_y=True)}, {"dummy": DummyClassifier()}, 3),
    ...                  scoring="accuracy")
    >>> _ = bt.submit_jobs()
    >>> res = bt.reduce_results_batchmark()
    >>> res.aggregate()[["task", "learner", "accuracy_mean", "n"]]
       task learner  accuracy_mean  n
    0  iris   dummy       0.266667  3
    """
    reg = resolve(reg)
    require_kind(reg, "experiment", "reduce_results_batchmark")
    reg.sync()
    sel = reg.ids(ids)
    jobs = reg.definitions.job_pars(sel)
    algos = {a: load_cached(reg.layout.algorithm(a)) for a in jobs["algorithm"].unique().tolist()}
    ours = jobs["algorithm"].map(lambda a: isinstance(algos[a].fun, Learner)).to_numpy(dtype=bool)
    if ids is not None and not ours.all():
        bad = sel[~ours]
        raise ValueError(f"ids: job(s) {bad[:5].tolist()} were not added by batchmark")
    scorers = list(dict.fromkeys(k for a in jobs.loc[ours, "algorithm"].unique() for k in algos[a].fun.scoring))
    keep = ours & done_mask(reg, sel)
    sel, jobs = sel[keep], jobs[keep].reset_index(drop=True)
    results = reg.store.get_many(sel.tolist())
    for r in results:  # callables returning several scores add columns
        scorers.extend(k for k in r["scores"] if k not in scorers)
    info = list(dict.fromkeys(k for r in results for k in r["info"]))
    table: dict[str, Any] = {
        "task": jobs["problem"].tolist(), "learner": jobs["algorithm"].tolist(),
        "resampling": [p["resampling"] for p in jobs["prob_pars"]],
        "fold": np.array([p["fold"] for p in jobs["prob_pars"]], dtype=np.int64),
    }
    for k in info:
        table[k] = [r["info"].get(k) for r in results]
    for k in scorers:
        table[k] = np.array([r["scores"].get(k, np.nan) for r in results], dtype=float)
    for k in TIMES + ["n_train", "n_test"]:
        table[k] = np.array([r[k] for r in results], dtype=float if k in TIMES else np.int64)
    table["job_id"] = sel
    table["params"] = _object_column([r["params"] for r in results])
    scores = pd.DataFrame(table)
    predictions = {int(j): r["predictions"] for j, r in zip(sel.tolist(), results) if "predictions" in r}
    models = {int(j): r["model"] for j, r in zip(sel.tolist(), results) if "model" in r}
    return BenchmarkResult(scores, scorers, info, predictions, models)

