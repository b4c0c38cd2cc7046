"""Figures: the timeline of a computation (which worker ran which job when)."""

from __future__ import annotations

import time

import numpy as np

from .core.pool import pool_state
from .core.registry import RegistryState, resolve

COLORS = {"done": "#4c9a2a", "error": "#c0392b", "running": "#e0a526"}


def plot_timeline(ids=None, reg: RegistryState | None = None):
    """A matplotlib Figure with one row per worker (pool workers, or the scheduler job /
    process that ran a chunk) and one bar per job from its start to its end, in seconds
    from the start of the computation. Done jobs are green, failed red, running amber.

    Save it with ``fig.savefig("timeline.png")``; from the shell:
    ``batchtools timeline REGISTRY -o timeline.png``.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: x, x=[1, 2]); _ = bt.submit_jobs()
    >>> fig = bt.plot_timeline()
    >>> fig.axes[0].get_xlabel()
    'seconds from start of computation'
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - matplotlib is the 'plot' extra
        raise ImportError("plot_timeline needs matplotlib: pip install 'pybatchtools[plot]'") from e
    reg = resolve(reg)
    reg.sync()
    st = reg.status
    pos = np.arange(len(st)) if ids is None else reg.pos(reg.ids(ids))
    started = st["started"].to_numpy()[pos]
    done = st["done"].to_numpy()[pos]
    error = st["error"].notna().to_numpy()[pos]
    batch = st["batch_id"].to_numpy()[pos]
    keep = ~np.isnan(started) & np.array([b is not None for b in batch], dtype=bool)
    started, done, error, batch = started[keep], done[keep], error[keep], batch[keep].astype(str)
    now = time.time()
    running = np.isnan(done)
    end = np.where(running, now, done)

    fig = Figure(figsize=(9, 1.2 + 0.32 * max(1, min(len(set(batch)), 60))))
    ax = fig.add_subplot()
    ax.set_xlabel("seconds from start of computation")
    if started.size == 0:
        ax.set_title("no job has started yet")
        ax.set_yticks([])
        return fig
    t0 = started.min()
    labels = _worker_labels(reg)
    rows = sorted(set(batch), key=lambda b: started[batch == b].min())
    for y, b in enumerate(rows):
        m = batch == b
        for state, mask in (("done", ~error & ~running), ("error", error), ("running", running & ~error)):
            sel = m & mask
            if sel.any():
                spans = list(zip(started[sel] - t0, np.maximum(end[sel] - started[sel], 1e-3)))
                ax.broken_barh(spans, (y - 0.4, 0.8), facecolors=COLORS[state], edgecolor="white", linewidth=0.3)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([labels.get(b, b) for b in rows], fontsize=8 if len(rows) < 40 else 5)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    ax.invert_yaxis()
    span = float(end.max() - t0)
    kind = "workers" if any(b in labels for b in rows) else "batch jobs"
    ax.set_title(f"{started.size} jobs on {len(rows)} {kind}, {span:.1f} s from first start to last end")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _worker_labels(reg: RegistryState) -> dict[str, str]:
    pool = pool_state(reg)
    if pool is None:
        return {}
    return {w["batch_id"]: f"worker {k + 1} ({w['batch_id']})" for k, w in enumerate(pool.workers.values())
            if w["batch_id"] is not None}
