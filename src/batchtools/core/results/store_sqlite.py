"""A result store that is not a folder of files: one SQLite database, ``results/results.sqlite``.

Many small results in one file instead of one file each: fewer inodes, a registry that copies
fast. Each commit is one SQLite transaction (atomic), concurrent writers wait for each other.
SQLite's locks need a local file system: use it with backends that run jobs on this machine
(Interactive, Multicore, Socket, a single-node scheduler), not over NFS.

>>> import batchtools as bt
>>> reg = bt.make_registry(file_dir=None)
>>> reg.store = bt.SQLiteStore(reg.file_dir)
>>> reg.cluster_functions = bt.make_cluster_functions_interactive()
>>> _ = bt.batch_map(lambda x: x * 2, x=[1, 2]); _ = bt.submit_jobs()
>>> bt.reduce_results_list()
[2, 4]
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import threading
import time
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import CorruptFileError, ResultNotFoundError
from .store import ResultStore, decompress

_SCHEMA = "CREATE TABLE IF NOT EXISTS results (job_id INTEGER PRIMARY KEY, data BLOB NOT NULL, modified REAL NOT NULL)"
_BATCH = 500  # ids per query (SQLite allows 999 parameters in older versions)


class SQLiteStore(ResultStore):
    """Results as rows of ``results/results.sqlite`` (pickled, compressed as ``compress`` says).

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); os.mkdir(os.path.join(d, "results"))
    >>> store = SQLiteStore(d)
    >>> store.put(2, {"x": 1}); store.get(2), store.exists(3), store.ids().tolist()
    ({'x': 1}, False, [2])
    """

    compresses = True

    def __init__(self, file_dir: str | os.PathLike, compress: str | None = None):
        super().__init__(file_dir, compress)
        self.path = os.fspath(self.layout.dir("results") / "results.sqlite")
        self._local = threading.local()  # one connection per thread and process

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    def _db(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid():  # a forked child opens its own connection
            conn = sqlite3.connect(self.path, timeout=600, isolation_level=None, check_same_thread=False)
            conn.execute(_SCHEMA)
            local.conn, local.pid = conn, os.getpid()
        return local.conn

    def _rows(self, sql: str, ids: list[int]) -> list[tuple]:
        out = []
        for a in range(0, len(ids), _BATCH):
            part = ids[a:a + _BATCH]
            out.extend(self._db().execute(sql.format(",".join("?" * len(part))), part).fetchall())
        return out

    def stage(self, job_id: int, value: Any) -> tuple[int, bytes]:
        return int(job_id), self.encode(value)

    def commit(self, token: tuple[int, bytes]) -> None:
        self._db().execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?)", (*token, time.time()))

    def discard(self, token: tuple[int, bytes]) -> None:
        pass  # nothing was written

    def raw(self, job_id: int) -> bytes:
        row = self._db().execute("SELECT data FROM results WHERE job_id = ?", (int(job_id),)).fetchone()
        if row is None:
            raise ResultNotFoundError(f"{self.path}: job {int(job_id)} has no result")
        return row[0]

    def put_raw(self, job_id: int, data: bytes) -> None:
        self.commit((int(job_id), data))

    def _decode(self, job_id: int, data: bytes) -> Any:
        try:
            return pickle.loads(decompress(data))
        except Exception as e:
            raise CorruptFileError(f"{self.path}: the result of job {job_id} cannot be read ({type(e).__name__}: "
                                   f"{e}). Run the job again: reset_jobs([{job_id}]) and submit_jobs([{job_id}])") from e

    def get(self, job_id: int) -> Any:
        return self._decode(int(job_id), self.raw(job_id))

    def get_many(self, job_ids: Iterable[int]) -> list[Any]:
        ids = [int(i) for i in job_ids]
        found = dict(self._rows("SELECT job_id, data FROM results WHERE job_id IN ({})", sorted(set(ids))))
        missing = [i for i in ids if i not in found]
        if missing:
            raise ResultNotFoundError(f"{self.path}: job {missing[0]} has no result"
                                      + (f" (nor have {len(missing) - 1} more)" if len(missing) > 1 else ""))
        return [self._decode(i, found[i]) for i in ids]

    def delete(self, job_ids: Iterable[int]) -> int:
        ids = [int(i) for i in job_ids]
        gone = 0
        for a in range(0, len(ids), _BATCH):
            part = ids[a:a + _BATCH]
            gone += self._db().execute(f"DELETE FROM results WHERE job_id IN ({','.join('?' * len(part))})",
                                       part).rowcount
        return gone

    def exists(self, job_id: int) -> bool:
        return self._db().execute("SELECT 1 FROM results WHERE job_id = ?", (int(job_id),)).fetchone() is not None

    def ids(self) -> np.ndarray:
        rows = self._db().execute("SELECT job_id FROM results ORDER BY job_id").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def modified(self, job_id: int) -> float | None:
        return self.modified_many([job_id])[0]

    def modified_many(self, job_ids: Iterable[int]) -> list[float | None]:
        ids = [int(i) for i in job_ids]
        found = dict(self._rows("SELECT job_id, modified FROM results WHERE job_id IN ({})", sorted(set(ids))))
        return [found.get(i) for i in ids]
