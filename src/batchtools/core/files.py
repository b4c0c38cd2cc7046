"""Atomic file writes and pickles: the one door every registry write goes through.

The data is written to a temporary file in the same directory and moved into place with
``os.replace``, so a reader never sees half a file and a crash leaves either the old or the
new version. Paths come from :class:`~batchtools.core.layout.Layout`.
"""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
from typing import Any

import cloudpickle

log = logging.getLogger("batchtools")


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


def dumps(obj: Any) -> bytes:
    """Pickle ``obj``: plain pickle where it can (fast), cloudpickle for lambdas and local classes."""
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def unlink_quietly(paths) -> int:
    """Remove the files that exist among ``paths``; the number removed."""
    n = 0
    for p in paths:
        try:
            os.unlink(p)
            n += 1
        except FileNotFoundError:
            pass
    return n
