"""The writeable-session lease: at most one session may change a registry at a time.

``lease.json`` in the registry folder names the holder: host, pid, the process's start time (so
a reused pid is not mistaken for the holder), a session id, when the lease was taken, and the
folder it was taken for (its path, device and inode). The holder touches the file every
:data:`BEAT` seconds from a background thread. A lease counts as alive while its holder process
exists (same host: checked directly) or, for a holder on another host, while the file was
touched within :data:`TIMEOUT` seconds (measured against the file server's clock, so the hosts'
clocks need not agree), and only for the folder it names: a copy of a registry (``cp -a``,
``rsync``) is a new folder, whose copied lease holds nothing (the same folder seen from another
host of a shared file system has the same inode). Taking a lease is atomic on NFS too: the
new lease is written to a private file and hard-linked into place (``link`` fails if the name
exists); a dead holder's lease is first claimed by hard-linking it to a name derived from its
session, which only one taker can do, and then removed.
"""

from __future__ import annotations

import atexit
import errno
import json
import logging
import os
import socket
import threading
import time
import uuid
import weakref
from pathlib import Path

from .errors import LeaseError, ReadOnlyRegistryError

log = logging.getLogger("batchtools")

BEAT = 10.0
TIMEOUT = 60.0
FILE = "lease.json"


def _process_start(pid: int) -> float | None:
    try:
        import psutil

        return round(psutil.Process(pid).create_time(), 2)
    except Exception:
        return None


def _fs_now(directory: Path) -> float:
    probe = directory / f".clock-{uuid.uuid4().hex[:8]}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return os.stat(probe).st_mtime
    except OSError:
        return time.time()
    finally:
        try:
            os.unlink(probe)
        except OSError:
            pass


def describe(info: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("taken", 0)))
    return f"pid {info.get('pid')} on host {info.get('host')!r} (since {started})"


def read_lease(file_dir: str | os.PathLike) -> dict | None:
    """The current lease (with its file's age), or None."""
    path = Path(file_dir) / FILE
    try:
        info = json.loads(path.read_text())
        info["mtime"] = os.stat(path).st_mtime
        return info
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"host": "?", "pid": None, "session": None, "taken": 0, "mtime": 0.0, "corrupt": True}


def _folder_id(file_dir: str | os.PathLike) -> dict:
    st = os.stat(file_dir)
    return {"dir": os.path.realpath(file_dir), "dev": st.st_dev, "ino": st.st_ino}


def same_folder(file_dir: str | os.PathLike, info: dict) -> bool:
    """Whether the lease ``info`` was taken for the folder ``file_dir`` (not for the folder it was
    copied from). Same host: the same device and inode; another host (a shared file system: its
    device numbers differ): the same inode. A lease of a version that did not name its folder
    counts as this folder's."""
    if "ino" not in info:
        return True
    try:
        here = _folder_id(file_dir)
    except OSError:
        return True
    if info.get("host") == socket.gethostname():
        return (info.get("dev"), info.get("ino")) == (here["dev"], here["ino"])
    return info.get("ino") == here["ino"]


def holder_alive(file_dir: str | os.PathLike, info: dict) -> bool:
    """Whether the session named by ``info`` still runs and holds this folder (see the module docstring)."""
    if info.get("corrupt") or not same_folder(file_dir, info):
        return False
    if info.get("host") == socket.gethostname():
        pid = info.get("pid")
        if not isinstance(pid, int):
            return False
        start = _process_start(pid)
        return start is not None and (info.get("pid_start") is None or abs(start - info["pid_start"]) < 1.0)
    return _fs_now(Path(file_dir)) - info.get("mtime", 0.0) < TIMEOUT


class Lease:
    """This session's lease on one registry folder."""

    _beating: weakref.WeakSet = weakref.WeakSet()
    _thread: threading.Thread | None = None
    _lock = threading.Lock()

    def __init__(self, file_dir: str | os.PathLike):
        self.dir = Path(file_dir)
        self.path = self.dir / FILE
        self.session = uuid.uuid4().hex
        self.info = {"host": socket.gethostname(), "pid": os.getpid(), "pid_start": _process_start(os.getpid()),
                     "session": self.session, "taken": time.time()}
        self.lost = False

    def acquire(self, force: bool = False) -> None:
        """Take the lease; LeaseError naming the holder if a live session holds it (unless ``force``),
        ReadOnlyRegistryError if the folder cannot be written."""
        try:
            self.info.update(_folder_id(self.dir))
            self._acquire(force)
        except OSError as e:
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS) or isinstance(e, ReadOnlyRegistryError):
                raise
            why = "the file system is read-only" if e.errno == errno.EROFS else "you may not write there"
            raise ReadOnlyRegistryError(
                f"the registry at {self.dir} cannot be opened for writing: {why} ({e.strerror}). Load it read-only "
                f"(load_registry({str(self.dir)!r}), the default) to look at it, or copy the folder to one you can "
                "write to") from None

    def _acquire(self, force: bool) -> None:
        for _ in range(5):
            current = read_lease(self.dir)
            if current is not None:
                same_process = (current.get("host") == self.info["host"] and current.get("pid") == self.info["pid"])
                if not (same_process or force or not holder_alive(self.dir, current)):
                    raise LeaseError(
                        f"the registry at {self.dir} is open for writing in another session: "
                        f"{describe(current)}. Open it read-only (the default), end that session, or take it over "
                        f"with load_registry({str(self.dir)!r}, writeable=True, force=True), which turns the "
                        "other session read-only.")
                if not same_process:
                    if not same_folder(self.dir, current):
                        why = f"it was taken for {current.get('dir')} (this folder is a copy of that one)"
                    elif force and holder_alive(self.dir, current):
                        why = "taking it over (force=True)"
                    else:
                        why = "its session is gone"
                    log.warning("registry %s: the writeable lease of %s is taken over: %s", self.dir,
                                describe(current), why)
                # only one taker can claim a given old lease (link fails if the claim exists)
                claim = self.dir / f".lease-claim-{current.get('session')}"
                try:
                    os.link(self.path, claim)
                except FileNotFoundError:
                    continue
                except FileExistsError:  # another taker is at it, or one died at it long ago
                    try:
                        if time.time() - os.stat(claim).st_ctime > 30:
                            os.unlink(claim)
                    except FileNotFoundError:
                        pass
                    time.sleep(0.05)
                    continue
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                self._claim = claim
            tmp = self.dir / f".lease-new-{self.session}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            with open(fd, "w") as fh:
                fh.write(json.dumps(self.info))
            try:
                os.link(tmp, self.path)
                return self._start()
            except FileExistsError:
                continue  # someone else was faster: look again
            finally:
                for leftover in (tmp, getattr(self, "_claim", None)):
                    try:
                        if leftover is not None:
                            os.unlink(leftover)
                    except FileNotFoundError:
                        pass
                self._claim = None
        raise LeaseError(f"could not take the writeable lease of {self.dir}: other sessions keep taking it")

    def _start(self) -> None:
        with Lease._lock:
            Lease._beating.add(self)
            if Lease._thread is None:
                atexit.register(Lease._release_all)
            if Lease._thread is None or not Lease._thread.is_alive():
                Lease._thread = threading.Thread(target=Lease._beat_all, name="batchtools-lease", daemon=True)
                Lease._thread.start()

    @staticmethod
    def _release_all() -> None:
        for lease in list(Lease._beating):
            lease.release()

    @staticmethod
    def _beat_all() -> None:
        while True:
            time.sleep(BEAT)
            for lease in list(Lease._beating):
                lease.beat()

    def beat(self) -> None:
        if self.lost:
            return
        try:
            os.utime(self.path)
        except OSError:
            pass

    def check(self) -> None:
        """LeaseError if another session took the lease meanwhile (this session is then read-only)."""
        if self.lost:
            raise LeaseError(f"this session lost the writeable lease of {self.dir}; it is read-only now")
        current = read_lease(self.dir)
        if current is None or current.get("session") != self.session:
            self.lost = True
            Lease._beating.discard(self)
            holder = f" to {describe(current)}" if current else ""
            raise LeaseError(f"this session lost the writeable lease of {self.dir}{holder}; it is read-only now. "
                             f"Load the registry again with writeable=True to change it from here.")

    def release(self) -> None:
        """Give the lease up (if this session still holds it)."""
        Lease._beating.discard(self)
        if self.lost:
            return
        self.lost = True
        current = read_lease(self.dir)
        if current is not None and current.get("session") == self.session:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
