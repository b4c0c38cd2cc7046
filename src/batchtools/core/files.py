"""File layout of a registry directory and atomic file writes.

Every write into a registry goes through :func:`atomic_write_bytes`: the data is
written to a temporary file in the same directory and moved into place with
``os.replace``, so a reader never sees half a file and a crash leaves either
the old or the new version.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import cloudpickle

log = logging.getLogger("batchtools")

SUBDIRS = ("jobs", "results", "logs", "updates", "exports", "external", "problems", "algorithms")


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + ``os.replace``)."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    log.debug("wrote %s (%d bytes)", path, len(data))


def write_pickle(path: str | os.PathLike, obj: Any, fsync: bool = False) -> None:
    """Pickle ``obj`` with cloudpickle (so lambdas and closures work) and write it atomically."""
    atomic_write_bytes(path, cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), fsync=fsync)


def read_pickle(path: str | os.PathLike) -> Any:
    with open(path, "rb") as fh:
        return pickle.load(fh)


class Layout:
    """Paths inside one registry directory. Everything is relative to ``file_dir``,
    so a registry stays portable: copy the folder and load it elsewhere."""

    def __init__(self, file_dir: str | os.PathLike):
        self.file_dir = Path(file_dir).absolute()

    def __repr__(self) -> str:
        return f"Layout({str(self.file_dir)!r})"

    @property
    def meta(self) -> Path:
        return self.file_dir / "registry.pkl"

    def table(self, name: str) -> Path:
        return self.file_dir / f"{name}.pkl"

    @property
    def user_function(self) -> Path:
        return self.file_dir / "user_function.pkl"

    @property
    def more_args(self) -> Path:
        return self.file_dir / "more_args.pkl"

    def dir(self, name: str) -> Path:
        return self.file_dir / name

    def result(self, job_id: int) -> Path:
        return self.file_dir / "results" / f"{int(job_id)}.pkl"

    def log(self, job_hash: str) -> Path:
        return self.file_dir / "logs" / f"{job_hash}.log"

    def job_collection(self, job_hash: str) -> Path:
        return self.file_dir / "jobs" / f"{job_hash}.pkl"

    def update(self, job_hash: str, tag: str) -> Path:
        """Status update file of a job collection; ``tag`` keeps array tasks apart."""
        return self.file_dir / "updates" / f"{job_hash}-{tag}.pkl"

    def export(self, name: str) -> Path:
        return self.file_dir / "exports" / f"{name}.pkl"

    def make_dirs(self) -> None:
        self.file_dir.mkdir(parents=True, exist_ok=True)
        for sub in SUBDIRS:
            (self.file_dir / sub).mkdir(exist_ok=True)
