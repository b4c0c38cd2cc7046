"""Atomic file writes and pickles: the one door every registry write goes through.

The data is written to a temporary file in the same directory and moved into place with
``os.replace`` (results: into a file without a name, then named; :func:`write_unnamed`), so a
reader never sees half a file and a crash leaves either the old or the new version. Paths come from :class:`~batchtools.core.persistence.layout.Layout`.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gc
import logging
import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle

from ..errors import CorruptFileError

log = logging.getLogger("batchtools")

_HINT = {28: "free some space (or move the registry) and retry",
         13: "check the permissions of the registry folder",
         30: "the file system is read-only; load the registry read-only or move it"}


def named_error(e: OSError, path: str) -> OSError:
    """``e`` with the file named and, for the usual causes, what to do."""
    if e.filename is not None or e.errno is None:
        return e
    hint = _HINT.get(e.errno)
    return type(e)(e.errno, f"{e.strerror}{'; ' + hint if hint else ''}", path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes, fsync: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + ``os.replace``)."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    except OSError as e:
        raise named_error(e, path) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise named_error(e, path) from None
        raise
    log.debug("wrote %s (%d bytes)", path, len(data))


def keep_previous(path: str | os.PathLike) -> None:
    """Keep the current version of ``path`` as ``<path>.prev`` (a hard link: no data copied), the
    fallback of ``repair_registry`` should the file ever be unreadable."""
    path = os.fspath(path)
    prev = path + ".prev"
    try:
        os.unlink(prev)
    except FileNotFoundError:
        pass
    try:
        os.link(path, prev)
    except FileNotFoundError:
        pass
    except OSError as e:  # a file system without hard links: no fallback copy, not an error
        log.debug("cannot keep %s: %s", prev, e)


def untrusted(path: str | os.PathLike) -> str | None:
    """Why ``path`` may have been written by someone else (not owned by this user or root, or
    group/world-writable), or None if it is this user's own file."""
    try:
        st = os.stat(path)
    except OSError as e:
        return f"cannot be inspected ({e.strerror})"
    if st.st_uid not in (os.getuid(), 0):
        return f"is owned by another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return "is writable by other users (group or world)"
    return None


def writable_by_others(file_dir: str | os.PathLike) -> list[str]:
    """Entries of a registry folder that any user may change (its folders, and the files next to
    its tables): whoever can change them can make this user's session run their code.

    Checked: every entry of the folder itself, the sub-folders of its folders, and below those the
    folders of ``pool/queue``, ``pool/workers`` and ``external/cache``. A folder whose link count
    says it has no sub-folders (``st_nlink == 2``) is not listed, so ``results/`` with a million
    files costs one ``stat``.
    """
    out = []
    root = os.fspath(file_dir)

    def exposed(path: str, st: os.stat_result) -> None:
        if st.st_mode & 0o002:
            out.append(path)

    def subdirs(path: str) -> list[os.DirEntry]:
        try:
            if os.lstat(path).st_nlink == 2:  # just "." and "..": no sub-folder (ext4, xfs, tmpfs, NFS)
                return []
            with os.scandir(path) as it:
                return [e for e in it if e.is_dir(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def below(path: str) -> None:
        for e in subdirs(path):
            try:
                exposed(e.path, e.stat(follow_symlinks=False))
            except FileNotFoundError:
                continue
            if e.name in ("queue", "workers", "cache"):
                below(e.path)

    try:
        exposed(root, os.lstat(root))
        with os.scandir(root) as it:
            entries = list(it)
    except FileNotFoundError:
        return out
    for e in entries:
        try:
            exposed(e.path, e.stat(follow_symlinks=False))
            if e.is_dir(follow_symlinks=False):
                below(e.path)
        except FileNotFoundError:
            continue
    return out


def user_path(path: str | os.PathLike) -> Path:
    """A path as a user gives it, with a leading ``~`` expanded (every path argument is taken so).

    >>> str(user_path("~/reg")) == os.path.join(os.path.expanduser("~"), "reg")
    True
    """
    return Path(os.fspath(path)).expanduser()


def make_dir(path: str | os.PathLike) -> None:
    """Create a registry folder (and its parents): never world-writable, whatever the umask."""
    os.makedirs(path, mode=0o775, exist_ok=True)


def open_append(path: str | os.PathLike, encoding: str | None = "utf-8"):
    """Open a registry file for appending, creating it never world-writable, whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o664)
    return open(fd, "a", encoding=encoding, errors="replace") if encoding else open(fd, "ab")


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the file descriptor ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_new(path: str, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to the new file ``path`` (FileExistsError if it exists); a failed write
    leaves no file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            write_all(fd, data)
        finally:
            os.close(fd)
    except BaseException:
        unlink_quietly([path])
        raise


# file systems whose clients may hold back appended data from other clients until the writer
# closes the file (close-to-open consistency): results are not packed there
NETWORK_FS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "fuse.sshfs", "davfs"})


@functools.lru_cache(maxsize=1)
def _mounts() -> tuple[tuple[str, str], ...]:
    """(mount point, file system type) of this process's mounts, longest mount point first."""
    out = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) > 4 and right:
                    out.append((fields[4].replace("\\040", " "), right.split()[0]))
    except OSError:
        pass
    return tuple(sorted(out, key=lambda m: len(m[0]), reverse=True))


@functools.lru_cache(maxsize=64)
def file_system_type(path: str) -> str | None:
    """The type of the file system ``path`` is on (``ext4``, ``nfs4``, ...), None if unknown."""
    real = os.path.realpath(path)
    for mount, kind in _mounts():
        if real == mount or real.startswith(mount.rstrip("/") + "/"):
            return kind
    return None


_PROC: list[int] = []  # a descriptor of /proc, to name unnamed files through /proc/self/fd


def _proc_dir() -> int:
    if not _PROC:
        _PROC.append(os.open("/proc", os.O_RDONLY | os.O_DIRECTORY))
    return _PROC[0]


if hasattr(os, "register_at_fork"):  # a forked child opens its own
    os.register_at_fork(after_in_child=_PROC.clear)


def write_unnamed(directory: str, data: bytes) -> int | None:
    """Write ``data`` into a new file without a name in ``directory`` (Linux ``O_TMPFILE``); its
    descriptor, or None where the file system has none (NFS, other systems). No reader sees it
    until :func:`link_unnamed` names it, and a writer killed before leaves nothing behind: the same
    guarantee as a temporary name and a rename, with one directory change instead of two.
    FileNotFoundError if ``directory`` does not exist."""
    if not hasattr(os, "O_TMPFILE"):
        return None
    try:
        fd = os.open(directory, os.O_WRONLY | os.O_TMPFILE, 0o600)
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise
        return None
    try:
        write_all(fd, data)
    except BaseException:
        os.close(fd)
        raise
    return fd


def link_unnamed(fd: int, path: str) -> bool:
    """Give the file of :func:`write_unnamed` the name ``path`` (the caller still closes ``fd``).
    FileExistsError if ``path`` exists; False where there is no ``/proc`` to link through."""
    try:
        os.link(f"self/fd/{fd}", path, src_dir_fd=_proc_dir(), follow_symlinks=True)
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.EACCES) \
                or not os.path.isdir(os.path.dirname(path)):
            raise
        return False
    return True


@contextlib.contextmanager
def bulk_objects() -> Iterator[None]:
    """No cyclic garbage collection while a block builds many small objects without cycles (job
    specs, status rows read from update files and their columns): the collector runs once per
    700 new containers and made building a million of them 2-2.5 times slower. Objects are freed
    by reference counting meanwhile; cyclic garbage waits for the next collection."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def cloud_dumps(obj: Any) -> bytes:
    """Pickle ``obj`` with cloudpickle: functions of ``__main__``, lambdas and closures by value."""
    return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def write_pickle(path: str | os.PathLike, obj: Any, fsync: bool = False) -> None:
    """Pickle ``obj`` with cloudpickle (so lambdas and closures work) and write it atomically."""
    atomic_write_bytes(path, cloud_dumps(obj), fsync=fsync)


def file_identity(path: str | os.PathLike) -> tuple[int, int, int, int] | None:
    """Which version of the file at ``path`` is there now: (device, inode, size, mtime in ns), None
    if there is none. Every registry file is replaced whole (a new inode), so another version has
    another identity. Taken by opening the file: an NFS client checks an opened name with the server
    (close-to-open consistency), a ``stat`` it may answer from its cache."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def read_pickle(path: str | os.PathLike) -> Any:
    with open(path, "rb") as fh:
        return pickle.load(fh)


def table_error(path: str | os.PathLike, name: str, problem: str, file_dir: str | os.PathLike | None = None,
                ) -> CorruptFileError:
    """The error for a registry file that cannot be used (``problem``: "cannot be read (...)",
    "is missing"), naming it and the way out. ``file_dir``: the registry's folder (default: the
    file's own)."""
    file_dir = os.fspath(file_dir) if file_dir is not None else os.path.dirname(os.fspath(path))
    return CorruptFileError(
        f"{path}: the registry's {name} table {problem}. Rebuild the registry's state from the previous version "
        f"and the results, logs and status files on disk with bt.repair_registry({file_dir!r}), or put the "
        "file back (e.g. from the copy the registry came from)")


def read_table(path: str | os.PathLike, name: str, file_dir: str | os.PathLike | None = None) -> Any:
    """A registry table (as pickled: see :func:`~batchtools.core.persistence.tables.read_frame`); an
    unreadable one raises CorruptFileError naming it and the way out."""
    try:
        return read_pickle(path)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise table_error(path, name, f"cannot be read ({type(e).__name__}: {e})", file_dir) from e


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
