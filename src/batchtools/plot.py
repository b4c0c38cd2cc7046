"""Figures: the timeline of a computation (which slot or worker ran which job when)."""

from __future__ import annotations

import heapq
import time

import numpy as np
import pandas as pd

from .api.joins import unwrap
from .api.table import get_job_pars, get_job_table
from .core.pool import pool_state
from .core.registry import RegistryState, resolve
from .core.state import masks

STATE_COLORS = {"done": "#4c9a2a", "error": "#c0392b", "running": "#e0a526", "expired": "#8c8c8c"}
STATE_HATCH = {"done": None, "error": "////", "running": "....", "expired": "xxxx"}
ROW_MODES = ("auto", "slot", "worker", "batch")
MAX_CATEGORIES = 20  # more distinct values: the most frequent ones plus "other"


def plot_timeline(ids=None, color_by: str | None = None, rows: str = "auto", ax=None,
                  reg: RegistryState | None = None):
    """The timeline of the jobs ``ids`` (default: all that started) as a matplotlib Figure:
    one bar per job from its start to its end, over time from the first start.

    Rows (``rows``):

    - ``"slot"``: the scheduler jobs (a chunk, an array task, a Multicore process) are packed
      onto as few rows as never overlap, so the rows are the computation's concurrent slots:
      1,000 jobs in 20 chunks on 2 CPUs make 2 rows, not 20.
    - ``"worker"``: one row per pool worker (:func:`submit_workers`); jobs not run by a
      worker are packed onto slots below.
    - ``"batch"``: one row per scheduler job (batch id), as in earlier versions.
    - ``"auto"`` (default): ``"worker"`` if pool workers ran jobs, else ``"slot"``.

    Colours: by state (done, error, running, expired; see the legend), or with ``color_by`` by
    a job parameter or experiment column such as ``"algorithm"`` (``"learner"`` or ``"task"`` in
    an ML benchmark; any column of ``bt.unwrap(bt.get_job_pars())``, or of
    :func:`get_job_table`, e.g. ``"tags"``); failed,
    running and expired jobs are then hatched. Numeric columns with many values get a colour
    scale. Bars are at least a pixel wide and drawn as one collection per state (rasterized
    above 2,000 jobs), so 10,000 jobs draw in well under a second and stay readable.

    ``ax``: draw into this matplotlib Axes instead of a new figure. Save the figure with
    ``fig.savefig("timeline.png")``; from the shell: ``batchtools timeline REGISTRY -o
    timeline.png``.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: x, x=[1, 2]); _ = bt.submit_jobs()
    >>> fig = bt.plot_timeline()
    >>> fig.axes[0].get_xlabel()
    'seconds from the first start'
    >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]  # Interactive: one job at a time
    ['slot 1']
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - matplotlib is the 'plot' extra
        raise ImportError("plot_timeline needs matplotlib: pip install 'pybatchtools[plot]'") from e
    reg = resolve(reg)
    if rows not in ROW_MODES:
        raise ValueError(f"rows: one of {ROW_MODES}, got {rows!r}")
    if color_by is not None and not isinstance(color_by, str):
        raise TypeError(f"color_by: the name of a job parameter or job table column, got {type(color_by).__name__}")
    reg.sync()
    st = reg.status
    sel = reg.ids(ids)
    pos = reg.pos(sel)
    started = st["started"].to_numpy()[pos]
    keep = ~np.isnan(started) & st["batch_id"].notna().to_numpy()[pos]
    values = _color_values(reg, sel, color_by)  # checked before drawing anything
    pos, started = pos[keep], started[keep]
    done = st["done"].to_numpy()[pos]
    batch = st["batch_id"].to_numpy()[pos].astype(str)
    job_hash = st["job_hash"].to_numpy()[pos].astype(str)
    state = np.where(st["error"].notna().to_numpy()[pos], "error", "done").astype(object)
    unfinished = np.isnan(done)
    if unfinished.any():
        m = masks(reg, pos)
        state[unfinished] = np.where(m["expired"][unfinished], "expired", "running")
    now = time.time()
    end = np.where(unfinished, now, done)

    if started.size == 0:
        fig, ax = _figure(Figure, ax, 1)
        ax.set_title("no job has started yet")
        ax.set_xlabel("seconds from the first start")
        ax.set_yticks([])
        return fig

    t0 = float(started.min())
    span = max(float(end.max()) - t0, 1e-3)
    scale, unit = (1.0, "seconds") if span <= 600 else (60.0, "minutes") if span <= 36000 else (3600.0, "hours")
    row, labels, kind = _rows(reg, batch, job_hash, started, end, rows)
    n_rows = len(labels)
    fig, ax = _figure(Figure, ax, n_rows)

    # one rectangle per job, at least ~1/1500 of the width so that short jobs stay visible
    # (failed, running and expired ones ~1/400, and drawn on top, so that they stand out)
    x0 = (started - t0) / scale
    w = np.maximum((end - started) / scale, np.where(state == "done", span / 1500, span / 400) / scale)
    height = 0.8 if n_rows < 200 else 1.0
    verts = np.empty((x0.size, 4, 2))
    verts[:, :, 0] = np.stack([x0, x0, x0 + w, x0 + w], axis=1)
    y0 = row - height / 2
    verts[:, :, 1] = np.stack([y0, y0 + height, y0 + height, y0], axis=1)
    colors, handles = _colors(state, values[keep] if values is not None else None, color_by, fig, ax)
    title = color_by if handles else None  # a colour scale has its own label
    # white gaps between jobs only while the median job is wider than ~4 pixels
    wide = float(np.median(w)) / (span / scale * 1.01) * fig.get_figwidth() * 0.8 * fig.dpi > 4
    _draw(ax, verts, colors, state, color_by is not None, wide)
    handles += _state_handles(state, color_by is not None)

    ax.set_xlim(0, span / scale * 1.01)
    ax.set_ylim(n_rows - 0.5, -0.5)
    step = max(1, int(np.ceil(n_rows / 40)))
    ax.set_yticks(range(0, n_rows, step))
    ax.set_yticklabels(labels[::step], fontsize=8)
    ax.set_xlabel(f"{unit} from the first start")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title(f"{started.size:,} jobs on {n_rows} {kind}{'s' if n_rows != 1 else ''}, "
                 f"{_duration(span)} from the first start to the last end", fontsize=10)
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
                  title=title, title_fontsize=8)
    return fig


def _figure(Figure, ax, n_rows: int):
    """(figure, axes): ``ax``'s, or a new figure whose height grows with the rows (capped)."""
    if ax is not None:
        return ax.figure, ax
    height = min(1.6 + 0.28 * min(n_rows, 40) + 0.05 * max(0, n_rows - 40), 14.0)
    fig = Figure(figsize=(10, height), layout="constrained")
    return fig, fig.add_subplot()


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _rows(reg: RegistryState, batch: np.ndarray, job_hash: np.ndarray, started: np.ndarray, end: np.ndarray,
          mode: str) -> tuple[np.ndarray, list[str], str]:
    """(row of each job, row labels, what a row is)."""
    workers = _worker_labels(reg)
    is_worker = np.isin(batch, list(workers)) if workers else np.zeros(batch.size, bool)
    if mode == "auto":
        mode = "worker" if is_worker.any() else "slot"
    if mode != "worker":
        is_worker[:] = False
    row = np.zeros(batch.size, np.int64)
    labels: list[str] = []
    if is_worker.any():  # one row per worker, in the order they started
        first = pd.Series(started[is_worker]).groupby(batch[is_worker]).min().sort_values()
        index = {b: k for k, b in enumerate(first.index)}
        row[is_worker] = [index[b] for b in batch[is_worker]]
        labels = [workers[b] for b in first.index]
    rest = ~is_worker
    if rest.any():
        # a lane is one scheduler job running one collection (job hash) in order: a chunk, an array task
        codes, uniques = pd.factorize(pd.MultiIndex.from_arrays([job_hash[rest], batch[rest]]))
        lane_start = pd.Series(started[rest]).groupby(codes).min().to_numpy()
        lane_end = pd.Series(end[rest]).groupby(codes).max().to_numpy()
        if mode == "batch":
            order = np.argsort(lane_start, kind="stable")
            lane_row = np.empty(len(uniques), np.int64)
            lane_row[order] = np.arange(len(uniques))
            names = [str(uniques[k][1]) for k in order]
        else:
            lane_row = _pack(lane_start, lane_end)
            names = [f"slot {k + 1}" for k in range(int(lane_row.max()) + 1)]
        row[rest] = len(labels) + lane_row[codes]
        labels += names
    kind = "worker" if mode == "worker" and not rest.any() else {"batch": "batch job", "worker": "row"}.get(mode, "slot")
    return row, labels, kind


def _pack(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Interval partitioning: the lowest free row for each interval, in order of start (as few
    rows as the largest number of intervals overlapping at one time)."""
    row = np.empty(start.size, np.int64)
    free: list[int] = []  # rows free again, lowest first
    busy: list[tuple[float, int]] = []  # (end, row) of rows in use
    n = 0
    for k in np.argsort(start, kind="stable"):
        while busy and busy[0][0] <= start[k]:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            r = heapq.heappop(free)
        else:
            r, n = n, n + 1
        row[k] = r
        heapq.heappush(busy, (end[k], r))
    return row


def _color_values(reg: RegistryState, sel: np.ndarray, color_by: str | None) -> np.ndarray | None:
    if color_by is None:
        return None
    pars = unwrap(get_job_pars(sel, reg=reg))
    column = reg.definitions.column(color_by, pars.columns)  # a benchmark's "learner" is "algorithm"
    if column in pars.columns and column != "job_id":
        return pars[column].to_numpy()
    table = get_job_table(sel, reg=reg)
    if color_by in table.columns and color_by != "job_id":
        return table[color_by].to_numpy()
    names = sorted(set(pars.columns) - {"job_id"}) + [c for c in ("tags", "job_name", "batch_id")]
    if getattr(reg.definitions, "benchmark", False):
        names += ["task", "learner"]
    raise ValueError(f"color_by: {color_by!r} is neither a job parameter nor a job table column; "
                     f"choose one of {names}")


def _colors(state: np.ndarray, values: np.ndarray | None, color_by: str | None, fig, ax) -> tuple[np.ndarray, list]:
    """RGBA per job and the legend entries for the colours."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize, to_rgba
    from matplotlib.patches import Patch

    if values is None:
        colors = np.array([to_rgba(STATE_COLORS[s]) for s in STATE_COLORS])
        index = {s: k for k, s in enumerate(STATE_COLORS)}
        return colors[[index[s] for s in state]], []
    v = pd.Series(values)
    numeric = pd.api.types.is_numeric_dtype(v) and not pd.api.types.is_bool_dtype(v)
    if numeric and v.nunique() > 12:
        cmap = colormaps["viridis"]
        norm = Normalize(float(v.min()), float(v.max()))
        rgba = cmap(norm(v.to_numpy(dtype=float)))
        rgba[v.isna().to_numpy()] = to_rgba("#bbbbbb")
        from matplotlib.cm import ScalarMappable

        fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=color_by, pad=0.01, fraction=0.04)
        return rgba, []
    keys = v.map(lambda x: "NA" if x is None or (isinstance(x, float) and x != x) else str(x))
    counts = keys.value_counts(sort=True)
    if len(counts) > MAX_CATEGORIES:
        top = set(counts.index[: MAX_CATEGORIES - 1])
        keys = keys.where(keys.isin(top), "other")
        counts = keys.value_counts(sort=True)
    cats = sorted(counts.index, key=lambda c: (c in ("NA", "other"), _sort_key(c)))
    palette = colormaps["tab10" if len(cats) <= 10 else "tab20"]
    color_of = {c: to_rgba("#bbbbbb") if c in ("NA", "other") else palette(k) for k, c in enumerate(cats)}
    rgba = np.array([color_of[c] for c in keys])
    handles = [Patch(facecolor=color_of[c], label=f"{c} ({counts[c]})") for c in cats]
    return rgba, handles


def _sort_key(label: str):
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


def _draw(ax, verts: np.ndarray, colors: np.ndarray, state: np.ndarray, by_value: bool, wide: bool) -> None:
    """One PolyCollection per state, done first (with ``color_by``, the other states hatched)."""
    from matplotlib.collections import PolyCollection

    raster = verts.shape[0] > 2000
    for s in ("done", "running", "expired", "error"):
        m = state == s
        if not m.any():
            continue
        hatch = STATE_HATCH[s] if by_value else None
        edge = "white" if wide and not hatch else STATE_COLORS["error"] if hatch == STATE_HATCH["error"] else (
            (0.15, 0.15, 0.15, 0.9) if hatch else "none")
        width = 0.8 if hatch == STATE_HATCH["error"] else 0.3 if wide and not hatch else 0.0  # failed: outlined
        coll = PolyCollection(verts[m], facecolors=colors[m], edgecolors=edge, linewidths=width, hatch=hatch,
                              rasterized=raster)
        ax.add_collection(coll)


def _state_handles(state: np.ndarray, by_value: bool) -> list:
    from matplotlib.patches import Patch

    counts = pd.Series(state).value_counts()
    out = []
    for s in STATE_COLORS:
        if s in counts.index or (s in ("done", "error") and not by_value):
            k = int(counts.get(s, 0))
            if by_value:
                if s == "done":
                    continue
                edge = STATE_COLORS["error"] if s == "error" else (0.15, 0.15, 0.15)
                out.append(Patch(facecolor="white", edgecolor=edge, hatch=STATE_HATCH[s], label=f"{s} ({k})"))
            else:
                out.append(Patch(facecolor=STATE_COLORS[s], label=f"{s} ({k})"))
    return out


def _worker_labels(reg: RegistryState) -> dict[str, str]:
    pool = pool_state(reg)
    if pool is None:
        return {}
    return {str(w["batch_id"]): f"worker {k + 1}" for k, w in enumerate(pool.workers.values())
            if w["batch_id"] is not None}
