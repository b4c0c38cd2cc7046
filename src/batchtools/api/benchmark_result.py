"""The result of an ML benchmark (:func:`batchtools.reduce_results_batchmark`): a tidy score table,
its aggregate per task x learner, predictions and models when stored, and a figure."""

from __future__ import annotations

import shutil
import sys
from typing import Any

import numpy as np
import pandas as pd

from ..core.checks import check_flag
from .benchmark_plots import KINDS, box_figure, cd_figure, scores_figure

KEYS = ["task", "learner", "resampling", "fold"]
TIMES = ["fit_time", "score_time"]


class BenchmarkResult:
    """Scores of the jobs of an ML benchmark, one row per job (task x learner x resampling x fold).

    Attributes: ``scores`` (DataFrame: ``task``, ``learner``, ``resampling``, ``fold``, the
    splitter's fold descriptions, one column per scorer, ``fit_time``, ``score_time`` (seconds),
    ``n_train``, ``n_test``, ``job_id`` and ``params``, the fitted learner's parameters as a dict),
    ``scorers`` (the score column names). Methods: :meth:`aggregate`, :meth:`plot`;
    :attr:`predictions` and :attr:`models` when ``batchmark`` stored them.
    """

    def __init__(self, scores: pd.DataFrame, scorers: list[str], info: list[str],
                 predictions: dict[int, dict] | None = None, models: dict[int, Any] | None = None):
        self.scores = scores
        self.scorers = scorers
        self.info = info
        self._predictions = predictions or {}
        self._models = models or {}

    def __repr__(self) -> str:
        s = self.scores
        return (f"BenchmarkResult: {len(s)} jobs, {s['task'].nunique()} tasks x {s['learner'].nunique()} learners "
                f"x {s['resampling'].nunique()} resamplings; scores {self.scorers}")

    def __len__(self) -> int:
        return len(self.scores)

    def aggregate(self, by=None, times: bool = False) -> pd.DataFrame:
        """Mean and standard deviation of every score per task x learner x resampling, or per the
        columns ``by`` (e.g. ``["task", "learner", "test_subset"]``): the keys, then
        ``<scorer>_mean`` and ``<scorer>_sd`` for every scorer, then ``n`` (the number of folds);
        ``times=True`` adds ``fit_time`` and ``score_time`` (mean and sd, seconds) after them.

        Printed, the table shows every column, wrapped to the terminal's width (80 columns in a
        log), rather than eliding the middle ones as pandas does; the table is a DataFrame.

        >>> import pandas as pd
        >>> s = pd.DataFrame({"task": "t", "learner": ["a", "a", "b", "b"], "resampling": "cv2",
        ...                   "fold": [1, 2, 1, 2], "acc": [0.5, 0.7, 0.9, 0.9], "fit_time": 0.1,
        ...                   "score_time": 0.0, "job_id": [1, 2, 3, 4]})
        >>> print(BenchmarkResult(s, ["acc"], []).aggregate())
          task learner resampling  acc_mean    acc_sd  n
        0    t       a        cv2       0.6  0.141421  2
        1    t       b        cv2       0.9  0.000000  2
        """
        check_flag("times", times)
        by = ["task", "learner", "resampling"] if by is None else ([by] if isinstance(by, str) else list(by))
        unknown = [c for c in by if c not in self.scores.columns]
        if unknown:
            raise ValueError(f"by: no column(s) {unknown}; choose among {list(self.scores.columns)}")
        scores = [c for c in self.scorers if c in self.scores.columns]
        timing = [c for c in TIMES if c in self.scores.columns] if times else []
        columns = by + [f"{v}_{s}" for v in scores for s in ("mean", "sd")] + ["n"] + \
            [f"{v}_{s}" for v in timing for s in ("mean", "sd")]
        if not len(self.scores):
            return ScoreTable(columns=columns)
        grouped = self.scores.groupby(by, sort=False, dropna=False)
        out = grouped[scores + timing].agg(["mean", "std"])
        out.columns = [f"{v}_{'sd' if s == 'std' else s}" for v, s in out.columns]
        out["n"] = grouped.size()
        return ScoreTable(out.reset_index()[columns])

    @property
    def predictions(self) -> pd.DataFrame:
        """One row per test row of every job: keys, ``job_id``, ``row_id`` (position in the task's
        data), ``truth`` and ``response``; needs ``batchmark(..., store_predictions=True)``."""
        if not self._predictions:
            raise ValueError("predictions: none were stored; run the benchmark with "
                             "batchmark(..., store_predictions=True)")
        keys = self.scores.set_index("job_id")[KEYS]
        frames = []
        for job_id, p in self._predictions.items():
            n = len(p["row_ids"])
            part = pd.DataFrame({**{k: np.repeat(keys.at[job_id, k], n) for k in KEYS},
                                 "job_id": job_id, "row_id": p["row_ids"], "truth": p["truth"],
                                 "response": p["response"]})
            frames.append(part)
        return pd.concat(frames, ignore_index=True)

    @property
    def models(self) -> pd.DataFrame:
        """Keys, ``job_id`` and the fitted ``model`` of every job; needs ``store_models=True``."""
        if not self._models:
            raise ValueError("models: none were stored; run the benchmark with batchmark(..., store_models=True)")
        out = self.scores.loc[self.scores["job_id"].isin(list(self._models)), KEYS + ["job_id"]].copy()
        out["model"] = pd.Series([self._models[j] for j in out["job_id"]], index=out.index, dtype=object)
        return out.reset_index(drop=True)

    def plot(self, score: str | None = None, by: str | None = None, kind: str = "scores",
             greater_is_better: bool = True, alpha: float = 0.05):
        """A matplotlib Figure comparing the learners (save it with ``fig.savefig("scores.pdf")``).

        ``kind``:

        - ``"scores"`` (default): one panel per task, one row per learner (per learner and value of
          the column ``by``, e.g. ``"train_subsets"``), every fold as a dot, mean +- sd as a bar;
        - ``"box"``: the same panels with a box plot of the folds' scores per learner;
        - ``"cd"``: the critical-difference diagram of the learners across tasks (Demšar 2006, as
          mlr3benchmark's ``autoplot(type = "cd")``): each task ranks the learners by their mean
          score (1 = best), the axis shows the mean ranks, the title the Friedman test, and thick
          bars join learners whose mean ranks differ by less than the Nemenyi critical difference
          at level ``alpha`` (drawn above the axis), which the data cannot tell apart. It needs 3 or
          more learners and 2 or more tasks scored by every learner (SciPy computes the tests);
          ``greater_is_better=False`` for a score where lower is better (scikit-learn's scorers are
          all greater-is-better: losses are negated, ``neg_log_loss``).

        ``score``: which scorer (default: the first).
        """
        if kind not in KINDS:
            raise ValueError(f"kind: one of {KINDS}, got {kind!r}")
        check_flag("greater_is_better", greater_is_better)
        score = (self.scorers[0] if self.scorers else None) if score is None else score
        if score not in self.scorers:
            raise ValueError(f"score: {score!r} is not a scorer of this benchmark; choose among {self.scorers}")
        if kind == "cd":
            if by is not None:
                raise ValueError("by: the critical-difference diagram ranks learners per task; filter res.scores "
                                 "instead (BenchmarkResult(res.scores[...], res.scorers, res.info))")
            return cd_figure(self.scores, score, greater_is_better, alpha)
        return (box_figure if kind == "box" else scores_figure)(self.scores, score, by)


class ScoreTable(pd.DataFrame):
    """A DataFrame that prints every column, wrapped to the width of the terminal (or of
    ``pandas.options.display.width``, 80, when the output is not a terminal, as in a log), so the
    scores of a wide aggregate are never elided. What is made from it is a plain DataFrame."""

    def __repr__(self) -> str:
        width = pd.get_option("display.width") or 80
        isatty = getattr(sys.stdout, "isatty", None)
        if isatty is not None and isatty():
            width = shutil.get_terminal_size((width, 24)).columns
        return self.to_string(line_width=width, max_rows=pd.get_option("display.max_rows"),
                              min_rows=pd.get_option("display.min_rows"), show_dimensions="truncate")
