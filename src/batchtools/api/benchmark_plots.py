"""The figures of an ML benchmark (:meth:`BenchmarkResult.plot`): every fold's score per learner
and task (``"scores"``), box plots of them (``"box"``), and the critical-difference diagram that
compares learners across tasks (``"cd"``: Friedman test and Nemenyi post-hoc test, as in
Demšar 2006 and mlr3benchmark's ``autoplot(type = "cd")``), the statistics from SciPy."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

log = logging.getLogger("batchtools")
KINDS = ("scores", "box", "cd")


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - matplotlib is the 'plot' extra
        raise ImportError("BenchmarkResult.plot needs matplotlib: pip install '.[plot]' (or matplotlib)") from e
    return Figure


def _rows(s: pd.DataFrame, by: str | None) -> pd.DataFrame:
    if by is not None and by not in s.columns:
        raise ValueError(f"by: no column {by!r}; choose among {list(s.columns)}")
    row = s["learner"] if by is None else s["learner"].astype(str) + " | " + s[by].astype(str)
    return s.assign(_row=row.to_numpy())


def _task_figure(s: pd.DataFrame, score: str, by: str | None, per_row: float, sharex: bool, draw, xlabel: str):
    """One panel per task, one row per learner (and value of ``by``); ``draw(ax, {row: scores})``
    draws a panel's rows that have scores."""
    Figure = _figure_class()
    s = _rows(s, by)
    tasks = list(dict.fromkeys(s["task"]))
    learners = list(dict.fromkeys(s["_row"]))
    fig = Figure(figsize=(7, 0.6 + (per_row * len(learners) + 0.5) * max(len(tasks), 1)))
    axes = fig.subplots(max(len(tasks), 1), 1, squeeze=False, sharex=sharex)[:, 0]
    for ax, task in zip(axes, tasks):
        sub = s[s["task"] == task]
        values = {y: sub.loc[sub["_row"] == learner, score].dropna().to_numpy() for y, learner in enumerate(learners)}
        draw(ax, {y: v for y, v in values.items() if v.size})
        ax.set_yticks(range(len(learners)))
        ax.set_yticklabels(learners)
        ax.set_ylim(-0.6, len(learners) - 0.4)
        ax.invert_yaxis()
        ax.set_title(f"task {task}", fontsize=10, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel(xlabel)
    if not tasks:
        axes[0].set_title("no scores yet")
    fig.tight_layout()
    return fig


def scores_figure(s: pd.DataFrame, score: str, by: str | None):
    """One panel per task, one row per learner: every fold as a dot, mean +- sd as a bar."""
    def draw(ax, values: dict[int, np.ndarray]) -> None:
        for y, vals in values.items():
            ax.plot(vals, np.full(vals.size, y), "o", color="0.6", markersize=4, alpha=0.7)
            mean, sd = vals.mean(), vals.std(ddof=1) if vals.size > 1 else 0.0
            ax.errorbar([mean], [y], xerr=[sd], fmt="D", color="black", capsize=3, markersize=5)

    return _task_figure(s, score, by, 0.35, True, draw, f"{score} (dots: folds; diamond and bar: mean +- sd)")


def box_figure(s: pd.DataFrame, score: str, by: str | None):
    """One panel per task (each on its own scale), one box per learner (median, quartiles, 1.5 IQR
    whiskers) over its folds, the folds as dots."""
    def draw(ax, values: dict[int, np.ndarray]) -> None:
        if not values:
            return
        style = {"positions": list(values), "widths": 0.6, "patch_artist": True, "manage_ticks": False,
                 "boxprops": {"facecolor": "#dbe8f5", "edgecolor": "black"},
                 "medianprops": {"color": "black", "linewidth": 1.5}, "flierprops": {"markersize": 3}}
        try:
            ax.boxplot(list(values.values()), orientation="horizontal", **style)
        except TypeError:  # matplotlib < 3.10
            ax.boxplot(list(values.values()), vert=False, **style)
        for y, vals in values.items():
            ax.plot(vals, np.full(vals.size, y), "o", color="0.35", markersize=3, alpha=0.6)

    return _task_figure(s, score, by, 0.45, False, draw,
                        f"{score} per fold (box: median and quartiles; dots: folds; each task its own scale)")


@dataclass
class CriticalDifference:
    """What a critical-difference diagram shows: the learners' mean ranks over ``n_blocks`` tasks
    (rank 1 = best on a task), the Friedman test, and the Nemenyi critical difference ``cd``:
    learners whose mean ranks differ by less than it are not told apart (``groups``)."""

    mean_ranks: pd.Series  # learner -> mean rank, best first
    n_blocks: int
    statistic: float  # Friedman's chi-squared
    p_value: float
    cd: float
    alpha: float
    groups: list[list[str]]  # runs of learners, by mean rank, within cd of each other
    left_out: list[str]  # tasks without a score of every learner


def critical_difference(s: pd.DataFrame, score: str, greater_is_better: bool = True,
                        alpha: float = 0.05) -> CriticalDifference:
    """Mean ranks, Friedman test and Nemenyi critical difference of the learners over the tasks.

    Each task (each task x resampling, with several resamplings) is one block: the learners are
    ranked by their mean score over its folds (ties share the mean rank). Blocks where a learner
    has no score are left out (``left_out``). ``CD = q_alpha * sqrt(k (k + 1) / (6 N))`` with
    ``q_alpha`` the studentized range quantile for ``k`` learners over ``sqrt(2)`` (Demšar 2006).
    """
    try:
        from scipy import stats
    except ImportError as e:  # pragma: no cover - SciPy comes with scikit-learn (the 'ml' extra)
        raise ImportError("the critical-difference diagram needs SciPy: pip install scipy") from e
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 < alpha < 1:
        raise ValueError(f"alpha: the significance level, a number between 0 and 1 (e.g. 0.05), got {alpha!r}")
    blocks = ["task", "resampling"] if s["resampling"].nunique() > 1 else ["task"]
    means = s.groupby(blocks + ["learner"], sort=False)[score].mean().unstack("learner")
    learners = list(dict.fromkeys(s["learner"]))
    means = means.reindex(columns=learners)
    incomplete = means.isna().any(axis=1)
    left_out = [" / ".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in means.index[incomplete]]
    means = means[~incomplete]
    k, n = len(learners), len(means)
    if k < 3:
        raise ValueError(f"kind='cd': the critical-difference diagram compares 3 or more learners (Friedman test); "
                         f"this benchmark has {k}. Compare two learners with kind='box' or a paired test "
                         "(scipy.stats.wilcoxon)")
    if n < 2:
        why = f" ({len(left_out)} left out: some learner has no score there)" if left_out else ""
        raise ValueError(f"kind='cd': the critical-difference diagram needs scores of every learner on 2 or more "
                         f"tasks; {n} task(s) have them{why}")
    if left_out:
        log.warning("critical-difference diagram: task(s) %s left out, not every learner has a score there", left_out)
    values = means.to_numpy(dtype=float)
    ranks = stats.rankdata(-values if greater_is_better else values, axis=1)
    mean_ranks = pd.Series(ranks.mean(axis=0), index=learners).sort_values(kind="stable")
    with np.errstate(all="ignore"):
        test = stats.friedmanchisquare(*values.T)
    q = stats.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2)
    cd = float(q * np.sqrt(k * (k + 1) / (6 * n)))
    r = mean_ranks.to_numpy()
    groups: list[list[str]] = []
    last = -1
    for i in range(k):
        j = int(np.searchsorted(r, r[i] + cd, side="left")) - 1  # the last within cd (strictly less)
        if j > i and j > last:
            groups.append(mean_ranks.index[i:j + 1].tolist())
            last = j
    return CriticalDifference(mean_ranks, n, float(test.statistic), float(test.pvalue), cd, float(alpha), groups,
                              left_out)


def cd_figure(s: pd.DataFrame, score: str, greater_is_better: bool = True, alpha: float = 0.05):
    """The critical-difference diagram: an axis of mean ranks (1 = best, on the left), each learner
    at its mean rank with its name on the left (the better half) or right, thick bars joining
    learners within the critical difference, and the CD itself drawn above the axis."""
    Figure = _figure_class()
    res = critical_difference(s, score, greater_is_better, alpha)
    r, names = res.mean_ranks.to_numpy(), res.mean_ranks.index.tolist()
    k = len(r)
    left = (k + 1) // 2  # the better half is labelled on the left
    n_lines = max(left, k - left)
    fig = Figure(figsize=(7, 1.6 + 0.32 * n_lines + 0.12 * len(res.groups)))
    ax = fig.subplots()
    lo, hi = 1.0, float(k)
    ax.plot([lo, hi], [0, 0], color="black", linewidth=1)
    for x in range(1, k + 1):
        ax.plot([x, x], [0, 0.12], color="black", linewidth=1)
        ax.text(x, 0.2, str(x), ha="center", va="bottom", fontsize=9)
    # the critical difference, above the axis from rank 1
    top = 0.75
    ax.plot([lo, lo + res.cd], [top, top], color="black", linewidth=1.5)
    for x in (lo, lo + res.cd):
        ax.plot([x, x], [top - 0.07, top + 0.07], color="black", linewidth=1.5)
    ax.text(lo + res.cd / 2, top + 0.1, f"CD = {res.cd:.2f}", ha="center", va="bottom", fontsize=9)
    # the groups that cannot be told apart, as bars just under the axis
    step = 0.14
    for g, members in enumerate(res.groups):
        a, b = res.mean_ranks[members[0]], res.mean_ranks[members[-1]]
        y = -0.18 - g * step
        ax.plot([a - 0.03, b + 0.03], [y, y], color="black", linewidth=3.5, solid_capstyle="round")
    first = -0.3 - len(res.groups) * step
    for i, (x, name) in enumerate(zip(r, names)):
        if i < left:
            y, end, ha = first - 0.32 * i, lo - 0.4, "right"
        else:
            y, end, ha = first - 0.32 * (k - 1 - i), hi + 0.4, "left"
        ax.plot([x, x, end], [0, y, y], color="0.25", linewidth=1)
        ax.text(end + (-0.05 if ha == "right" else 0.05), y, f"{name} ({x:.2f})", ha=ha, va="center", fontsize=9)
    ax.set_xlim(lo - 0.4 - 0.3 * k / 3, hi + 0.4 + 0.3 * k / 3)
    ax.set_ylim(first - 0.32 * (n_lines - 1) - 0.25, top + 0.45)
    ax.axis("off")
    verdict = "" if res.p_value < alpha else f", not significant at \u03b1 = {alpha:g}"
    p = "n/a (every learner ranks the same on every task)" if np.isnan(res.p_value) else f"{res.p_value:.3g}"
    ax.set_title(f"{score}: mean rank over {res.n_blocks} tasks (1 = best)\n"
                 f"Friedman \u03c7\u00b2 = {res.statistic:.2f}, p = {p}{verdict}; "
                 f"bars: within the Nemenyi critical difference (\u03b1 = {alpha:g})", fontsize=9, loc="left")
    fig.tight_layout()
    return fig
