"""Figures: the timeline of a computation (which slot or worker ran which job when)."""

from __future__ import annotations

import bisect
import heapq
import time

import numpy as np
import pandas as pd

from .api.joins import unwrap
from .api.table import get_job_pars, get_job_table
from .core.jobstate.state import masks
from .core.registry import RegistryState, resolve
from .core.workerpool.pool import pool_state

STATE_COLORS = {"done": "#4c9a2a", "error": "#c0392b", "running": "#e0a526", "expired": "#8c8c8c"}
STATE_HATCH = {"done": None, "error": "////", "running": "....", "expired": "xxxx"}
STARTUP_COLOR = "#c9c9c9"
DRAW_ORDER = ("done", "running", "expired", "error")  # later ones on top
ROW_MODES = ("auto", "slot", "worker", "batch")
GAP_MODES = ("cut", "keep")
MAX_CATEGORIES = 20  # more distinct values: the most frequent ones plus "other"
GAP_MIN = 5.0  # seconds: an idle gap is cut if longer than this and than GAP_SHARE of the busy time
GAP_SHARE = 0.1
GAP_WIDTH = 0.03  # what a cut gap keeps of the axis (a share of the busy time shown)
MIN_PX = {"done": 1.5, "other": 3.0}  # the narrowest bar, in pixels: every job counted is seen


def plot_timeline(ids=None, color_by: str | None = None, rows: str = "auto", ax=None, gaps: str = "cut",
                  reg: RegistryState | None = None):
    """The timeline of the jobs ``ids`` (default: all that started) as a matplotlib Figure:
    one bar per job from its start to its end, over time from the first start, and before it,
    in grey, the start-up it waited for (its chunk's or pool worker's: the process starting,
    imports, loading its data; see ``time_startup`` of :func:`get_job_status`), where that is
    wide enough to see.

    ``gaps="cut"`` (default): idle stretches in which nothing ran (between two sessions, or
    while the jobs waited in a queue) longer than 5 s and than a tenth of the busy time are cut
    to a narrow grey band labelled with their length, so the jobs of several sessions stay
    readable; the axis labels keep the real time from the first start. ``gaps="keep"`` draws
    the time as it passed.

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
    scale. Every job is drawn at least 1.5 pixels wide (failed, running and expired ones 3, on
    top); the legend counts the bars that show (a job shorter than a pixel next to others may
    be covered by the next one: the title says how many are). Bars are drawn as one collection
    per state (rasterized above 2,000 jobs), so 10,000 jobs draw in well under a second.

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
    if gaps not in GAP_MODES:
        raise ValueError(f"gaps: one of {GAP_MODES}, got {gaps!r}")
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
    startup = st["startup"].to_numpy()[pos]
    startup = np.where(np.isnan(startup) | (startup < 0), 0.0, startup)
    begin = started - startup

    if started.size == 0:
        fig, ax = _figure(Figure, ax, 1)
        ax.set_title("no job has started yet")
        ax.set_xlabel("seconds from the first start")
        ax.set_yticks([])
        return fig

    t0 = float(begin.min())
    real_span = max(float(end.max()) - t0, 1e-3)
    axis = _Axis(begin, end, cut=gaps == "cut")
    span = max(axis.span, 1e-3)
    scale, unit = (1.0, "seconds") if real_span <= 600 else (60.0, "minutes") if real_span <= 36000 else (3600.0, "hours")
    row, labels, kind = _rows(reg, batch, job_hash, begin, end, rows)
    n_rows = len(labels)
    fig, ax = _figure(Figure, ax, n_rows)

    # one rectangle per job, at least MIN_PX pixels wide so that every job counted is seen
    # (failed, running and expired ones wider, and drawn on top, so that they stand out)
    px = span / _axes_pixels(fig, ax)  # seconds of the axis per pixel
    x0 = axis.x(started) / scale
    w = np.maximum((end - started), np.where(state == "done", MIN_PX["done"], MIN_PX["other"]) * px) / scale
    height = 0.8 if n_rows < 200 else 1.0
    y0 = row - height / 2
    verts = _boxes(x0, w, y0, height)
    shown = _visible(x0 * scale / px, (x0 + w) * scale / px, row, state)
    colors, handles = _colors(state, values[keep] if values is not None else None, color_by, fig, ax, shown)
    title = color_by if handles else None  # a colour scale has its own label
    # white gaps between jobs only while the median job is wider than ~4 pixels
    wide = float(np.median(w)) * scale / px > 4
    seen = startup >= px  # start-up bars as wide as a pixel at least: the others would not be seen
    if seen.any():
        _draw_startup(ax, _boxes(axis.x(begin[seen]) / scale, startup[seen] / scale, y0[seen], height),
                      verts.shape[0] > 2000)
    _draw(ax, verts, colors, state, color_by is not None, wide)
    handles += _state_handles(state[shown], color_by is not None)
    if seen.any():
        from matplotlib.patches import Patch

        handles.append(Patch(facecolor=STARTUP_COLOR, label=f"start-up ({int(seen.sum())})"))

    ax.set_xlim(0, span / scale * 1.01)
    ax.set_ylim(n_rows - 0.5, -0.5)
    axis.draw(ax, t0, scale)
    step = max(1, int(np.ceil(n_rows / 40)))
    ax.set_yticks(range(0, n_rows, step))
    ax.set_yticklabels(labels[::step], fontsize=8)
    ax.set_xlabel(f"{unit} from the first start" + (" (idle gaps cut)" if axis.cut else ""))
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    idle = f"; {_duration(axis.idle)} idle cut out" if axis.cut else ""
    hidden = int((~shown).sum())
    hidden = f" ({hidden:,} too short to see)" if hidden else ""
    ax.set_title(f"{started.size:,} jobs on {n_rows} {kind}{'s' if n_rows != 1 else ''}{hidden}, "
                 f"{_duration(real_span)} from the first start to the last end{idle}", fontsize=10)
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
                  title=title, title_fontsize=8)
    return fig


class _Axis:
    """Time on the x axis: the busy stretches one after the other, the idle gaps between them that
    are long (more than GAP_MIN seconds and GAP_SHARE of the busy time) cut to GAP_WIDTH."""

    def __init__(self, begin: np.ndarray, end: np.ndarray, cut: bool):
        order = np.argsort(begin, kind="stable")
        b = begin[order]
        e = np.maximum.accumulate(end[order])
        new = np.r_[True, b[1:] > e[:-1]]  # a busy stretch starts where nothing ran before
        starts = b[new]
        ends = np.r_[e[np.flatnonzero(new)[1:] - 1], e[-1]]
        holes = starts[1:] - ends[:-1]
        busy = float((ends - starts).sum())
        cuts = np.flatnonzero(holes > max(GAP_MIN, GAP_SHARE * busy)) if cut else np.empty(0, np.int64)
        # the stretches kept whole (short holes stay in them) and the holes cut between them
        self.real_start = np.r_[starts[0], starts[cuts + 1]]
        self.real_end = np.r_[ends[cuts], ends[-1]]
        self.holes = holes[cuts]
        length = self.real_end - self.real_start
        self.gap = GAP_WIDTH * max(float(length.sum()), 1e-3)
        self.x_start = np.r_[0.0, np.cumsum(length[:-1] + self.gap)]
        self.span = float(self.x_start[-1] + length[-1])
        self.cut = bool(cuts.size)
        self.idle = float(self.holes.sum())

    def x(self, t: np.ndarray) -> np.ndarray:
        """Axis positions (seconds) of the times ``t`` (within the busy stretches)."""
        k = np.clip(np.searchsorted(self.real_start, t, side="right") - 1, 0, self.real_start.size - 1)
        return self.x_start[k] + (t - self.real_start[k])

    def draw(self, ax, t0: float, scale: float) -> None:
        """Ticks at round times from the first start (in each stretch), and the cut gaps as bands."""
        from matplotlib.ticker import MaxNLocator

        if not self.cut:
            return  # time as it passed: matplotlib's own ticks
        ticks = MaxNLocator(nbins=8, steps=[1, 2, 2.5, 5, 10]).tick_values(0, self.span / scale)
        step = float(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
        pos, text = [], []
        for k in range(self.real_start.size):
            lo, hi = (self.real_start[k] - t0) / scale, (self.real_end[k] - t0) / scale
            for v in np.arange(np.ceil(lo / step - 1e-9) * step, hi + 1e-9, step):
                pos.append((self.x_start[k] + v * scale + t0 - self.real_start[k]) / scale)
                text.append(f"{v + 0.0:.10g}")
        ax.set_xticks(pos, text, fontsize=8)
        middle = sum(ax.get_ylim()) / 2
        for k, hole in enumerate(self.holes.tolist()):
            a = (self.x_start[k] + self.real_end[k] - self.real_start[k]) / scale
            b = self.x_start[k + 1] / scale
            ax.axvspan(a, b, facecolor="#ececec", edgecolor="#9a9a9a", linestyle=(0, (2, 2)), linewidth=0.6,
                       zorder=0)
            ax.text((a + b) / 2, middle, f"{_duration(hole)} idle", rotation=90, ha="center", va="center",
                    fontsize=7, color="#555555", clip_on=True)


def _axes_pixels(fig, ax) -> float:
    """The axes' width in pixels (as laid out by default: a figure's constrained layout is only
    computed when it is drawn)."""
    return max(ax.get_position().width * fig.get_figwidth() * fig.dpi, 50.0)


def _visible(left: np.ndarray, right: np.ndarray, row: np.ndarray, state: np.ndarray) -> np.ndarray:
    """Which bars (pixel columns ``left`` to ``right`` in ``row``) show at least half a pixel
    that no bar drawn after them covers (they are drawn state by state, in job order)."""
    rank = np.array([DRAW_ORDER.index(s) for s in state.tolist()]) if state.size else np.empty(0, np.int64)
    order = np.lexsort((-np.arange(row.size), -rank, row))  # per row, the last drawn first
    shown = np.zeros(row.size, bool)
    cur, starts, ends = None, [], []  # the columns covered in the current row: disjoint, sorted
    for k in order.tolist():
        if row[k] != cur:
            cur, starts, ends = row[k], [], []
        a, b = float(left[k]), float(right[k])
        i = bisect.bisect_right(ends, a)  # the first covered stretch that ends after a
        free, x, j = 0.0, a, i
        while j < len(starts) and starts[j] < b:
            free += max(0.0, starts[j] - x)
            x = max(x, ends[j])
            j += 1
        free += max(0.0, b - x)
        shown[k] = free >= 0.5
        # merge [a, b) with the stretches it touches (i .. j-1)
        if i < j:
            a, b = min(a, starts[i]), max(b, ends[j - 1])
        starts[i:j], ends[i:j] = [a], [b]
    return shown


def _boxes(x0: np.ndarray, w: np.ndarray, y0: np.ndarray, height: float) -> np.ndarray:
    """The corners of rectangles, as PolyCollection takes them."""
    verts = np.empty((x0.size, 4, 2))
    verts[:, :, 0] = np.stack([x0, x0, x0 + w, x0 + w], axis=1)
    verts[:, :, 1] = np.stack([y0, y0 + height, y0 + height, y0], axis=1)
    return verts


def _draw_startup(ax, verts: np.ndarray, raster: bool) -> None:
    from matplotlib.collections import PolyCollection

    ax.add_collection(PolyCollection(verts, facecolors=STARTUP_COLOR, edgecolors="none", rasterized=raster,
                                     gid="startup"))


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


def _colors(state: np.ndarray, values: np.ndarray | None, color_by: str | None, fig, ax,
            shown: np.ndarray | None = None) -> tuple[np.ndarray, list]:
    """RGBA per job and the legend entries for the colours (counting the bars ``shown``)."""
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
    seen = keys[shown].value_counts() if shown is not None else counts
    handles = [Patch(facecolor=color_of[c], label=f"{c} ({int(seen.get(c, 0))})") for c in cats if seen.get(c, 0)]
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
    for s in DRAW_ORDER:
        m = state == s
        if not m.any():
            continue
        hatch = STATE_HATCH[s] if by_value else None
        edge = "white" if wide and not hatch else STATE_COLORS["error"] if hatch == STATE_HATCH["error"] else (
            (0.15, 0.15, 0.15, 0.9) if hatch else "none")
        width = 0.8 if hatch == STATE_HATCH["error"] else 0.3 if wide and not hatch else 0.0  # failed: outlined
        coll = PolyCollection(verts[m], facecolors=colors[m], edgecolors=edge, linewidths=width, hatch=hatch,
                              rasterized=raster, gid=f"jobs-{s}")
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
