"""Per-kind job definitions: what a job computes, for ``batch_map`` registries and for experiments.

A registry picks its :class:`Definitions` once (:func:`definitions_for`); verbs ask it for the
parameter frame (queries), the parameter dicts (``get_job_pars``) and the job specs a node runs.
Besides this, the kind is looked at by the node's runners (``node/runners.py``), by
``repair_registry`` and ``recommend_resources`` (a plain registry's status rows and groups differ),
by the verbs of one kind (``require_kind``), and where a kind's name picks its class.

- :class:`MapDefinitions`: ``defs`` holds one column per mapped argument, rows aligned with
  ``status`` (job i is definition i), so queries are vectorised pandas expressions.
- :class:`ExperimentDefinitions`: each distinct problem/algorithm design row is stored once in
  ``designs``; a definition (``defs``) points at one row of each; ``status`` adds ``repl``.

"Kind" means the registry's kind (map or experiment) only. The two sides of an experiment,
problems and algorithms, are a :class:`Side` (:data:`PROB`, :data:`ALGO`), whose ``code``
("prob"/"algo") is what the ``designs`` table's ``kind`` column holds (a saved column, named so
since format 1).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..persistence.files import bulk_objects
from ..persistence.tables import new_attempts, new_status


@dataclass(frozen=True)
class Side:
    """One side of an experiment: the problems or the algorithms.

    >>> PROB.code, PROB.word, PROB.plural, SIDES["algo"] is ALGO
    ('prob', 'problem', 'problems', True)
    """

    code: str  # "prob"/"algo": the designs table's kind column, the prefix of prob_pars/algo_pars
    word: str  # "problem"/"algorithm": the job table's column, and the word in messages
    plural: str  # "problems"/"algorithms": the settings' list of names (reg.extra)

    def path(self, layout, name: str):
        """The registry file holding the definition ``name`` of this side."""
        return layout.problem(name) if self is PROB else layout.algorithm(name)


PROB = Side("prob", "problem", "problems")
ALGO = Side("algo", "algorithm", "algorithms")
SIDES = {s.code: s for s in (PROB, ALGO)}


def pars_dicts(frame: pd.DataFrame) -> list[dict]:
    """Rows of a parameter frame as dicts of plain Python values (no ``job_id``)."""
    cols = [c for c in frame.columns if c != "job_id"]
    lists = [frame[c].tolist() for c in cols]
    return [dict(zip(cols, row)) for row in zip(*lists)] if cols else [{} for _ in range(len(frame))]


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + os.sep


def caller_scope() -> tuple[dict, dict]:
    """(locals, globals) of the nearest caller outside this package: the variables a query string
    names with ``@`` (R's ``findJobs(i == xi)`` sees the caller's ``xi``)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    return (frame.f_locals, frame.f_globals) if frame is not None else ({}, {})


def filter_pars(frame: pd.DataFrame, expr: str | Callable, arg: str = "expr",
                scope: tuple[dict, dict] | None = None) -> np.ndarray:
    """Boolean mask over ``frame`` rows: a pandas query string (``@name`` is a variable of
    ``scope``, the caller's (locals, globals)) or a callable on the parameter dict."""
    if isinstance(expr, str):
        local, glob = scope or ({}, {})
        try:
            if all(isinstance(c, str) and c.isidentifier() for c in frame.columns):
                # the columns as they are: DataFrame.eval would also copy the index into resolvers
                hit = pd.eval(expr, resolvers=({c: frame[c] for c in frame.columns},), local_dict=local, level=1,
                              global_dict=glob)
            else:
                hit = frame.eval(expr, local_dict=local, global_dict=glob)
        except Exception as e:
            raise ValueError(f"{arg}: cannot evaluate {expr!r} ({type(e).__name__}: {e}); "
                             f"available columns: {list(frame.columns)}") from None
        hit = np.asarray(hit)
        if hit.dtype != bool or hit.shape != (len(frame),):
            raise ValueError(f"{arg}: {expr!r} must give one True/False per job, e.g. 'x > 5'")
        return hit
    if callable(expr):
        return np.fromiter((bool(expr(d)) for d in pars_dicts(frame)), dtype=bool, count=len(frame))
    raise TypeError(f"{arg}: must be a query string like 'x > 5' or a callable on the parameter dict")


def _common_tables(status: pd.DataFrame) -> dict[str, pd.DataFrame]:
    empty = np.empty(0, dtype=np.int64)
    return {
        "status": status,
        "resources": pd.DataFrame(
            {"resource_id": empty, "resource_hash": np.empty(0, object), "resources": np.empty(0, object)}
        ),
        "tags": pd.DataFrame({"job_id": empty, "tag": np.empty(0, dtype=object)}),
        "attempts": new_attempts(),
    }


class Definitions:
    """The definitions of one registry's jobs (see the module docstring)."""

    kind = "abstract"
    title = "Registry"  # the first line of the registry's printout (R's)
    # status columns shown next to the times in get_job_status
    status_columns: tuple[str, ...] = ()

    def __init__(self, reg):
        self.reg = reg

    def empty_tables(self) -> dict[str, pd.DataFrame]:
        raise NotImplementedError

    def initial_extra(self) -> dict[str, Any]:
        """Kind-specific settings of a new (or cleared) registry."""
        return {}

    def counts(self) -> dict[str, int]:
        """What the registry's printout counts besides its jobs (experiments: problems, algorithms)."""
        return {}

    def pars_frame(self, ids: np.ndarray) -> pd.DataFrame:
        """``job_id`` plus one column per parameter (vectorised; for queries)."""
        raise NotImplementedError

    def job_pars(self, ids: np.ndarray) -> pd.DataFrame:
        """``get_job_pars``: ``job_id`` and the parameters as dict columns."""
        raise NotImplementedError

    def specs(self, ids: np.ndarray) -> list[dict[str, Any]]:
        """One dict per job, as the node's runner of this kind expects it."""
        raise NotImplementedError

    def filter(self, ids: np.ndarray, expr, arg: str = "expr", scope: tuple[dict, dict] | None = None) -> np.ndarray:
        """Ids among ``ids`` whose parameters match ``expr`` (query string or callable)."""
        return ids[filter_pars(self.pars_frame(ids), expr, arg, scope)]

    def column(self, name: str, columns=()) -> str:
        """The column a user's word ``name`` stands for, among ``columns`` (where a column of that
        name wins): the name itself, except in an ML benchmark registry (see ExperimentDefinitions)."""
        return name


class MapDefinitions(Definitions):
    kind = "map"
    title = "Job Registry"

    def empty_tables(self) -> dict[str, pd.DataFrame]:
        empty = np.empty(0, dtype=np.int64)
        return {"defs": pd.DataFrame({"def_id": empty}), **_common_tables(new_status(empty, empty))}

    def columns(self) -> dict[str, np.ndarray]:
        """The parameter columns as arrays (rows aligned with ``status``), cached per ``defs`` table."""
        defs = self.reg.defs
        cache = getattr(self, "_columns", None)
        if cache is None or cache[0] is not defs:
            cache = self._columns = (defs, {c: defs[c].to_numpy() for c in defs.columns if c != "def_id"})
        return cache[1]

    def pars_frame(self, ids: np.ndarray) -> pd.DataFrame:
        job_ids = self.reg.job_ids
        if len(ids) == len(job_ids) and np.array_equal(ids, job_ids):  # all jobs: the columns as they are
            return pd.DataFrame({"job_id": ids, **self.columns()}, copy=False)
        pos = self.reg.pos(ids)
        return pd.DataFrame({"job_id": ids, **{c: a[pos] for c, a in self.columns().items()}}, copy=False)

    def job_pars(self, ids: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"job_id": ids, "job_pars": pars_dicts(self.pars_frame(ids))})

    def specs(self, ids: np.ndarray) -> list[dict[str, Any]]:
        pos = self.reg.pos(ids)
        columns = self.columns()
        cols = list(columns)
        lists = [columns[c][pos].tolist() for c in cols]
        with bulk_objects():
            if len(cols) == 1:  # the usual batch_map over one argument: 1.5x faster than the general form
                (c,) = cols
                return [{"job_id": i, "pars": {c: v}} for i, v in zip(ids.tolist(), lists[0])]
            if not cols:
                return [{"job_id": i, "pars": {}} for i in ids.tolist()]
            return [{"job_id": i, "pars": dict(zip(cols, row))} for i, row in zip(ids.tolist(), zip(*lists))]


# the words of ML benchmarks (batchmark) for the experiment columns: results say task and learner
BENCHMARK_WORDS = {"task": "problem", "learner": "algorithm"}


class ExperimentDefinitions(Definitions):
    kind = "experiment"
    title = "Experiment Registry"
    status_columns = ("repl",)

    @property
    def benchmark(self) -> bool:
        """Did ``batchmark`` add jobs to this registry? Then ``task``/``learner`` name ``problem``/``algorithm``."""
        return bool(self.reg.extra.get("benchmark"))

    def column(self, name: str, columns=()) -> str:
        if name in columns or not self.benchmark:
            return name
        return BENCHMARK_WORDS.get(name, name)

    def empty_tables(self) -> dict[str, pd.DataFrame]:
        empty = np.empty(0, dtype=np.int64)
        defs = pd.DataFrame({"def_id": empty, "problem": np.empty(0, object), "algorithm": np.empty(0, object),
                             "prob_row": empty, "algo_row": empty})
        designs = pd.DataFrame({"row_id": empty, "kind": np.empty(0, object), "name": np.empty(0, object),
                                "pars": np.empty(0, object), "hash": np.empty(0, object)})
        return {"designs": designs, "defs": defs, **_common_tables(new_status(empty, empty, empty))}

    def initial_extra(self) -> dict[str, Any]:
        return {"problems": [], "algorithms": []}

    def counts(self) -> dict[str, int]:
        return {name: len(self.reg.extra.get(name, [])) for name in ("problems", "algorithms")}

    def design_frame(self, side: str) -> pd.DataFrame:
        """Unwrapped unique design rows of one side (:attr:`Side.code`, "prob"/"algo"): ``row_id`` + one
        column per parameter."""
        des = self.reg.tables["designs"]
        mine = des[des["kind"] == side]
        wide = pd.DataFrame.from_records(mine["pars"].tolist(), index=mine.index) if len(mine) else pd.DataFrame()
        wide.insert(0, "row_id", mine["row_id"].to_numpy())
        return wide.reset_index(drop=True)

    def job_frame(self, ids: np.ndarray) -> pd.DataFrame:
        """``job_id``, ``problem``, ``algorithm``, ``prob_row``, ``algo_row`` and ``repl`` of ``ids``."""
        reg = self.reg
        st = reg.status
        pos = reg.pos(ids)
        defs = reg.defs
        dpos = np.searchsorted(defs["def_id"].to_numpy(), st["def_id"].to_numpy()[pos])
        out = {"job_id": ids}
        for c in ("problem", "algorithm", "prob_row", "algo_row"):
            out[c] = defs[c].to_numpy()[dpos]
        out["repl"] = st["repl"].to_numpy()[pos]
        return pd.DataFrame(out)

    def pars_frame(self, ids: np.ndarray) -> pd.DataFrame:
        """``job_id``, ``problem``, ``algorithm``, ``repl`` and one column per parameter (in an ML
        benchmark registry also ``task`` and ``learner``, the same as ``problem`` and ``algorithm``)."""
        jobs = self.job_frame(ids)
        out = jobs[["job_id", "problem", "algorithm", "repl"]].copy()
        for side, col in (("prob", "prob_row"), ("algo", "algo_row")):
            wide = self.design_frame(side)
            pos = np.searchsorted(wide["row_id"].to_numpy(), jobs[col].to_numpy())
            for c in wide.columns[1:]:
                name = c if c not in out.columns else f"{side}.{c}"
                out[name] = wide[c].to_numpy()[pos] if len(wide) else []
        if self.benchmark:
            for word, col in BENCHMARK_WORDS.items():
                if word not in out.columns:
                    out[word] = out[col]
        return out

    def _pars_of(self, rows: np.ndarray) -> list[dict]:
        des = self.reg.tables["designs"]
        lookup = dict(zip(des["row_id"].tolist(), des["pars"].tolist()))
        return [dict(lookup[r]) for r in rows.tolist()]

    def job_pars(self, ids: np.ndarray) -> pd.DataFrame:
        jobs = self.job_frame(ids)
        return pd.DataFrame({
            "job_id": ids, "problem": jobs["problem"].to_numpy(),
            "prob_pars": self._pars_of(jobs["prob_row"].to_numpy()),
            "algorithm": jobs["algorithm"].to_numpy(), "algo_pars": self._pars_of(jobs["algo_row"].to_numpy()),
            "repl": jobs["repl"].to_numpy(),
        })

    def specs(self, ids: np.ndarray) -> list[dict[str, Any]]:
        p = self.job_pars(ids)
        return [{"job_id": j, "problem": pr, "algorithm": al, "prob_pars": pp, "algo_pars": ap, "repl": r}
                for j, pr, pp, al, ap, r in zip(p["job_id"].tolist(), p["problem"].tolist(),
                                                p["prob_pars"].tolist(), p["algorithm"].tolist(),
                                                p["algo_pars"].tolist(), p["repl"].tolist())]

    def matching_rows(self, side: str, expr, arg: str, scope: tuple[dict, dict] | None = None) -> np.ndarray:
        """Row ids of unique design rows of ``side`` ("prob"/"algo") matching ``expr``."""
        wide = self.design_frame(side)
        if not len(wide):
            return np.empty(0, np.int64)
        return wide["row_id"].to_numpy()[filter_pars(wide, expr, arg, scope)]


KINDS: dict[str, type[Definitions]] = {"map": MapDefinitions, "experiment": ExperimentDefinitions}


def definitions_for(reg) -> Definitions:
    """The definitions object of ``reg``'s kind (what a job computes, per kind, on the master)."""
    return KINDS[reg.kind](reg)
