"""What the node and the master agree on: the status update row and the log markers.

A node reports each job as one row ``[job_id, started, done, error, mem_used]`` (times in
seconds since the epoch, NaN for "not yet"; ``error`` a message or None; ``mem_used`` in MiB),
written in batches to ``updates/<job_hash>-<tag>.pkl`` and merged by the master's sync.
Its log carries one marker line per job, so one log file can hold many jobs.

>>> row = new_row(3); row[STARTED] = 1.0; row[JOB_ID], row[STARTED]
(3, 1.0)
>>> START.match(MARK + job_started(12)).group(1)
'12'
"""

from __future__ import annotations

import math
import re

FIELDS = ("job_id", "started", "done", "error", "mem_used")
JOB_ID, STARTED, DONE, ERROR, MEM_USED = range(len(FIELDS))
# status columns filled from a row: (column, index); NaN / None means "nothing new"
FLOAT_FIELDS = (("started", STARTED), ("done", DONE), ("mem_used", MEM_USED))
TEXT_FIELDS = (("error", ERROR),)


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
    return [job_id, math.nan, math.nan, None, math.nan]


def valid_rows(data) -> bool:
    """Whether an update file's content has the shape of a list of rows."""
    return isinstance(data, list) and all(
        isinstance(r, (list, tuple)) and len(r) == len(FIELDS) and isinstance(r[JOB_ID], int) for r in data)


MARK = "### [bt]: "


def job_started(job_id: int) -> str:
    return f"Starting job [batchtools job.id={job_id}]"


def job_ended(job_id: int, ok: bool) -> str:
    outcome = "successfully" if ok else "with an exception"
    return f"Job terminated {outcome} [batchtools job.id={job_id}]"


FINISHED = "Calculation finished!"
START = re.compile(r"^### \[bt\]: Starting job \[batchtools job\.id=(\d+)\]$")
END = MARK + FINISHED
