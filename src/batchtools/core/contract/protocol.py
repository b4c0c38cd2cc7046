"""What the node and the master agree on: the status update row and the log markers.

A node reports each job as one row ``[job_id, started, done, error, mem_used, reason, signal,
max_rss, cpu_time, restart, ended, startup, progress_at, progress, progress_message, gpu_mem,
gpu_util]`` (times in seconds since the epoch, NaN for "not yet" or
"nothing new"; ``error`` a message or None; ``mem_used`` in MiB, measured with the
``measure_memory`` resource), written in batches to ``updates/<job_hash>-<tag>.pkl`` and merged
by the master's sync. The rest is the evidence of how a run ended: ``reason`` (see
:mod:`.retry`), the ``signal`` that ended it, its peak resident memory ``max_rss`` (MiB) and
``cpu_time`` (seconds), the scheduler's ``restart`` count of the collection (0 unless the
scheduler requeued it, e.g. ``SLURM_RESTART_COUNT``) and when the run ``ended`` (a run that
stopped to go on after a requeue has ``ended`` but no ``done``). ``startup`` is the start-up of
its collection the job waited for just before it ``started`` (seconds: the process starting,
imports, loading its function, problem and algorithm; 0 for a job that waited for none), so no
job's run time holds it. Then the job's last sign of life (``progress_at``, with the ``progress``
value and ``progress_message`` it gave ``job.progress``) and, where the node could sample its
GPUs, their peak memory ``gpu_mem`` (MiB) and mean utilization ``gpu_util`` (percent): a row has
these last five fields only if it carries one of them. Rows of older nodes are still read: the
first five fields, eleven (without ``startup``), or sixteen (without ``startup`` but with the
progress and GPU fields). Its log carries one marker line per job, so one log file can hold many
jobs.

>>> row = new_row(3); row[STARTED] = 1.0; row[JOB_ID], row[STARTED]
(3, 1.0)
>>> len(full_row(row)) == len(FIELDS) and full_row(row)[PROGRESS_MESSAGE] is None
True
>>> START.match(MARK + job_started(12)).group(1)
'12'
"""

from __future__ import annotations

import math
import operator
import re

FIELDS = ("job_id", "started", "done", "error", "mem_used", "reason", "signal", "max_rss", "cpu_time", "restart",
          "ended", "startup", "progress_at", "progress", "progress_message", "gpu_mem", "gpu_util")
(JOB_ID, STARTED, DONE, ERROR, MEM_USED, REASON, SIGNAL, MAX_RSS, CPU_TIME, RESTART, ENDED, STARTUP, PROGRESS_AT,
 PROGRESS, PROGRESS_MESSAGE, GPU_MEM, GPU_UTIL) = range(len(FIELDS))
LEGACY_LENGTH = 5  # rows of nodes before the evidence fields
BASE_LENGTH = 12  # rows without the progress and GPU fields (a node adds them to a job's row when it has them)
# a node of an earlier branch of this format wrote the progress and GPU fields right after ``ended``
# (16 fields, no startup); full_row puts them in place
NO_STARTUP_EXTRA_LENGTH = STARTUP + len(FIELDS) - BASE_LENGTH
# rows of older nodes: without the evidence, without startup, without startup but with progress
OLDER_LENGTHS = (LEGACY_LENGTH, STARTUP, NO_STARTUP_EXTRA_LENGTH)
LENGTHS = (*OLDER_LENGTHS, BASE_LENGTH, len(FIELDS))
_LENGTHS = frozenset(LENGTHS)
_first = operator.itemgetter(JOB_ID)
# status columns filled from a row: (column, index); NaN / None means "nothing new"
FLOAT_FIELDS = (("started", STARTED), ("done", DONE), ("mem_used", MEM_USED), ("signal", SIGNAL),
                ("max_rss", MAX_RSS), ("cpu_time", CPU_TIME), ("startup", STARTUP))
EXTRA_FLOAT_FIELDS = (("gpu_mem", GPU_MEM), ("gpu_util", GPU_UTIL))
TEXT_FIELDS = (("error", ERROR), ("reason", REASON))
# progress_at, progress and progress_message are applied together, the latest report winning (core.sync)


# a row with this job id speaks for every job of its collection (e.g. the node could not even
# read the collection file, so it does not know the job ids)
ALL_JOBS = -1


# an error message longer than this is cut, ending in TRUNCATED (R: stri_trunc(msg, 500L, " [truncated]")),
# so the status table stays small; the whole traceback is in the job's log
MAX_ERROR = 500
TRUNCATED = " [truncated]"


def error_message(text: str) -> str:
    """A job's error message as the status table keeps it: trimmed, at most ``MAX_ERROR`` characters.

    >>> len(error_message("x" * 600)), error_message("x" * 600)[-12:]
    (500, ' [truncated]')
    """
    text = str(text).strip()
    return text if len(text) <= MAX_ERROR else text[:MAX_ERROR - len(TRUNCATED)] + TRUNCATED


def new_row(job_id: int) -> list:
    """A row of ``job_id`` with nothing new, without the progress and GPU fields (:data:`EXTRA`)."""
    return [job_id, math.nan, math.nan, None, math.nan, None, math.nan, math.nan, math.nan, math.nan, math.nan,
            math.nan]


# the progress and GPU fields, nothing new: appended to a row that gets one of them
EXTRA = (math.nan, math.nan, None, math.nan, math.nan)
_NOTHING = (*new_row(0), *EXTRA)  # every field, nothing new: what pads a short row


def valid_rows(data) -> bool:
    """Whether an update file's content has the shape of a list of rows.

    >>> valid_rows([new_row(1), (2, 1.0, 2.0, None, 5.0)]), valid_rows([new_row(1), [1.5, 1.0, 2.0, None, 5.0]])
    (True, False)
    >>> valid_rows([new_row(1), "row"]), valid_rows([[1]]), valid_rows(new_row(1))
    (False, False, False)
    """
    # one pass per check, each in C (a million rows: ~0.1 s, not ~0.6 s row by row)
    return isinstance(data, list) and all(issubclass(t, (list, tuple)) for t in set(map(type, data))) and \
        set(map(len, data)) <= _LENGTHS and all(issubclass(t, int) for t in set(map(type, map(_first, data))))


def full_row(row, extra: bool = True) -> list:
    """A row with every field (a short row padded with "nothing new"); without ``extra``, every
    field but the progress and GPU fields (for a batch of rows none of which has them).

    >>> old = [7, 1.0, 2.0, None, 5.0, None, 0.0, 9.0, 1.0, 0.0, 2.0, 3.0, 0.5, "half", 10.0, 50.0]
    >>> r = full_row(old); len(r), math.isnan(r[STARTUP]), r[PROGRESS_MESSAGE], r[GPU_UTIL]
    (17, True, 'half', 50.0)
    >>> len(full_row([7, 1.0, 2.0, None, 5.0], extra=False))
    12
    """
    n = len(FIELDS) if extra else BASE_LENGTH
    if len(row) == n:
        return list(row)
    if len(row) == NO_STARTUP_EXTRA_LENGTH:  # progress and GPU fields right after ended: no startup
        return [*row[:STARTUP], math.nan, *row[STARTUP:]]
    return [*row, *_NOTHING[len(row):n]]


MARK = "### [bt]: "


def job_started(job_id: int) -> str:
    return f"Starting job [batchtools job.id={job_id}]"


def job_ended(job_id: int, ok: bool) -> str:
    outcome = "successfully" if ok else "with an exception"
    return f"Job terminated {outcome} [batchtools job.id={job_id}]"


FINISHED = "Calculation finished!"
START = re.compile(r"^### \[bt\]: Starting job \[batchtools job\.id=(\d+)\]$")
JOB_END = re.compile(r"^### \[bt\]: Job terminated (successfully|with an exception) \[batchtools job\.id=(\d+)\]$")
END = MARK + FINISHED
# a line about one job ends with its id (its start and end markers); R's readLog reads them the same way
JOB_LINE = re.compile(r"\[batchtools job\.id=(\d+)\]$")
# the first line a node writes for a job collection (a log may hold several: a requeued run, Interactive)
BANNER = "This is batchtools v"


def log_outcomes(lines) -> dict[int, tuple[bool | None, str | None]]:
    """What a log's markers say of each job's last run in it: job id -> (ok, error), ``ok`` None
    for a run that started and has no end marker (still running, or killed), ``error`` the last
    line of output before a failed run's end marker (the exception, as a traceback ends).

    >>> log_outcomes([MARK + job_started(1), MARK + job_ended(1, True), MARK + job_started(2),
    ...               "Traceback (most recent call last):", "ValueError: six", MARK + job_ended(2, False),
    ...               MARK + job_started(3)])
    {1: (True, None), 2: (False, 'ValueError: six'), 3: (None, None)}
    """
    out: dict[int, tuple[bool | None, str | None]] = {}
    last = None
    for line in lines:
        line = line.rstrip("\n")
        if not line.startswith(MARK):
            if line.strip():
                last = line.strip()
            continue
        m = START.match(line)
        if m:
            out[int(m.group(1))] = (None, None)
            last = None
            continue
        m = JOB_END.match(line)
        if m:
            ok = m.group(1) == "successfully"
            out[int(m.group(2))] = (ok, None if ok else error_message(last or "failed (no message in the log)"))
    return out
