"""The live view of ``batchtools watch``: status counts, running jobs, pool workers, an ETA.

A :class:`Watcher` keeps a read-only registry current while another session (or the nodes)
changes it: the tables are read again whenever the status file changed on disk, and the nodes'
reports are merged in memory, so it never writes anything. :func:`render` draws one
:class:`Snapshot` with rich (refreshed in place on a terminal); :func:`status_line` is the one
line per interval written when the output is not a terminal.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .api.status import Status
from .core.jobstate.recovery import replay_journal, writer_alive
from .core.jobstate.state import masks
from .core.presentation.display import local_time
from .core.presentation.progress import eta_from_runtimes, format_duration
from .core.presentation.text import printable
from .core.registry import RegistryState

MAX_RUNNING_ROWS = 10


@dataclass
class Snapshot:
    """What ``watch`` shows at one moment."""

    status: Status
    backend: str
    eta: float | None
    running: pd.DataFrame  # job_id, batch_id, started (seconds since the epoch)
    workers: pd.DataFrame | None = None  # get_workers(), if the registry has a pool
    time: float = field(default_factory=time.time)
    submitting: bool = False  # another session is submitting right now

    @property
    def finished(self) -> int:
        s = self.status
        return s.done + s.error + s.expired

    @property
    def left(self) -> int:
        """Jobs still queued or running (1 while a submission is in progress): watch ends when none is."""
        return max(self.status.system, int(self.submitting))


class Watcher:
    """Keeps a read-only ``reg`` current; :meth:`snapshot` counts once per call."""

    def __init__(self, reg: RegistryState):
        if reg.writeable:
            raise ValueError("reg: watch reads a registry; load it read-only")
        self.reg = reg
        self._stamp = self._status_stamp()

    def _status_stamp(self) -> tuple:
        out = []
        for path in (self.reg.layout.table("status"), self.reg.layout.journal):
            try:
                st = os.stat(path)
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

    @property
    def submitting(self) -> bool:
        """Whether the writeable session is submitting right now (its journal is not empty)."""
        return self._stamp[1] is not None and self._stamp[1][1] > 0 and writer_alive(self.reg)

    def refresh(self) -> None:
        """Read the tables again if another session saved them (and the chunks it is submitting),
        then merge the nodes' reports."""
        reg = self.reg
        stamp = self._status_stamp()
        if stamp != self._stamp:
            if stamp[0] != self._stamp[0]:
                reg.read_tables()
                reg.session.pool = None  # the pool's state is read again too
            replay_journal(reg)
            reg.session.applied_updates.clear()  # reports skipped before may apply now
            self._stamp = stamp
        reg.sync()

    def snapshot(self) -> Snapshot:
        self.refresh()
        reg = self.reg
        now = time.time()
        m = masks(reg)  # lists the backend, and merges reports again before it calls a job expired
        counts = {k: int(v.sum()) for k, v in m.items() if k != "terminated"}
        status = Status(defined=len(reg.status), timestamp=now, **counts)
        st = reg.status
        started = st["started"].to_numpy()
        left = m["system"]
        eta = eta_from_runtimes(started, st["done"].to_numpy(), left, m["running"], now) if left.any() else 0.0
        rows = np.flatnonzero(m["running"])
        running = pd.DataFrame({"job_id": st["job_id"].to_numpy()[rows], "batch_id": st["batch_id"].to_numpy()[rows],
                                "started": started[rows]}).sort_values(["started", "job_id"], ignore_index=True)
        workers = None
        if reg.layout.pool_state.exists():
            from .api.workers import get_workers

            workers = pd.DataFrame(get_workers(reg=reg))
        cf = reg.cluster_functions
        return Snapshot(status, repr(cf).removeprefix("ClusterFunctions") if cf is not None else "(none)", eta,
                        running, workers, now, self.submitting)


def notify_snapshot(notifier, reg: RegistryState, snap: Snapshot) -> None:
    """``batchtools watch --notify``: one message once failures reach the threshold, one when no
    job is left (``snap.left`` is 0); nothing without a notifier."""
    if notifier is None:
        return
    from .core.presentation.notify import message

    s = snap.status
    failed = s.error + s.expired
    event = ("failures" if snap.left and notifier.crossed(failed, s.submitted) else None if snap.left
             else "failed" if failed else "done")
    if event is None:
        return
    counts = {"total": s.submitted, "done": s.done, "error": s.error, "expired": s.expired, "running": s.running,
              "queued": s.queued}
    st = reg.status
    errors = st["error"].dropna()
    first = f"job {int(st['job_id'][errors.index[0]])}: {errors.iloc[0]}" if len(errors) else None
    took = None
    if event != "failures" and st["submitted"].notna().any():  # the run: its first submission to its last end
        took = float(np.nanmax(st["done"].to_numpy(), initial=snap.time) - st["submitted"].min())
    title, text = message(event, counts, str(reg.file_dir), took, first)
    notifier.send(event, title, text, {"registry": str(reg.file_dir), **counts})


def ago(seconds: float) -> str:
    """``12s ago`` (``-`` for unknown).

    >>> ago(125.2)
    '2m05s ago'
    """
    return "-" if seconds != seconds else f"{format_duration(seconds)} ago"


def status_line(snap: Snapshot) -> str:
    """One line for a log: counts, running, queued and the ETA, stamped with the local time."""
    s = snap.status
    parts = [f"{snap.finished}/{s.submitted} finished: {s.done} done, {s.error} error, {s.expired} expired",
             f"{s.running} running", f"{s.queued} queued"]
    if s.submitted < s.defined:
        parts.append(f"{s.defined - s.submitted} not submitted")
    if snap.submitting:
        parts.append("a submission is in progress")
    if snap.left:
        parts.append(f"ETA {format_duration(snap.eta)}")
    return f"[{local_time(snap.time)}] " + ", ".join(parts)


def render(snap: Snapshot, registry: str, interval: float):
    """The watch screen (a rich renderable)."""
    from rich import box
    from rich.console import Group
    from rich.panel import Panel
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    def literal(value) -> Text:  # text of the registry or the backend, shown literally (no markup, no escapes)
        return Text(printable(str(value)))

    s = snap.status
    n = max(s.defined, 1)
    counts = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    counts.add_column("state")
    counts.add_column("jobs", justify="right")
    counts.add_column("share", justify="right")
    counts.add_column("", width=30)
    styles = {"Done": "green", "Error": "red", "Expired": "magenta", "Running": "yellow", "Queued": "cyan"}
    for label, level, k in s._rows():
        style = styles.get(label, "blue")
        counts.add_row(Text("  " * level + label, style=style if k else ""), f"{k:,}", f"{100 * k / n:5.1f}%",
                       ProgressBar(total=n, completed=k, width=30, complete_style=style, finished_style=style))
    if s.submitted < s.defined:
        counts.add_row("Not submitted", f"{s.defined - s.submitted:,}", f"{100 * (s.defined - s.submitted) / n:5.1f}%",
                       "")

    overall = Table.grid(padding=(0, 1))
    overall.add_column()
    overall.add_column()
    overall.add_column()
    done_style = "red" if s.error or s.expired else "green"
    overall.add_row(ProgressBar(total=max(s.submitted, 1), completed=snap.finished, width=40,
                                complete_style="yellow", finished_style=done_style),
                    f"{snap.finished:,}/{s.submitted:,} finished",
                    Text((f"ETA {format_duration(snap.eta)}" if snap.left else "nothing left to run")
                         + (" · a submission is in progress" if snap.submitting else ""), style="bold"))

    parts: list = [counts, overall]
    if len(snap.running):
        run = Table(title=f"Running jobs ({len(snap.running):,})", title_justify="left", box=box.SIMPLE_HEAD,
                    show_edge=False, pad_edge=False)
        for col in ("job", "batch id", "started", "running for"):
            run.add_column(col, justify="right" if col in ("job", "running for") else "left")
        for r in snap.running.head(MAX_RUNNING_ROWS).itertuples():
            run.add_row(str(r.job_id), literal(r.batch_id), local_time(r.started),
                        format_duration(snap.time - r.started) if r.started == r.started else "-")
        if len(snap.running) > MAX_RUNNING_ROWS:
            run.add_row("…", f"and {len(snap.running) - MAX_RUNNING_ROWS:,} more", "", "")
        parts.append(run)
    if snap.workers is not None and len(snap.workers):
        w = Table(title=f"Pool workers ({len(snap.workers)})", title_justify="left", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False)
        for col in ("worker", "batch id", "state", "claimed", "done", "error", "last beat"):
            w.add_column(col, justify="right" if col in ("claimed", "done", "error") else "left")
        order = snap.workers["state"].map({"running": 0, "queued": 1}).fillna(2)  # those at work first
        shown = snap.workers.iloc[order.argsort(kind="stable")].head(MAX_RUNNING_ROWS)
        for r in shown.itertuples():
            beat = r.last_beat.timestamp() if pd.notna(r.last_beat) else float("nan")
            w.add_row(literal(str(r.worker_id)[:14]), literal(r.batch_id), str(r.state), str(r.claimed), str(r.done),
                      str(r.error), ago(snap.time - beat))
        if len(snap.workers) > len(shown):
            w.add_row("…", f"and {len(snap.workers) - len(shown)} more", "", "", "", "", "")
        parts.append(w)
    title = literal(f"batchtools watch · {snap.backend.strip('(), ')} · {registry}")  # a long path is cut, not the rest
    foot = f"{local_time(snap.time)} · refreshed every {interval:g} s · Ctrl-C to stop"
    return Panel(Group(*parts), title=title, title_align="left", subtitle=foot, subtitle_align="right",
                 border_style="dim", expand=False)
