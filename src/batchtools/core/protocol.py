"""What the node and the master agree on: the status update row and the log markers.

A node reports each job as one row ``[job_id, started, done, error, mem_used, reason, signal,
max_rss, cpu_time, restart, ended]`` (times in seconds since the epoch, NaN for "not yet" or
"nothing new"; ``error`` a message or None; ``mem_used`` in MiB, measured with the
``measure_memory`` resource), written in batches to ``updates/<job_hash>-<tag>.pkl`` and merged
by the master's sync. The rest is the evidence of how a run ended: ``reason`` (see
:mod:`.retry`), the ``signal`` that ended it, its peak resident memory ``max_rss`` (MiB) and
``cpu_time`` (seconds), the scheduler's ``restart`` count of the collection (0 unless the
scheduler requeued it, e.g. ``SLURM_RESTART_COUNT``) and when the run ``ended`` (a run that
stopped to go on after a requeue has ``ended`` but no ``done``). Rows of the first five fields
only (an older node) are still read. Its log carries one marker line per job, so one log file
can hold many jobs.

>>> row = new_row(3); row[STARTED] = 1.0; row[JOB_ID], row[STARTED]
(3, 1.0)
>>> START.match(MARK + job_started(12)).group(1)
'12'
"""

from __future__ import annotations

import math
import re

FIELDS = ("job_id", "started", "done", "error", "mem_used", "reason", "signal", "max_rss", "cpu_time", "restart",
          "ended")
JOB_ID, STARTED, DONE, ERROR, MEM_USED, REASON, SIGNAL, MAX_RSS, CPU_TIME, RESTART, ENDED = range(len(FIELDS))
LEGACY_LENGTH = 5  # rows of nodes before the evidence fields
# status columns filled from a row: (column, index); NaN / None means "nothing new"
FLOAT_FIELDS = (("started", STARTED), ("done", DONE), ("mem_used", MEM_USED), ("signal", SIGNAL),
                ("max_rss", MAX_RSS), ("cpu_time", CPU_TIME))
TEXT_FIELDS = (("error", ERROR), ("reason", REASON))


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
    return [job_id, math.nan, math.nan, None, math.nan, None, math.nan, math.nan, math.nan, math.nan, math.nan]


def valid_rows(data) -> bool:
    """Whether an update file's content has the shape of a list of rows."""
    return isinstance(data, list) and all(
        isinstance(r, (list, tuple)) and len(r) in (LEGACY_LENGTH, len(FIELDS)) and isinstance(r[JOB_ID], int)
        for r in data)


def full_row(row) -> list:
    """A row with every field (an older node's short row padded with "nothing new")."""
    return list(row) if len(row) == len(FIELDS) else [*row, *new_row(0)[len(row):]]


MARK = "### [bt]: "


def job_started(job_id: int) -> str:
    return f"Starting job [batchtools job.id={job_id}]"


def job_ended(job_id: int, ok: bool) -> str:
    outcome = "successfully" if ok else "with an exception"
    return f"Job terminated {outcome} [batchtools job.id={job_id}]"


FINISHED = "Calculation finished!"
START = re.compile(r"^### \[bt\]: Starting job \[batchtools job\.id=(\d+)\]$")
END = MARK + FINISHED
# a line about one job ends with its id (its start and end markers); R's readLog reads them the same way
JOB_LINE = re.compile(r"\[batchtools job\.id=(\d+)\]$")
# the first line a node writes for a job collection (a log may hold several: a requeued run, Interactive)
BANNER = "This is batchtools v"
