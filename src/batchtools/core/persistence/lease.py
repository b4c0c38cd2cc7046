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
import contextlib
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

from ..errors import LeaseError, ReadOnlyRegistryError

log = logging.getLogger("batchtools")

BEAT = 10.0
TIMEOUT = 60.0
REREAD = 1.0  # a session holding the lease reads it at least this often (else one stat per check)
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
        self.taken_by: str | None = None  # who took the lease from this session, once it noticed
        self._file: tuple[int, int] | None = None  # (device, inode) of the lease file this session wrote
        self._holder: dict | None = None  # the lease found when this session saw it was not its own
        self.took_over_live = False  # taken with force=True from a session that still runs
        self._read_at = time.monotonic()  # when this session last read the lease file itself

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
                    self.took_over_live = bool(force and same_folder(self.dir, current)
                                               and holder_alive(self.dir, current))
                    if not same_folder(self.dir, current):
                        why = f"it was taken for {current.get('dir')} (this folder is a copy of that one)"
                    elif self.took_over_live:
                        why = "force=True; that session still runs and stops before it hands the backend more jobs"
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
                st = os.stat(tmp)
                self._file = (st.st_dev, st.st_ino)
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
        if self.lost or not self._held():  # never touch the lease of the session that took it
            return
        try:
            os.utime(self.path)
        except OSError:
            pass

    def _held(self) -> bool:
        """Whether ``lease.json`` is still this session's: one ``stat`` (a take-over replaces the file
        by a new one, made while the old one is still linked elsewhere, so the new one never has the
        old one's inode); the file's session id if its inode changed, and at least every
        :data:`REREAD` seconds (opening a file revalidates what an NFS client cached about its name;
        a ``stat`` may answer from that cache for up to a minute)."""
        now = time.monotonic()
        try:
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._file and now - self._read_at < REREAD:
                return True
        except OSError:
            pass
        self._read_at = now
        current = read_lease(self.dir)
        if current is not None and current.get("session") == self.session:
            with contextlib.suppress(OSError):  # a file system whose inode numbers are not stable
                st = os.stat(self.path)
                self._file = (st.st_dev, st.st_ino)
            return True
        self._holder = current
        return False

    def check(self) -> None:
        """LeaseError if another session took the lease meanwhile (this session is then read-only).
        Cheap enough to call before every hand-over to a backend: one ``stat`` while the lease is held."""
        if not self.lost:
            if self._held():
                return
            self.lost = True
            Lease._beating.discard(self)
            current = self._holder
            self.taken_by = f"the lease was taken by {describe(current)}" if current else \
                f"its lease file {self.path} is gone (another session took the lease and ended, or it was deleted)"
        raise LeaseError(self.lost_message())

    def lost_message(self) -> str:
        why = self.taken_by or "it gave the lease up"
        return (f"this session lost the writeable lease of {self.dir}: {why}; it is read-only now. "
                "Load the registry again with writeable=True to change it from here.")

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
