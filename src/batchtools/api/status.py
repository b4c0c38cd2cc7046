"""``get_status``: job counts by state (derived in :mod:`batchtools.core.state`)."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, fields

import pandas as pd

from ..core.display import local_time
from ..core.registry import RegistryState, resolve
from ..core.state import masks


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
    nor failed, and gone from the system); ``system`` (queued or running).
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

    def to_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "timestamp"}

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame([self.to_dict()])

    def __getitem__(self, key: str) -> int:
        return self.to_dict()[key]

    def _rows(self) -> list[tuple[str, str, int]]:
        """(label, indent level, count) of the summary's lines."""
        return [("Submitted", 0, self.submitted), ("Queued", 1, self.queued), ("Started", 1, self.started),
                ("Running", 2, self.running), ("Done", 2, self.done), ("Error", 2, self.error),
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

    _COLORS = {"Done": "#4c9a2a", "Error": "#c0392b", "Running": "#e0a526", "Expired": "#7f7f7f",
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


def get_status(ids=None, reg: RegistryState | None = None) -> Status:
    """Summarise the jobs' states (of ``ids``, default all; syncs first): a :class:`Status`.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> _ = bt.batch_map(lambda x: x, x=[1, 2])
    >>> bt.get_status().submitted
    0
    >>> print(bt.get_status())  # doctest: +ELLIPSIS
    Status for 2 jobs at ...:
      Submitted    : 0 (  0.0%)
      -- Queued    : 0 (  0.0%)
      -- Started   : 0 (  0.0%)
      ---- Running : 0 (  0.0%)
      ---- Done    : 0 (  0.0%)
      ---- Error   : 0 (  0.0%)
      ---- Expired : 0 (  0.0%)
    """
    reg = resolve(reg)
    reg.sync()
    pos = None if ids is None else reg.pos(reg.ids(ids))
    m = masks(reg, pos)
    n = len(reg.status) if pos is None else len(pos)
    counts = {k: int(v.sum()) for k, v in m.items() if k != "terminated"}
    return Status(defined=n, timestamp=time.time(), **counts)
