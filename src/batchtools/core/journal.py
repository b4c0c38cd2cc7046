"""The submission journal: what was handed to a backend before the status table says so.

``submit_jobs`` saves the status table every few seconds, not after every chunk (the table of a
million jobs is tens of MB). So that a master killed in between does not forget chunks that were
accepted (their jobs run and report under a hash the saved status does not know), every chunk is
journalled in ``submissions.log`` (one JSON line each, appended and flushed):

    {"intent": HASH, "ids": [...]}                                before the chunk is handed over
    {"hash": HASH, "ids": [...], "submitted": T, "batch_id": ..., "log_file": ..., "resources": {...}}
                                                                  once the backend accepted it
    {"refused": HASH, "ids": []}                                  if it refused it

The journal is emptied once the status holding those chunks is saved. A session that opens the
registry replays what is left (:func:`replay`): accepted chunks are recorded as if the dead
session had saved them; a chunk with an intent but no acceptance may or may not have reached the
backend, so it is recorded as submitted with an unknown batch id (it shows done if it reports, and
expired otherwise).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import numpy as np

from .files import open_append

log = logging.getLogger("batchtools")

UNKNOWN_BATCH = "unknown"


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
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

    def _append(self, record: dict) -> None:
        if self._fh is None:
            self._fh = open_append(self.path)
        self._fh.write(json.dumps(record, default=str) + "\n")
        self._fh.flush()

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
    """Chunks to record: accepted ones, and intents never accepted (with an unknown batch id)."""
    accepted = {r["hash"] for r in records if "hash" in r}
    refused = {r["refused"] for r in records if "refused" in r}
    out = [r for r in records if "hash" in r]
    for r in records:
        if "intent" in r and r["intent"] not in accepted and r["intent"] not in refused:
            out.append({"hash": r["intent"], "ids": r["ids"], "submitted": None, "batch_id": UNKNOWN_BATCH,
                        "log_file": None, "resources": None})
    return out
