"""The submission journal: what was handed to a backend before the status table says so.

``submit_jobs`` saves the status table every few seconds, not after every chunk (the table of a
million jobs is tens of MB). So that a master killed in between does not forget chunks that were
accepted (their jobs run and report under a hash the saved status does not know), every chunk is
journalled in ``submissions.log`` (one JSON line each, appended and flushed):

    {"intent": HASH, "ids": [...]}                                before the chunk is handed over
    {"hash": HASH, "ids": [...], "submitted": T, "batch_id": ..., "log_file": ..., "resources": {...}}
                                                                  once the backend accepted it
    {"refused": HASH, "ids": []}                                  if it refused it

A backend that runs the jobs in the master's own process (Interactive) runs them while it is
handed them: they die with the master, and a line per chunk would cost more than a small job. So
such a submission journals all its chunks at once, before it runs anything, with hashes derived
from one prefix (:func:`chunk_hash`: chunk k of the submission is ``<prefix><k>``), and a line
when the backend's batch id or log file changes:

    {"inprocess": PREFIX, "ids": [...], "submitted": T, "bounds": [...] or None, "resources": [...],
     "res_of": [...] or None}                                     (None: one job per chunk; one resources)
    {"ran": PREFIX, "from": K, "to": K2 or None, "batch_id": ..., "log_file": ..., "ids": []}
    {"refused": HASH, "ids": []}                                  a chunk the backend raised on

The journal is emptied once the status holding those chunks is saved. A session that opens the
registry replays what is left (:func:`batchtools.core.jobstate.recovery.replay_journal`): accepted chunks
are recorded as if the dead session had saved them; a chunk with an intent but no acceptance may
or may not have reached the backend, so it is recorded as submitted with an unknown batch id (it
shows done if it reports, and expired otherwise). A chunk of an in-process submission is
recorded for the jobs its run left evidence of (a packed record or a result file it wrote, a
status update file of its hash): those ran; the others did not start or died with the master.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import numpy as np

from ..persistence.files import named_error, open_append, write_all
from ..results.packs import NAME_PREFIX

log = logging.getLogger("batchtools")

UNKNOWN_BATCH = "unknown"


def inprocess_prefix(submission: str) -> str:
    """The prefix of the hashes of an in-process submission's chunks (and of its packs' names)."""
    return f"job{submission[:NAME_PREFIX - 3]}"


def chunk_hash(prefix: str, k: int) -> str:
    """The hash of chunk ``k`` of the in-process submission ``prefix``.

    >>> chunk_hash(inprocess_prefix("0123456789abcdef01234567ffff"), 10)
    'job0123456789abcdef012345670000000a'
    """
    return f"{prefix}{k:08x}"


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":  # tolist() gives Python numbers already
            return value.tolist()
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


class Journal:
    """``submissions.log`` of one registry (master only)."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._fh = None
        self._size = 0

    def _append(self, record: dict) -> None:
        """Append one line (one ``write``; a line a full disk cut short is cut off again, so the
        next line starts on a line of its own)."""
        if self._fh is None:
            self._fh = open_append(self.path, encoding=None)
            self._size = os.fstat(self._fh.fileno()).st_size
        line = (json.dumps(record, default=str) + "\n").encode()
        fd = self._fh.fileno()
        try:
            write_all(fd, line)
        except OSError as e:
            try:
                os.ftruncate(fd, self._size)
            except OSError:
                pass
            raise named_error(e, self.path) from None
        self._size += len(line)

    def begin(self) -> None:
        """Mark the start of a submission (and find out now, before anything runs, if the disk is full)."""
        self._append({"begin": time.time(), "ids": []})

    def intent(self, job_hash: str, ids: np.ndarray) -> None:
        self._append({"intent": job_hash, "ids": _plain(ids)})

    def accepted(self, job_hash: str, ids: np.ndarray, submitted: float, batch_id: Any, log_file: Any,
                 resources: dict) -> None:
        self._append({"hash": job_hash, "ids": _plain(ids), "submitted": submitted, "batch_id": _plain(batch_id),
                      "log_file": _plain(log_file), "resources": {k: _plain(v) for k, v in resources.items()}})

    def refused(self, job_hash: str) -> None:
        self._append({"refused": job_hash, "ids": []})

    def inprocess(self, prefix: str, ids: np.ndarray, groups: list[tuple[int, int]], submitted: float,
                  resources: list[dict]) -> None:
        """An in-process submission, before it runs anything: chunk k is ``ids[a:b]`` of
        ``groups[k]``, with ``resources[k]``, hash ``chunk_hash(prefix, k)``."""
        distinct: dict[str, int] = {}
        res_of = [distinct.setdefault(json.dumps(_plain(r), sort_keys=True, default=str), len(distinct))
                  for r in resources]
        bounds = [int(a) for a, _ in groups] + [int(groups[-1][1])] if groups else [0]
        # the usual case (Interactive runs each job as a collection of its own, all with the same
        # resources) in a few bytes: None for "one job per chunk" and "the same resources"
        self._append({"inprocess": prefix, "ids": _plain(ids), "submitted": submitted,
                      "bounds": None if bounds == list(range(len(bounds))) else bounds,
                      "resources": [json.loads(r) for r in distinct], "res_of": res_of if len(distinct) > 1 else None})

    def ran(self, prefix: str, k: int, batch_id: Any, log_file: Any, single: bool = False) -> None:
        """Chunks ``k`` on (``single``: chunk ``k`` alone) of the in-process submission ``prefix``
        ran with this batch id and log file."""
        self._append({"ran": prefix, "from": k, "to": k + 1 if single else None, "batch_id": _plain(batch_id),
                      "log_file": _plain(log_file), "ids": []})

    def clear(self) -> None:
        """Empty the journal (the status holding its chunks is saved)."""
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def read(path: str | os.PathLike) -> list[dict]:
    """The journal's records; a line cut short by a crash (or otherwise unreadable) is skipped."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for n, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
            if isinstance(rec, dict) and isinstance(rec.get("ids"), list):
                out.append(rec)
        except ValueError:
            log.warning("%s: line %d is unreadable and skipped (a session died while writing it)", path, n)
    return out


def pending(records: list[dict]) -> list[dict]:
    """Chunks to record: accepted ones, intents never accepted (with an unknown batch id), and the
    jobs of in-process submissions (one record each, with per-job arrays of hashes, batch ids,
    logs and resources, and ``"evidence": True``: only the jobs whose run left evidence count)."""
    accepted = {r["hash"] for r in records if "hash" in r}
    refused = {r["refused"] for r in records if "refused" in r}
    out = [r for r in records if "hash" in r]
    for r in records:
        if "intent" in r and r["intent"] not in accepted and r["intent"] not in refused:
            out.append({"hash": r["intent"], "ids": r["ids"], "submitted": None, "batch_id": UNKNOWN_BATCH,
                        "log_file": None, "resources": None})
        elif "inprocess" in r:
            jobs = _inprocess_jobs(r, [x for x in records if x.get("ran") == r["inprocess"]], refused)
            if jobs is not None:
                out.append(jobs)
    return out


def _inprocess_jobs(rec: dict, ran: list[dict], refused: set[str]) -> dict | None:
    """The jobs of the in-process submission ``rec`` (of chunks not refused), with what ``ran``
    says of their batch ids and logs."""
    try:
        prefix, ids = rec["inprocess"], np.asarray(rec["ids"], dtype=np.int64)
        bounds = np.arange(ids.size + 1) if rec["bounds"] is None else np.asarray(rec["bounds"], dtype=np.int64)
        chunk = np.repeat(np.arange(bounds.size - 1), np.diff(bounds))
        res_of = np.zeros(ids.size, np.int64) if rec["res_of"] is None else np.asarray(rec["res_of"])[chunk]
        if chunk.size != ids.size:
            raise ValueError("bounds do not match ids")
    except (KeyError, TypeError, ValueError) as e:
        log.warning("journal: an in-process submission's record is unreadable and skipped (%s)", e)
        return None
    hashes = np.array([chunk_hash(prefix, k) for k in range(bounds.size - 1)], dtype=object)
    batch = np.full(ids.size, UNKNOWN_BATCH, dtype=object)
    logs = np.full(ids.size, None, dtype=object)
    for x in sorted(ran, key=lambda x: x.get("from", 0)):
        at = (chunk >= x.get("from", 0)) & (chunk < (x.get("to") or hashes.size))
        for values, column in ((x.get("batch_id"), batch), (x.get("log_file"), logs)):
            if not isinstance(values, list):
                column[at] = values
            elif len(values) == int(at.sum()):  # one per job of a chunk
                column[at] = np.array(values, dtype=object)
    keep = ~np.isin(hashes, list(refused))[chunk]
    return {"hash": hashes[chunk][keep], "ids": ids[keep], "submitted": rec.get("submitted"),
            "batch_id": batch[keep], "log_file": logs[keep], "resources": rec.get("resources"),
            "res_of": res_of[keep], "evidence": True}
