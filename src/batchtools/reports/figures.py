"""The report's figures, drawn with matplotlib and inlined as ``data:`` URIs (SVG, or PNG where the
figure is mostly raster: the timeline of thousands of jobs), so the page needs no other file."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd

MAX_POINTS = 1500  # points of a curve: more jobs are sampled at evenly spaced times
RASTER_JOBS = 2000  # plot_timeline rasterizes its bars above this many jobs: the figure is a PNG then


def data_uri(fig, fmt: str = "svg", dpi: int = 100) -> str:
    """``fig`` as a ``data:`` URI (SVG with text as text, or PNG), small and without timestamps."""
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "batchtools-report"}):
        meta = {"Date": None} if fmt == "svg" else {"Software": None}
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=meta)
    mime = "image/svg+xml" if fmt == "svg" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def finished_curve(facts: pd.DataFrame):
    """The cumulative number of finished jobs (done; failed) over time from the first
    submission, with the number submitted as a line; None while no job finished."""
    from matplotlib.figure import Figure

    sub = facts["submitted"].to_numpy()
    done = facts["done"].to_numpy()
    ended = facts["ended"].to_numpy()
    if not ended.any():
        return None
    t0 = float(np.nanmin(sub)) if (~np.isnan(sub)).any() else float(np.nanmin(done[ended]))
    ok = facts["state"].to_numpy() == "done"
    times = {"done": np.sort(done[ended & ok] - t0), "failed": np.sort(done[ended & ~ok] - t0)}
    span = max(float(np.nanmax(done[ended])) - t0, 1e-3)
    scale, unit = (1.0, "seconds") if span <= 600 else (60.0, "minutes") if span <= 36000 else (3600.0, "hours")
    events = np.concatenate([times["done"], times["failed"]])
    # the curve changes only when a job ends: those times (sampled evenly when there are many)
    grid = np.unique(np.concatenate([[0.0], events, [span]])) if events.size < MAX_POINTS else \
        np.linspace(0, span, MAX_POINTS)
    fig = Figure(figsize=(7.5, 2.6), layout="constrained")
    ax = fig.add_subplot()
    finished = np.zeros(grid.size)
    n_sub = int((~np.isnan(sub)).sum())
    for label, color in (("done", "#4c9a2a"), ("failed", "#c0392b")):
        t = times[label]
        if not t.size:
            continue
        counts = np.searchsorted(t, grid, side="right")
        ax.fill_between(grid / scale, finished, finished + counts, step="post", color=color, alpha=0.8,
                        linewidth=0, label=f"{label} ({t.size:,})")
        finished = finished + counts
    ax.axhline(n_sub, color="0.3", linestyle="--", linewidth=1, label=f"submitted ({n_sub:,})")
    ax.set_xlim(0, span / scale)
    ax.set_ylim(0, max(n_sub, 1) * 1.05)
    ax.set_xlabel(f"{unit} from the first submission")
    ax.set_ylabel("jobs finished")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    return fig


def timeline(reg, sel: np.ndarray, color_by: str | None):
    """:func:`batchtools.plot_timeline` of the jobs that started (None if none did), and its format."""
    from ..plot import plot_timeline

    n_started = int((~np.isnan(reg.status["started"].to_numpy()[reg.pos(sel)])).sum())
    if not n_started:
        return None, None
    fig = plot_timeline(sel, color_by=color_by, reg=reg)
    return fig, ("png" if n_started > RASTER_JOBS else "svg")


def critical_difference(res):
    """(the critical-difference diagram of a benchmark's first scorer, None) where it applies: 3 or
    more learners and 2 or more tasks; (None, why not) when the scores cannot give one (no two tasks
    scored by every learner); (None, None) for fewer learners or tasks, where it is no question."""
    s = res.scores
    if not len(s) or s["learner"].nunique() < 3 or s["task"].nunique() < 2:
        return None, None
    try:
        return res.plot(kind="cd"), None
    except (ValueError, ImportError) as e:  # e.g. a learner without scores on some task
        return None, f"No critical-difference diagram: {e}"
