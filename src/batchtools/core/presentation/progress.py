"""Progress of long operations (submitting, waiting, reducing), shown to people.

Three modes, chosen by the environment variable ``BATCHTOOLS_PROGRESS``:

- ``bar`` (``1``): a tqdm bar with counts and an ETA, refreshed in place; the default when
  standard error is a terminal, or in a Jupyter kernel.
- ``lines``: one status line on standard error every N seconds (``BATCHTOOLS_PROGRESS_INTERVAL``,
  or the configuration key ``progress_interval``; default 30), and a closing line if any was
  written; the default when standard error is not a terminal (a log file, CI, a batch job),
  so a long run is never silent.
- ``off`` (``0``): nothing.

The ETA of waiting comes from the run times measured so far (:func:`eta_from_runtimes`); the
others from the rate of progress. An ETA that is unknown, or known to be wrong (a job runs
more than twice as long as any finished one; the estimate counted down to nothing while jobs
are left), is not shown.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger("batchtools")

ENV_MODE = "BATCHTOOLS_PROGRESS"
ENV_INTERVAL = "BATCHTOOLS_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 30.0
_MODES = {"0": "off", "off": "off", "false": "off", "no": "off", "none": "off",
          "1": "bar", "on": "bar", "bar": "bar", "bars": "bar", "true": "bar", "yes": "bar",
          "lines": "lines", "line": "lines", "log": "lines",
          "": "auto", "auto": "auto"}
_warned: set[str] = set()
_write_lock = threading.Lock()


def _warn_once(key: str, msg: str, *args: Any) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(msg, *args)


def _in_notebook() -> bool:
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython

        return getattr(get_ipython(), "kernel", None) is not None
    except Exception:
        return False


def progress_mode(stream: Any = None) -> str:
    """``"bar"``, ``"lines"`` or ``"off"``: what ``BATCHTOOLS_PROGRESS`` asks for, else bars
    on a terminal (or in Jupyter) and status lines elsewhere.

    >>> import os
    >>> os.environ["BATCHTOOLS_PROGRESS"] = "lines"; progress_mode()
    'lines'
    >>> os.environ["BATCHTOOLS_PROGRESS"] = "0"; progress_mode()
    'off'
    """
    raw = os.environ.get(ENV_MODE, "").strip().lower()
    mode = _MODES.get(raw)
    if mode is None:
        _warn_once(f"mode:{raw}", "%s=%r is not understood (use 0, 1, lines or auto); using auto", ENV_MODE, raw)
        mode = "auto"
    if mode != "auto":
        return mode
    stream = sys.stderr if stream is None else stream
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        tty = False
    return "bar" if tty or _in_notebook() else "lines"


def progress_interval(configured: float | None = None) -> float:
    """Seconds between two status lines: ``BATCHTOOLS_PROGRESS_INTERVAL``, else ``configured``
    (the configuration key ``progress_interval``), else 30.

    >>> import os
    >>> os.environ["BATCHTOOLS_PROGRESS_INTERVAL"] = "5"; progress_interval(60)
    5.0
    >>> del os.environ["BATCHTOOLS_PROGRESS_INTERVAL"]; progress_interval(60)
    60.0
    """
    raw = os.environ.get(ENV_INTERVAL)
    if raw:
        try:
            value = float(raw)
            if value > 0 and math.isfinite(value):
                return value
        except ValueError:
            pass
        _warn_once(f"interval:{raw}", "%s=%r is not a number of seconds > 0; using %s s", ENV_INTERVAL, raw,
                   configured or DEFAULT_INTERVAL)
    return float(configured) if configured else DEFAULT_INTERVAL


def format_duration(seconds: float | None) -> str:
    """A duration for people, to the second: ``45s``, ``2m05s``, ``3h07m``, ``2d04h`` (``?``: unknown).

    >>> [format_duration(s) for s in (0.4, 45, 125, 11220, 187200, None)]
    ['0s', '45s', '2m05s', '3h07m', '2d04h', '?']
    """
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def eta_from_runtimes(started: np.ndarray, ended: np.ndarray, left: np.ndarray, running: np.ndarray,
                      now: float | None = None) -> float | None:
    """Seconds until the jobs still ``left`` are done, from the run times measured so far.

    ``started``/``ended``: times (seconds since the epoch, NaN if none) of the jobs; ``left``,
    ``running``: boolean masks. The mean run time of the finished jobs is the work each job still
    waiting needs (a running job: what is left of it); that work is shared by as many slots as
    run now, or as ran side by side on average so far, whichever is more. None while no job
    has finished, and while a job runs more than twice as long as any finished one took (and a
    second more): the estimate is known to be wrong (a 150-s job among jobs of a tenth of a second).

    >>> nan = float("nan")
    >>> started = np.array([0.0, 0.0, 10.0, nan]); ended = np.array([10.0, 10.0, nan, nan])
    >>> left = np.isnan(ended); running = ~np.isnan(started) & left
    >>> eta_from_runtimes(started, ended, left, running, now=14.0)  # 2 slots: (6 + 10) / 2
    8.0
    >>> eta_from_runtimes(started, ended, left, running, now=35.0) is None  # job 3 runs 25 s, the others took 10
    True
    """
    now = time.time() if now is None else now
    fin = ~np.isnan(started) & ~np.isnan(ended)
    if not fin.any():
        return None
    runtimes = ended[fin] - started[fin]
    mean = float(np.mean(runtimes))
    span = float(np.max(ended[fin]) - np.min(started[fin]))
    parallel = float(np.sum(runtimes)) / span if span > 0 else 1.0
    elapsed = now - started[running]
    # a job that runs twice as long as any finished one (and a second more: the nodes report
    # starts at intervals) makes the estimate known to be wrong
    if elapsed.size and np.nanmax(elapsed, initial=0.0) > 2 * float(np.max(runtimes)) + 1.0:
        return None
    rest_running = np.maximum(mean - elapsed[~np.isnan(elapsed)], 0.0)
    n_waiting = int(np.count_nonzero(left & ~running))
    slots = max(int(np.count_nonzero(running)), parallel, 1.0)
    work = float(np.sum(rest_running)) + n_waiting * mean
    longest = float(np.max(rest_running)) if rest_running.size else (mean if n_waiting else 0.0)
    return max(work / slots, longest)


def job_detail(reg, pos: np.ndarray, m: dict[str, np.ndarray], left: np.ndarray | None = None,
               expired: np.ndarray | None = None) -> dict[str, Any]:
    """What a progress display shows about the jobs at status rows ``pos``: counts of running,
    failed and ``expired`` jobs (default ``m["expired"]``; ``m``: the masks of
    :func:`batchtools.core.jobstate.state.masks`) and the ETA of the ``left`` ones (default: neither
    done, failed nor expired) from the measured run times."""
    st = reg.status
    expired = m["expired"] if expired is None else expired
    if left is None:
        left = m["submitted"] & ~m["terminated"] & ~expired
    detail: dict[str, Any] = {"running": int(m["running"].sum()), "error": int(m["error"].sum()),
                              "expired": int(expired.sum())}
    detail["eta"] = eta_from_runtimes(st["started"].to_numpy()[pos], st["done"].to_numpy()[pos], left, m["running"])
    return detail


class Progress:
    """One progress display: :meth:`update` by a number done, or :meth:`set` the number done
    (with ``detail``: counts to show and an ``eta`` in seconds, or a function returning them,
    called at most every second); a context manager. See the module docstring for the modes."""

    REFRESH = 1.0  # seconds between two evaluations of a detail function

    def __init__(self, total: int, desc: str, unit: str = "job", mode: str | None = None,
                 interval: float | None = None, file: Any = None, delay: float = 0.5):
        self.total = int(total)
        self.desc = desc
        self.unit = unit
        self.file = sys.stderr if file is None else file  # now: Interactive jobs redirect sys.stderr later
        self.mode = mode or progress_mode(self.file)
        self.interval = progress_interval(interval)
        self.n = 0
        self.counts: dict[str, int] = {}
        self.eta: float | None = None
        self.start = time.time()
        self.lines = 0
        self._detail_at = -math.inf
        self._shown_at = 0.0
        self._bar = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            fmt = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} " + unit + "s [{elapsed}{postfix}]"
            self._bar = tqdm(total=self.total, desc=desc, leave=False, unit=unit, dynamic_ncols=True,
                             file=self.file, delay=delay, bar_format=fmt)
        elif self.mode == "lines":
            self._thread = threading.Thread(target=self._lines, name="batchtools-progress", daemon=True)
            self._thread.start()

    # ----------------------------------------------------------------- input
    def update(self, k: int = 1) -> None:
        self.set(self.n + k)

    def set(self, n: int, detail: dict | Callable[[], dict] | None = None) -> None:
        self.n = int(n)
        now = time.time()
        if detail is not None and (now - self._detail_at >= self.REFRESH or self.n >= self.total):
            d = dict(detail() if callable(detail) else detail)
            self.eta = d.pop("eta", None)
            self.counts = {k: int(v) for k, v in d.items()}
            self._detail_at = now
        bar = self._bar
        if bar is not None:
            delta = self.n - bar.n
            if delta or now - self._shown_at >= 0.5:
                bar.set_postfix_str(self._postfix(now), refresh=False)
                self._shown_at = now
                if delta:
                    bar.update(delta)
                elif now - bar.start_t >= bar.delay:
                    bar.refresh()

    # ---------------------------------------------------------------- output
    def eta_seconds(self, now: float | None = None) -> float | None:
        """The measured ETA if one was given, else from the rate so far; None when unknown, or
        when it counted down to nothing while work is left (known to be wrong)."""
        now = time.time() if now is None else now
        if self.n >= self.total:
            return 0.0
        if self._detail_at > -math.inf:  # details given: their ETA, or none
            if self.eta is None:
                return None
            left = self.eta - (now - self._detail_at)
            return left if left > 0 else None
        if self.n <= 0:
            return None
        return (now - self.start) / self.n * (self.total - self.n)

    def _counts_text(self) -> str:
        return ", ".join(f"{v} {k}" for k, v in self.counts.items() if v)

    def _postfix(self, now: float) -> str:
        parts = [p for p in (self._counts_text(),) if p]
        eta = self.eta_seconds(now) if self.n < self.total else None
        if eta is not None:  # an unknown ETA is not shown
            parts.append(f"ETA {format_duration(eta)}")
        return ", ".join(parts)

    def line(self, final: bool = False) -> str:
        """The status line of lines mode."""
        now = time.time()
        pct = 100.0 * self.n / self.total if self.total else 100.0
        parts = [f"{self.n}/{self.total} {self.unit}s ({pct:.1f}%)"]
        counts = self._counts_text()
        if counts:
            parts.append(counts)
        parts.append(f"elapsed {format_duration(now - self.start)}")
        eta = self.eta_seconds(now) if not final and self.n < self.total else None
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        end = " (stopped)" if final and self.n < self.total else ""
        return f"[batchtools {stamp}] {self.desc}: " + ", ".join(parts) + end

    def _write(self, text: str) -> None:
        with _write_lock:
            try:
                self.file.write(text + "\n")
                self.file.flush()
            except (OSError, ValueError):  # a closed log: progress is never worth an error
                pass

    def _lines(self) -> None:
        while not self._stop.wait(self.interval):
            self._write(self.line())
            self.lines += 1

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            if self.lines:  # a run long enough to report gets its closing line
                self._write(self.line(final=True))
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(total: int, desc: str, unit: str = "job", reg: Any = None) -> Progress:
    """A :class:`Progress` of ``total`` items (``reg``: a registry whose configuration may set
    ``progress_interval``).

    >>> with progress(3, "Submitting") as bar:  # the tests set BATCHTOOLS_PROGRESS=0: nothing shown
    ...     bar.update(3)
    >>> bar.n
    3
    """
    return Progress(total, desc, unit=unit, interval=getattr(reg, "progress_interval", None))
