"""The node's side of status reporting: rows (see :mod:`batchtools.core.contract.protocol`) collected per
job and written in batches to ``updates/`` (or handed to the master in memory when it runs the
jobs itself)."""

from __future__ import annotations

import pickle
import threading
import uuid

from ..core.contract.protocol import BASE_LENGTH, EXTRA, FIELDS, error_message, new_row
from ..core.persistence.files import atomic_write_bytes
from ..core.persistence.layout import Layout

_INDEX = {name: i for i, name in enumerate(FIELDS)}
_ERROR = _INDEX["error"]


class UpdateBuffer:
    """Collects status rows and writes them to ``updates/<hash>-<tag>-<n>.pkl``. With
    ``interval`` a background thread flushes every ``interval`` seconds, so the master sees
    jobs start while they run; with ``sink`` (a list) rows go there instead of to files."""

    def __init__(self, layout: Layout, job_hash: str, interval: float | None = None, sink: list | None = None):
        self.layout = layout
        self.sink = sink
        self.job_hash = job_hash
        self.tag = ""
        self.rows: dict[int, list] = {}
        self.seq = 0
        self.lock = threading.Lock()
        self._stop = None
        self._thread = None
        if interval:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._loop, args=(interval,), daemon=True)
            self._thread.start()

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.flush()

    def set(self, job_id: int, **fields) -> None:
        """Record what is new about ``job_id``: ``started``, ``done``, ``error``, ``mem_used`` and
        the evidence fields of :mod:`batchtools.core.contract.protocol` (None or NaN: nothing new)."""
        with self.lock:
            row = self.rows.get(job_id)
            if row is None:
                row = self.rows[job_id] = new_row(job_id)
            if fields.get("error") is not None:
                fields["error"] = error_message(fields["error"])
            for name, v in fields.items():
                if v is not None and v == v:
                    i = _INDEX[name]
                    if i >= BASE_LENGTH and len(row) == BASE_LENGTH:  # progress, GPU: only in rows that carry one
                        row.extend(EXTRA)
                    row[i] = v

    def flush(self) -> None:
        with self.lock:
            if not self.rows:
                return
            data = list(self.rows.values())
            if self.sink is not None:  # in-process run: hand rows to the master directly
                self.sink.append((self.job_hash, data))
                self.rows.clear()
                if any(r[_ERROR] is not None for r in data):
                    # a failed job leaves no result: its row is its only evidence should the master
                    # die before it saves the status (the rows of the others are their results)
                    try:
                        self._write(data)
                    except OSError:
                        pass  # a full disk: the job counts as not run, and runs again
                return
            self._write(data)
            self.rows.clear()

    def _write(self, data: list) -> None:
        if not self.tag:
            self.tag = uuid.uuid4().hex[:8]
        path = self.layout.update(self.job_hash, f"{self.tag}-{self.seq}")
        atomic_write_bytes(path, pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
        self.seq += 1

    def close(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        self.flush()
