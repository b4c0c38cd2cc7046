"""Logs and error messages."""

from __future__ import annotations

import bisect
import heapq
import logging
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..core.contract.protocol import BANNER, JOB_LINE, MARK, START
from ..core.jobstate.state import select
from ..core.presentation.display import DisplayFrame
from ..core.registry import RegistryState, resolve

log = logging.getLogger("batchtools")
BANNER_LINE = MARK + BANNER


def _log_path(reg: RegistryState, job_id: int):
    pos = reg.pos(np.array([job_id]))[0]
    name = reg.status["log_file"].to_numpy()[pos]
    job_hash = reg.status["job_hash"].to_numpy()[pos]
    if name is None and job_hash is None:
        return None
    if name is None and reg.status["batch_id"].to_numpy()[pos] == "cfInteractive":
        raise FileNotFoundError(f"id: job {job_id} ran with write_logs=False, so its output went to the console")
    return reg.layout.log_named(name) if name else reg.layout.log(job_hash)


class LogIndex:
    """Which job each line of a log belongs to, read once for many jobs (``grep_logs``).

    As R's ``readLog``: a line ending in ``[batchtools job.id=N]`` (a job's start and end markers)
    is job N's, and so are the lines between two markers of the same job; the other lines are the
    job collection's (its header and footer, hook output). A log may hold several collections
    (a requeued run, Interactive's session), each starting with the node's banner.
    """

    def __init__(self, lines: list[str]):
        self.lines = lines
        self.by_job: dict[int, list[int]] = {}
        self.free: list[int] = []  # lines of no job
        self.starts: dict[int, int] = {}  # each job's last start marker
        self.banners: list[int] = []
        held: list[int] = []
        owner = None  # the id of the last marker, and the lines of no marker since
        for i, line in enumerate(lines):
            m = JOB_LINE.search(line)
            if m is None:
                if line.startswith(BANNER_LINE):
                    self.banners.append(i)
                held.append(i)
                continue
            job = int(m.group(1))
            if owner == job:
                self.by_job[job].extend(held)
            else:
                self.free.extend(held)
            held = []
            self.by_job.setdefault(job, []).append(i)
            if START.match(line):
                self.starts[job] = i
            owner = job
        self.free.extend(held)

    def section(self, job_id: int) -> list[str] | None:
        """The log of one job, as R's ``getLog``: of the collection's part of the log that holds the
        job's last run, the job's lines and the lines of no job. None if the job never started here."""
        start = self.starts.get(job_id)
        if start is None:
            return None
        k = bisect.bisect_right(self.banners, start)
        first = self.banners[k - 1] if k else 0
        last = self.banners[k] if k < len(self.banners) else len(self.lines)

        def within(idx: list[int]) -> list[int]:
            return idx[bisect.bisect_left(idx, first):bisect.bisect_left(idx, last)]

        own = sorted(within(self.by_job[job_id]))
        return [self.lines[i] for i in heapq.merge(own, within(self.free))]


def get_log(id: int, reg: RegistryState | None = None) -> list[str]:
    """The log lines of job ``id``: its part of the job collection's log, with the collection's
    header and footer (R's ``getLog``)."""
    reg = resolve(reg)
    reg.sync()
    sel = reg.ids(id, arg="id")
    if sel.size != 1:
        raise ValueError(f"id: expected exactly one job id, got {sel.size}")
    return read_job_log(reg, int(sel[0]))


def read_job_log(reg: RegistryState, job_id: int) -> list[str]:
    """:func:`get_log` of an existing job without a sync first (the caller synced)."""
    path = _log_path(reg, job_id)
    if path is None:
        raise FileNotFoundError(f"id: job {job_id} was never submitted, so it has no log yet")
    started = bool(reg.status["started"].notna().to_numpy()[reg.pos(np.array([job_id]))[0]])
    if not path.exists():
        if started:
            raise FileNotFoundError(f"id: the log of job {job_id} ({path}) is missing: the job started, so the file "
                                    "was deleted or not copied with the registry")
        raise FileNotFoundError(f"id: the log of job {job_id} ({path}) does not exist (yet); "
                                "it appears once the job starts")
    lines = path.read_text(errors="replace").splitlines()
    section = LogIndex(lines).section(job_id)
    if section is None and lines and started:  # its start marker should be there
        log.warning("%s: the log has no part marked for job %d (damaged, or written by something else); "
                    "showing it whole", path, job_id)
    return lines if section is None else section  # e.g. a collection that failed before its first job


def show_log(id: int, reg: RegistryState | None = None) -> None:
    """Show the log of job ``id`` in a pager (``$PAGER``, ``less``), or print it when the
    output is not a terminal (a script, a notebook). The text ends with a newline.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: print("x is", x), x=[7]); _ = bt.submit_jobs()
    >>> bt.show_log(1)  # doctest: +ELLIPSIS
    ### [bt]: ...
    x is 7
    ...
    """
    import pydoc

    pydoc.pager("\n".join(get_log(id, reg=reg)) + "\n")


def grep_logs(ids=None, pattern: str = "", ignore_case: bool = False, fixed: bool = False,
              reg: RegistryState | None = None) -> pd.DataFrame:
    """Search the logs of ``ids`` (default: all started jobs; each job's log as :func:`get_log`
    gives it) for ``pattern`` (a regex, or a literal string with ``fixed=True``). Returns
    ``job_id`` and the matching ``line``, one row per line (R: one row per job);
    printed, the lines are shown in full (not cut at pandas' column width).

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: print(f"result {x} " + "=" * 60), x=[1, 2]); _ = bt.submit_jobs()
    >>> hits = bt.grep_logs(pattern="result 2")
    >>> hits["job_id"].tolist()
    [2]
    >>> "=" * 60 in str(hits)
    True
    """
    reg = resolve(reg)
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("pattern: a non-empty string is required")
    reg.sync()
    sel = select(reg, "started", None if ids is None else reg.ids(ids))
    flags = re.IGNORECASE if ignore_case else 0
    try:
        rx = re.compile(re.escape(pattern) if fixed else pattern, flags)
    except re.error as e:
        raise ValueError(f"pattern: {pattern!r} is not a valid regular expression ({e}); "
                         "pass fixed=True to search for the text as it is") from None
    cache: dict = {}
    rows = []
    for job_id in sel.tolist():
        path = _log_path(reg, job_id)
        if path is None or not path.exists():
            continue
        if path not in cache:
            cache[path] = LogIndex(path.read_text(errors="replace").splitlines())
        for line in cache[path].section(job_id) or ():
            if rx.search(line):
                rows.append((job_id, line))
    return DisplayFrame(rows, columns=["job_id", "line"]).astype({"job_id": np.int64})


def get_error_messages(ids=None, missing_as_error: bool = False, reg: RegistryState | None = None) -> pd.DataFrame:
    """``job_id``, ``terminated``, ``error`` and ``message`` for jobs that failed (default:
    all failed jobs). With ``missing_as_error``, jobs without a result count as errors too.
    Printed, the messages are shown in full.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: 1 / x, x=[0, 1]); _ = bt.submit_jobs()
    >>> bt.get_error_messages()[["job_id", "message"]].to_dict("records")
    [{'job_id': 1, 'message': 'ZeroDivisionError: division by zero'}]
    """
    reg = resolve(reg)
    reg.sync()
    sel = select(reg, "error") if ids is None else reg.ids(ids)
    pos = reg.pos(sel)
    st = reg.status
    msg = st["error"].to_numpy()[pos]
    terminated = st["done"].notna().to_numpy()[pos]
    error = np.array([m is not None for m in msg], dtype=bool)
    msg = msg.copy()
    if missing_as_error:
        missing = ~terminated
        msg[missing] = "[not terminated]"
        error = error | missing
    return DisplayFrame({"job_id": sel, "terminated": terminated, "error": error, "message": msg})


# a number standing alone (not part of a name or a longer number): messages that differ only in
# such numbers are one kind of error
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")


@dataclass
class ErrorGroup:
    """Failed jobs whose messages differ at most in numbers: ``key`` (the message with ``<n>``
    for its numbers), ``job_ids`` (in the order given) and the distinct ``texts``."""

    key: str
    job_ids: list[int] = field(default_factory=list)
    texts: set[str] = field(default_factory=set)

    @property
    def text(self) -> str:
        """The message itself if all jobs had the same one, else the key."""
        return next(iter(self.texts)) if len(self.texts) == 1 else self.key


def error_groups(job_ids, messages) -> list[ErrorGroup]:
    """Failed jobs grouped by message, the most frequent first. Messages that differ only in
    numbers are one group (shown with ``<n>`` for them).

    >>> [(g.text, g.job_ids) for g in error_groups([1, 2, 3], ["ValueError: x = 1", "KeyError: 'a'",
    ...                                                         "ValueError: x = 2"])]
    [('ValueError: x = <n>', [1, 3]), ("KeyError: 'a'", [2])]
    """
    groups: dict[str, ErrorGroup] = {}
    for job_id, msg in zip(job_ids, messages):
        msg = str(msg)
        key = _NUMBER.sub("<n>", msg)
        g = groups.get(key)
        if g is None:
            g = groups[key] = ErrorGroup(key)
        g.job_ids.append(int(job_id))
        g.texts.add(msg)
    return sorted(groups.values(), key=lambda g: -len(g.job_ids))
