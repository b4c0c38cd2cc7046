"""Experiments: problems x algorithms x parameter designs x replications."""

from __future__ import annotations

import hashlib
import inspect
import logging
import pickle
import re
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..core.dependencies import check_not_waited_for
from ..core.jobstate import attempts
from ..core.jobstate.cleanup import drop_unused_resources, obsolete_logs, remove_dirs
from ..core.jobstate.ids import ids_frame
from ..core.jobstate.kinds import ALGO, PROB, Side, caller_scope
from ..core.jobstate.state import masks
from ..core.persistence.files import make_dir, unlink_quietly
from ..core.persistence.pickling import Pickled, check_stored_values, pickle_by_value
from ..core.persistence.tables import append_rows, new_status
from ..core.registry import RegistryState, require_kind, resolve
from ..node.experiment import Algorithm, Problem
from ..node.session import load_cached

log = logging.getLogger("batchtools")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
RESERVED = {"data", "job", "instance"}


def _exp_reg(reg, what: str) -> RegistryState:
    reg = resolve(reg)
    require_kind(reg, "experiment", what)
    return reg


def check_name(name: Any, what: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ValueError(f"name: a {what} name must be a non-empty string of letters, digits, '_', '.', '-', "
                         f"starting with a letter or digit; got {name!r}")
    return name


def register(reg: RegistryState, side: Side, name: str, obj: Any, fun: Callable | None,
             pickled: Pickled | None = None, quiet: bool = False) -> None:
    """Store a checked Problem (``side`` PROB) or Algorithm (ALGO) ``obj`` (``pickled``: its
    payload, if made already)."""
    pickled = pickled or pickle_by_value(obj, "fun", also=(fun,))
    key = side.plural
    names = list(reg.extra.get(key, []))
    if name in names:
        if not quiet:
            log.warning("Overwriting %s '%s'", side.word, name)
    else:
        names.append(name)
    path = side.path(reg.layout, name)
    with reg.mutation(f"add a {side.word}"):
        make_dir(path.parent)
        reg.write_bytes(path, pickled.payload)
        files = {**reg.extra.get("code_files", {}), **pickled.files}
        preload = sorted(set(reg.extra.get("preload", ())) | pickled.modules)
        reg.extra = {**reg.extra, key: names, "code_files": files, "preload": preload}
        reg.save(())
        if side is PROB:  # instances of an earlier definition are never read again (R deletes them too)
            _drop_instance_cache(reg, name)


def _drop_instance_cache(reg: RegistryState, name: str) -> None:
    """Delete the cached instances of problem ``name`` once the running change succeeded. New
    definitions cache under a new version (``Problem.version``), so an instance an older job
    writes late is never read either."""
    folder = reg.layout.problem_cache(name)
    reg.after_commit(lambda: shutil.rmtree(folder, ignore_errors=True))


def add_problem(name: str, data: Any = None, fun: Callable | None = None, seed: int | None = None,
                cache: bool = False, reg: RegistryState | None = None) -> Problem:
    """Add (or overwrite) a problem: static ``data`` stored once, and an instance
    function ``fun(data=, job=, **prob_pars)`` (none: the instance is ``data``).

    With ``seed``, replication ``r`` generates its instance with seed ``seed + r - 1``,
    so all algorithms of one replication see the same instance; ``cache=True``
    stores each such instance once and reuses it.

    >>> import batchtools as bt
    >>> reg = bt.make_experiment_registry(file_dir=None, seed=1)
    >>> bt.add_problem("p", data=list(range(10)), fun=lambda data, job, n: data[:n])
    Problem('p', seed=None, cache=False, fun=yes)
    """
    reg = _exp_reg(reg, "add_problem")
    reg.assert_writeable("add a problem")
    check_name(name, "problem")
    if fun is not None and not callable(fun):
        raise TypeError(f"fun: must be callable (data, job, **prob_pars) or None, got {type(fun).__name__}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed: must be an int or None, got {type(seed).__name__}")
    if not isinstance(cache, bool):
        raise TypeError("cache: must be True or False")
    if cache and seed is None:
        raise ValueError("cache: caching instances needs a problem seed (else instances differ per run); pass seed=...")
    prob = Problem(name, data, fun, seed, cache, version=uuid.uuid4().hex)
    register(reg, PROB, name, prob, fun)
    if cache:  # as R: the folder of the cached instances exists once the problem does
        make_dir(reg.layout.problem_cache(name))
    return prob


def add_algorithm(name: str, fun: Callable | None = None, reg: RegistryState | None = None) -> Algorithm:
    """Add (or overwrite) an algorithm ``fun(data=, job=, instance=, **algo_pars)``.
    Without ``fun`` the algorithm returns the instance.

    >>> import batchtools as bt
    >>> reg = bt.make_experiment_registry(file_dir=None, seed=1)
    >>> bt.add_algorithm("total", fun=lambda instance, k=1: sum(instance) * k)
    Algorithm('total')
    """
    reg = _exp_reg(reg, "add_algorithm")
    reg.assert_writeable("add an algorithm")
    check_name(name, "algorithm")
    if fun is not None and not callable(fun):
        raise TypeError(f"fun: must be callable (data, job, instance, **algo_pars) or None, got {type(fun).__name__}")
    algo = Algorithm(name, fun)
    register(reg, ALGO, name, algo, fun)
    return algo


def _design_rows(design: Any, arg: str, name: str) -> list[dict[str, Any]]:
    if design is None:
        return [{}]
    if isinstance(design, pd.DataFrame):
        dupes = sorted({str(c) for c in design.columns[design.columns.duplicated()]})
        if dupes:
            raise ValueError(f"{arg}: the design of '{name}' has duplicate column(s) {dupes}; give each parameter once")
        if design.shape[1] == 0:
            return [{}] * max(len(design), 1)
        cols = [str(c) for c in design.columns]
        lists = [design[c].tolist() for c in design.columns]
        return [dict(zip(cols, row)) for row in zip(*lists)]
    if isinstance(design, (list, tuple)) and all(isinstance(r, Mapping) for r in design):
        return [dict(r) for r in design] or [{}]
    raise TypeError(f"{arg}: the design of '{name}' must be a DataFrame (one row per parameter setting) "
                    f"or a list of dicts, got {type(design).__name__}")


def _accepted(fun: Callable | None, cols: set[str], arg: str, name: str, rows: list[dict] = ()) -> None:
    bad = cols & RESERVED
    if bad:
        raise ValueError(f"{arg}: design of '{name}' uses reserved names {sorted(bad)}")
    if fun is None:
        if cols:
            raise ValueError(f"{arg}: '{name}' has no function, so it takes no parameters; got {sorted(cols)}")
        return
    try:
        params = inspect.signature(fun).parameters
    except (TypeError, ValueError):
        return
    required = {n for n, p in params.items() if p.default is p.empty and n not in RESERVED
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    lacking = sorted({n for r in rows for n in required - set(r)})
    if lacking:
        raise ValueError(f"{arg}: the design of '{name}' does not set the required parameter(s) {lacking}; "
                         f"add a column for each (or give the function defaults)")
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    unknown = cols - set(params)
    if unknown:
        raise ValueError(f"{arg}: the function of '{name}' does not accept {sorted(unknown)}; "
                         f"it takes {sorted(set(params) - RESERVED)}")


def _row_hash(pars: dict[str, Any]) -> str:
    try:
        blob = pickle.dumps(sorted(pars.items()), protocol=4)
    except Exception as e:
        raise TypeError(f"design values must be picklable: {e}") from None
    return hashlib.md5(blob).hexdigest()


def _row_ids(reg: RegistryState, side: str, name: str, rows: list[dict]) -> list[int]:
    """Ids of the design rows of ``side`` ("prob"/"algo") in the ``designs`` table (adding new ones)."""
    des = reg.tables["designs"]
    mine = des[(des["kind"] == side) & (des["name"] == name)]
    known = dict(zip(mine["hash"].tolist(), mine["row_id"].tolist()))
    next_id = int(des["row_id"].max()) + 1 if len(des) else 1
    out, new = [], []
    for pars in rows:
        h = _row_hash(pars)
        if h not in known:
            known[h] = next_id
            new.append((next_id, side, name, pars, h))
            next_id += 1
        out.append(known[h])
    if new:
        add = pd.DataFrame(new, columns=["row_id", "kind", "name", "pars", "hash"])
        add["pars"] = add["pars"].astype(object)
        reg.tables["designs"] = pd.concat([des, add], ignore_index=True) if len(des) else add
    return out


def add_experiments(prob_designs: dict | None = None, algo_designs: dict | None = None,
                    repls: int | Sequence[int] = 1, combine: str = "crossprod",
                    reg: RegistryState | None = None) -> pd.DataFrame:
    """Add experiments: every problem design row x every algorithm design row
    (``combine="bind"`` pairs rows instead, recycling the shorter design), each ``repls`` times.

    Designs are dicts ``name -> DataFrame`` (an empty DataFrame: one parameterless
    row); the default is every problem and every algorithm. ``repls`` is one count, or one
    count per problem (in the order of ``prob_designs``). Replications ``1..repls`` that are
    not in the registry are added (a larger ``repls``, or replications removed before);
    existing ones are not added again. Returns the new job ids.

    >>> import batchtools as bt, pandas as pd
    >>> reg = bt.make_experiment_registry(file_dir=None, seed=1)
    >>> _ = bt.add_problem("p", data=[1, 2, 3], fun=lambda data, job, n: data[:n])
    >>> _ = bt.add_algorithm("a", fun=lambda instance, k: sum(instance) * k)
    >>> len(bt.add_experiments({"p": pd.DataFrame({"n": [1, 2]})}, {"a": pd.DataFrame({"k": [1, 10]})}, repls=2))
    8
    """
    reg = _exp_reg(reg, "add_experiments")
    reg.assert_writeable("add experiments")
    if combine not in ("crossprod", "bind"):
        raise ValueError(f"combine: must be 'crossprod' or 'bind', got {combine!r}")
    problems, algorithms = list(reg.extra["problems"]), list(reg.extra["algorithms"])
    pdes = {p: None for p in problems} if prob_designs is None else prob_designs
    ades = {a: None for a in algorithms} if algo_designs is None else algo_designs
    for arg, des, known, what in (("prob_designs", pdes, problems, "problem"),
                                  ("algo_designs", ades, algorithms, "algorithm")):
        if not isinstance(des, Mapping):
            raise TypeError(f"{arg}: must be a dict {what} name -> DataFrame, got {type(des).__name__}")
        unknown = [n for n in des if n not in known]
        if unknown:
            raise ValueError(f"{arg}: unknown {what}(s) {unknown}; add them first with add_{what}() "
                             f"(known: {known})")
    counts = _check_repls(repls, list(pdes))
    prob_rows = {p: _design_rows(d, "prob_designs", p) for p, d in pdes.items()}
    algo_rows = {a: _design_rows(d, "algo_designs", a) for a, d in ades.items()}
    for p, rows in prob_rows.items():
        _accepted(load_cached(reg.layout.problem(p)).fun, set().union(*rows), "prob_designs", p, rows)
    for a, rows in algo_rows.items():
        _accepted(load_cached(reg.layout.algorithm(a)).fun, set().union(*rows), "algo_designs", a, rows)
    for arg, designs in (("prob_designs", prob_rows), ("algo_designs", algo_rows)):
        for name, rows in designs.items():  # the designs are stored with the registry: refuse what cannot be
            where = [(k, col) for k, r in enumerate(rows) for col in r]
            check_stored_values([rows[k][col] for k, col in where], f"{arg}[{name!r}]",
                                lambda i: f"parameter {where[i][1]!r} of design row {where[i][0] + 1}")

    with reg.mutation("add experiments"):
        return _add(reg, prob_rows, algo_rows, counts, combine)


def _check_repls(repls, problems: list[str]) -> dict[str, int]:
    """``repls``: one count for all problems, or one per problem (in the order of the designs)."""
    def bad(value) -> bool:
        return isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1

    if isinstance(repls, (list, tuple, np.ndarray, pd.Series)):
        values = list(repls)
        if len(values) != len(problems) or any(map(bad, values)):
            raise ValueError(f"repls: give one int >= 1 for all problems or one per problem ({len(problems)}: "
                             f"{problems}), got {list(repls)!r}")
        return {p: int(v) for p, v in zip(problems, values)}
    if bad(repls):
        raise ValueError(f"repls: must be an int >= 1 (or one per problem), got {repls!r}")
    return {p: int(repls) for p in problems}


def _add(reg: RegistryState, prob_rows, algo_rows, repls: dict[str, int], combine: str) -> pd.DataFrame:
    n_designs = len(reg.tables["designs"])
    prob_ids = {p: np.array(_row_ids(reg, "prob", p, rows), dtype=np.int64) for p, rows in prob_rows.items()}
    algo_ids = {a: np.array(_row_ids(reg, "algo", a, rows), dtype=np.int64) for a, rows in algo_rows.items()}
    parts = []
    for p, pr in prob_ids.items():
        for a, ar in algo_ids.items():
            if combine == "crossprod":
                pp, aa = np.repeat(pr, ar.size), np.tile(ar, pr.size)
            else:
                n = max(pr.size, ar.size)
                pp, aa = np.resize(pr, n), np.resize(ar, n)
            parts.append(pd.DataFrame({"problem": p, "algorithm": a, "prob_row": pp, "algo_row": aa,
                                       "block": len(parts)}))
            log.info("Adding %d experiments ('%s'[%d] x '%s'[%d] x repls[%d])",
                     len(pp) * repls[p], p, pr.size, a, ar.size, repls[p])
    if not parts:
        return ids_frame(np.empty(0, np.int64))
    new = pd.concat(parts, ignore_index=True).drop_duplicates(ignore_index=True)
    keys = ["problem", "algorithm", "prob_row", "algo_row"]
    defs = reg.defs
    merged = new.merge(defs, on=keys, how="left")
    fresh = merged["def_id"].isna().to_numpy()
    next_def = int(defs["def_id"].max()) + 1 if len(defs) else 1
    def_ids = merged["def_id"].to_numpy(dtype=float, copy=True)
    def_ids[fresh] = np.arange(next_def, next_def + fresh.sum())
    def_ids = def_ids.astype(np.int64)
    if fresh.any():
        add = new.loc[fresh, keys].copy()
        add.insert(0, "def_id", def_ids[fresh])
        reg.tables["defs"] = pd.concat([defs, add], ignore_index=True) if len(defs) else add.reset_index(drop=True)
    # replications 1..repls of every definition that are not in the registry (as R: an anti-join on
    # (def_id, repl), so replications removed before are added again); job ids in R's order: block by
    # block (problem x algorithm), within a block by definition, then replication
    n_repl = new["problem"].map(repls).to_numpy(dtype=np.int64)
    cand = pd.DataFrame({"block": np.repeat(new["block"].to_numpy(), n_repl),
                         "def_id": np.repeat(def_ids, n_repl),
                         "repl": np.concatenate([np.arange(1, k + 1) for k in n_repl]).astype(np.int64)})
    st = reg.status
    if len(st):
        have = st[["def_id", "repl"]].drop_duplicates().assign(_have=True)
        cand = cand.merge(have, on=["def_id", "repl"], how="left")
        cand = cand[cand["_have"].isna()].drop(columns="_have")
    cand = cand.sort_values(["block", "def_id", "repl"], kind="stable")
    total = len(cand)
    if total == 0:
        if fresh.any() or len(reg.tables["designs"]) != n_designs:  # adding nothing again writes nothing
            reg.save(("designs", "defs"))
        return ids_frame(np.empty(0, np.int64))
    start = int(st["job_id"].max()) + 1 if len(st) else 1
    job_ids = np.arange(start, start + total, dtype=np.int64)
    rep_def, rep_no = cand["def_id"].to_numpy(np.int64), cand["repl"].to_numpy(np.int64)
    reg.tables["status"] = append_rows(st, new_status(job_ids, rep_def, rep_no))
    reg.mark_dirty("designs", "defs", "status")
    reg.save()
    return ids_frame(job_ids)


# ----------------------------------------------------------------- queries
def find_experiments(ids=None, prob_name: str | None = None, prob_pattern: str | None = None,
                     algo_name: str | None = None, algo_pattern: str | None = None, prob_pars=None,
                     algo_pars=None, repls=None, task=None, learner=None,
                     reg: RegistryState | None = None) -> pd.DataFrame:
    """Experiments by problem/algorithm name (exact or regex pattern; a name or a list of
    names), parameters (a pandas query string like ``"n > 5"``, where ``@name`` is the caller's
    variable, or a callable on the parameter dict) and replication numbers. ``task`` / ``learner``
    are ``prob_name`` / ``algo_name`` in the words of ML benchmarks (:func:`batchmark`):
    ``find_experiments(task="iris", learner=["tree", "forest"])``.

    >>> import batchtools as bt, pandas as pd
    >>> reg = bt.make_experiment_registry(file_dir=None, seed=1)
    >>> _ = bt.add_problem("p", fun=lambda data, job, n: n)
    >>> _ = bt.add_algorithm("a", fun=lambda instance, k: instance * k)
    >>> _ = bt.add_experiments({"p": pd.DataFrame({"n": [1, 2]})}, {"a": pd.DataFrame({"k": [1, 2]})})
    >>> bt.find_experiments(prob_pars="n > 1", algo_pars=lambda p: p["k"] == 2)["job_id"].tolist()
    [4]
    """
    reg = _exp_reg(reg, "find_experiments")
    for word, value, other, name in (("task", task, prob_name, "prob_name"), ("learner", learner, algo_name, "algo_name")):
        if value is not None and other is not None:
            raise ValueError(f"{word}: is another name for {name}; give one of them")
    prob_name = task if task is not None else prob_name
    algo_name = learner if learner is not None else algo_name
    defs = reg.definitions
    sel = reg.ids(ids)
    jobs = defs.job_frame(sel)
    keep = np.ones(len(jobs), dtype=bool)
    for value, col in ((prob_name, "problem"), (algo_name, "algorithm")):
        if value is not None:
            names = [value] if isinstance(value, str) else list(value)
            keep &= jobs[col].isin(names).to_numpy()
    for arg, value, col in (("prob_pattern", prob_pattern, "problem"), ("algo_pattern", algo_pattern, "algorithm")):
        if value is not None:
            try:
                rx = re.compile(value)
            except (re.error, TypeError) as e:
                raise ValueError(f"{arg}: not a valid regular expression: {e}") from None
            keep &= jobs[col].map(lambda s: bool(rx.search(s))).to_numpy(dtype=bool)
    scope = caller_scope()
    for arg, value, side, col in (("prob_pars", prob_pars, "prob", "prob_row"),
                                  ("algo_pars", algo_pars, "algo", "algo_row")):
        if value is not None:
            keep &= np.isin(jobs[col].to_numpy(), defs.matching_rows(side, value, arg, scope))
    if repls is not None:
        r = np.atleast_1d(np.asarray(repls))
        if r.dtype.kind not in "iu":
            raise TypeError(f"repls: must be an int or a list of ints, got {repls!r}")
        keep &= np.isin(jobs["repl"].to_numpy(), r)
    return ids_frame(sel[keep])


def summarize_experiments(ids=None, by=("problem", "algorithm"), reg: RegistryState | None = None) -> pd.DataFrame:
    """Number of experiments per ``by`` group (names, ``repl`` or parameter names; in an ML
    benchmark also ``task`` and ``learner``, the problem and algorithm in the benchmark's words)."""
    reg = _exp_reg(reg, "summarize_experiments")
    by = [by] if isinstance(by, str) else list(by)
    sel = reg.ids(ids)
    if set(by) <= {"problem", "algorithm"}:
        frame = reg.definitions.job_frame(sel)
    else:
        frame = reg.definitions.pars_frame(sel)
        missing = [b for b in by if b not in frame.columns]
        if missing:
            raise ValueError(f"by: unknown column(s) {missing}; available: {list(frame.columns)}")
    out = frame.groupby(by, sort=False, dropna=False).size().reset_index(name="count")
    return out


# ----------------------------------------------------------------- removal
def _remove_jobs(reg: RegistryState, job_ids: np.ndarray) -> None:
    busy = job_ids[masks(reg, reg.pos(job_ids))["system"]]
    if busy.size:
        raise ValueError(f"ids: job(s) {busy[:5].tolist()} are still on the system; kill_jobs() them first")
    check_not_waited_for(reg, job_ids)
    st = reg.status
    keep = ~st["job_id"].isin(job_ids)
    reg.tables["status"] = st[keep].reset_index(drop=True)
    used = np.unique(reg.status["def_id"].to_numpy())
    reg.tables["defs"] = reg.defs[reg.defs["def_id"].isin(used)].reset_index(drop=True)
    tags = reg.tables["tags"]
    reg.tables["tags"] = tags[~tags["job_id"].isin(job_ids)].reset_index(drop=True)
    attempts.drop(reg, job_ids)
    drop_unused_resources(reg)
    reg.mark_dirty("defs", "status", "tags")
    reg.save(("status", "defs", "tags", "attempts", "resources"), meta=False)
    reg.after_commit(lambda: reg.store.delete(job_ids.tolist()))
    # what R's sweep after a removal removes: the jobs' external folders, logs no job refers to any more
    reg.after_commit(lambda: remove_dirs(reg.layout.external_dir(i) for i in job_ids.tolist()))
    reg.after_commit(lambda: unlink_quietly(obsolete_logs(reg)))


def remove_experiments(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """Remove experiments (their definitions, status and results). Returns the removed ids."""
    reg = _exp_reg(reg, "remove_experiments")
    reg.assert_writeable("remove experiments")
    if ids is None:
        raise ValueError("ids: say which experiments to remove (e.g. find_experiments(...)); "
                         "use clear_registry() to remove all")
    sel = reg.ids(ids)
    with reg.mutation("remove experiments"):
        _remove_jobs(reg, sel)
    return ids_frame(sel)


def _remove_defs(reg: RegistryState, side: Side, names) -> pd.DataFrame:
    key, col = side.plural, side.word
    if isinstance(names, str):
        names = [names]
    elif not isinstance(names, (list, tuple, set, pd.Series, np.ndarray)) or not all(isinstance(n, str) for n in names):
        raise TypeError(f"name: the {col} name(s) to remove, a string or a list of strings; got {names!r}")
    names = list(names)
    known = list(reg.extra.get(key, []))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"name: unknown {col}(s) {unknown}; known: {known}")
    jobs = reg.definitions.job_frame(reg.job_ids)
    gone = jobs.loc[jobs[col].isin(names), "job_id"].to_numpy()
    with reg.mutation(f"remove {key}"):
        _remove_jobs(reg, gone)
        des = reg.tables["designs"]
        reg.tables["designs"] = des[~((des["kind"] == side.code) & des["name"].isin(names))].reset_index(drop=True)
        reg.extra = {**reg.extra, key: [n for n in known if n not in names]}
        reg.mark_dirty("designs")
        reg.save()
        reg.delete_after(side.path(reg.layout, n) for n in names)
        if side is PROB:
            for n in names:
                _drop_instance_cache(reg, n)
    return ids_frame(gone)


def remove_problems(name, reg: RegistryState | None = None) -> pd.DataFrame:
    """Remove problems and all their experiments (and results). Returns the removed job ids."""
    reg = _exp_reg(reg, "remove_problems")
    reg.assert_writeable("remove problems")
    return _remove_defs(reg, PROB, name)


def remove_algorithms(name, reg: RegistryState | None = None) -> pd.DataFrame:
    """Remove algorithms and all their experiments (and results). Returns the removed job ids."""
    reg = _exp_reg(reg, "remove_algorithms")
    reg.assert_writeable("remove algorithms")
    return _remove_defs(reg, ALGO, name)
