"""Job counts by state (:class:`Status`), and the summary file beside the status table.

``print(get_status())`` needs only counts; a registry of a million jobs keeps them in a small
summary file written with each save of the status table (``status.counts``), so
``batchtools status`` answers without pandas or the table (about 0.1 s instead of 0.6 s) when
that file still describes the table on disk, nothing is waiting to be merged and no job can be
on the system (only the backend knows queued, running and expired). Otherwise it reads the
table. Standard library only.
"""

from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path

from ..persistence.layout import FORMAT_VERSION, Layout, is_data_file
from ..presentation.clock import local_time


@dataclass
class Status:
    """Job counts by state, as :func:`get_status` returns them.

    ``print(status)`` (and the REPL) shows batchtools' familiar summary, with the time of the
    count in local time; Jupyter shows it as a table with bars. The counts are attributes
    (``status.done``), items (``status["done"]``), a dict (``to_dict()``) or a one-row DataFrame
    (``to_frame()``). ``timestamp`` is when they were counted (seconds since the epoch).

    ``defined``: jobs in the registry (or among the ids asked for); ``submitted``; ``started``
    (running, done or failed); ``done`` (finished without error); ``error``; ``queued`` and
    ``running`` (on the system, as the backend lists them); ``expired`` (submitted, neither done
    nor failed, and gone from the system); ``system`` (queued or running); ``cached``: of the done
    jobs, those ``submit_jobs`` took from the shared cache (in ``to_dict()`` and the summary only
    when there are any); ``held`` (submitted
    with dependencies not done yet: not handed to the backend, see :func:`find_held`; the summary
    and ``to_dict``/``to_frame`` show them only when there are some).
    """

    defined: int
    submitted: int
    started: int
    done: int
    error: int
    queued: int
    running: int
    expired: int
    system: int
    timestamp: float = 0.0
    cached: int = 0
    held: int = 0

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "timestamp" and (f.name not in ("held", "cached") or getattr(self, f.name))}

    def to_frame(self):
        """The counts as a one-row ``pandas.DataFrame``."""
        import pandas as pd

        return pd.DataFrame([self.to_dict()])

    def __getitem__(self, key: str) -> int:
        return self.to_dict()[key]

    def _rows(self) -> list[tuple[str, str, int]]:
        """(label, indent level, count) of the summary's lines."""
        held = [("Held", 1, self.held)] if self.held else []
        return [("Submitted", 0, self.submitted), *held, ("Queued", 1, self.queued), ("Started", 1, self.started),
                ("Running", 2, self.running), ("Done", 2, self.done),
                *([("Cached", 3, self.cached)] if self.cached else []), ("Error", 2, self.error),
                ("Expired", 2, self.expired)]

    def __str__(self) -> str:
        n = self.defined
        width = len(str(n))

        def line(label: str, level: int, k: int) -> str:
            pct = 100.0 * k / n if n else 0.0
            label = "-" * (2 * level) + (" " if level else "") + label
            return f"  {label:<13}: {k:>{width}} ({pct:5.1f}%)"

        head = f"Status for {n} jobs at {local_time(self.timestamp)}:"
        return "\n".join([head] + [line(*row) for row in self._rows()])

    def __repr__(self) -> str:  # the REPL shows the summary, like print()
        return str(self)

    def _repr_pretty_(self, p, cycle) -> None:  # IPython
        p.text(str(self))

    _COLORS = {"Held": "#b39ddb", "Done": "#4c9a2a", "Error": "#c0392b", "Running": "#e0a526", "Expired": "#7f7f7f",
               "Queued": "#8fb3d9"}

    def _repr_html_(self) -> str:  # Jupyter: a small table with a bar per state
        n = self.defined
        rows = []
        for label, level, k in self._rows():
            pct = 100.0 * k / n if n else 0.0
            color = self._COLORS.get(label, "#5b7fa6")
            bar = (f'<div style="background:{color};width:{pct:.1f}%;height:0.8em;min-width:{1 if k else 0}px">'
                   "</div>")
            rows.append(f'<tr><td style="text-align:left;padding-left:{1.2 * level:.1f}em">{label}</td>'
                        f'<td style="text-align:right">{k}</td><td style="text-align:right">{pct:.1f}%</td>'
                        f'<td style="width:12em;text-align:left">{bar}</td></tr>')
        when = html.escape(local_time(self.timestamp))
        return (f"<div><b>Status for {n} jobs</b> at {when}<table>"
                "<thead><tr><th></th><th>jobs</th><th>share</th><th></th></tr></thead>"
                f"<tbody>{''.join(rows)}</tbody></table></div>")


# the counts the table alone decides (the rest needs the backend, unless no job can be on the system)
TABLE_COUNTS = ("defined", "submitted", "started", "done", "error", "unfinished")


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def summary_bytes(file_dir: Path, counts: dict[str, int], files: list[str]) -> bytes:
    """The summary of the status table just written in ``file_dir`` (``counts``: :data:`TABLE_COUNTS`),
    naming the format and the version of each of the registry's ``files`` (its settings and
    tables, as just saved): used only while every one of them is that version."""
    lay = Layout(file_dir)
    return json.dumps({"table": _identity(os.stat(lay.table("status"))), "counts": counts,
                       "version": FORMAT_VERSION,
                       "files": {name: _identity(os.stat(lay.file_dir / name)) for name in files}}).encode()


def counts_from_summary(file_dir: str | os.PathLike, now: float) -> Status | None:
    """The registry's :class:`Status` from its summary file, or None if the table must be read: the
    summary is missing, describes another version of the status table, of another table or of the
    settings, or another format (a missing or damaged file: opening says so), a change is under
    way (``.txn``) or a submission is (its journal), the nodes' reports wait to be merged, the registry has a worker pool (which
    keeps its own claims), or some submitted job has not finished (only the backend can say if
    it is queued, running or gone). The status file is checked again last: saved in between (a
    submission that began and ended meanwhile), the table is read."""
    lay = Layout(file_dir)
    try:
        summary = json.loads(lay.status_summary.read_bytes())
        if summary["table"] != _identity(os.stat(lay.table("status"))) or summary.get("version") != FORMAT_VERSION:
            return None
        counts = {k: int(summary["counts"][k]) for k in TABLE_COUNTS}
        if any(_identity(os.stat(lay.file_dir / name)) != known for name, known in summary["files"].items()):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if counts.pop("unfinished") or lay.txn.exists() or lay.pool.exists() or _size(lay.journal):
        return None  # a submission in progress (its journal): jobs live that the status does not name yet
    try:
        with os.scandir(lay.dir("updates")) as it:
            if any(is_data_file(e.name) for e in it):
                return None
    except FileNotFoundError:
        pass
    try:  # still the status summarised: not saved by a submission that ended after the summary was read
        if summary["table"] != _identity(os.stat(lay.table("status"))):
            return None
    except OSError:
        return None
    return Status(**counts, queued=0, running=0, expired=0, system=0, timestamp=now)


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
