"""Transactions: a call that fails leaves the registry's files exactly as they were.

Every registry file a mutating call writes goes through :meth:`Transaction.before_write` first:
the current version is hard-linked into ``.txn/`` (no data copied, no free space needed) and
noted in ``.txn/manifest``. On success the backups are dropped; on failure (or, after a crash,
on the next writeable load: :func:`recover`) every written file is put back with ``os.replace``
or removed if it did not exist, so a multi-file change is all or nothing.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections.abc import Callable

from ..errors import CorruptFileError
from .files import make_dir, named_error, open_append
from .layout import Layout

log = logging.getLogger("batchtools")

MANIFEST = "manifest"
# a line of the manifest: a path relative to the folder, a tab, and the backup's (empty: the file did not exist)
_BACKUP = re.compile(r"^(.*/)?\d+\.bak$")
_DAMAGE = re.compile("[\x00-\x08\x0a-\x1f\x7f\ufffd]")


class Transaction:
    """File-level undo log of one mutating call (see the module docstring)."""

    def __init__(self, file_dir: str | os.PathLike):
        self.root = os.fspath(Layout(file_dir).file_dir)
        self.dir = Layout(file_dir).txn
        self.entries: list[tuple[str, str | None]] = []
        self.after: list[Callable[[], None]] = []
        self.undo: list[Callable[[], None]] = []
        self._manifest = None

    def _open(self) -> None:
        if self._manifest is None:
            make_dir(self.dir)
            self._manifest = open_append(self.dir / MANIFEST)

    def before_write(self, path: str | os.PathLike) -> None:
        """Remember the current version of ``path`` (once per transaction)."""
        path = os.fspath(path)
        if any(p == path for p, _ in self.entries):
            return
        try:
            self._open()
            backup = os.fspath(self.dir / f"{len(self.entries)}.bak")
            try:
                os.link(path, backup)
            except FileNotFoundError:
                backup = None
            self.entries.append((path, backup))
            # relative to the registry folder: a copy of the folder rolls back its own files
            self._manifest.write(f"{os.path.relpath(path, self.root)}\t"
                                 f"{os.path.relpath(backup, self.root) if backup else ''}\n")
            self._manifest.flush()
        except OSError as e:  # e.g. a full disk: name the file the call was about to write
            raise named_error(e, path) from None

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once the transaction committed (e.g. deleting evidence the new state holds)."""
        self.after.append(fn)

    def on_rollback(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` if the transaction is rolled back (undoing something files alone cannot)."""
        self.undo.append(fn)

    def _close(self) -> None:
        if self._manifest is not None:
            try:
                self._manifest.close()
            except OSError:  # a full disk: the manifest is about to be removed anyway
                pass
            self._manifest = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def commit(self) -> None:
        self._close()
        for fn in self.after:
            try:
                fn()
            except OSError as e:  # e.g. removing an already merged update file: harmless
                log.debug("after commit: %s", e)

    def rollback(self) -> None:
        for fn in reversed(self.undo):
            try:
                fn()
            except Exception as e:  # keep undoing the rest
                log.warning("undoing part of a failed change: %s", e)
        _undo(self.entries)
        self._close()


def _undo(entries: list[tuple[str, str | None]]) -> None:
    for path, backup in reversed(entries):
        try:
            if backup:
                os.replace(backup, path)
            else:
                os.unlink(path)
        except FileNotFoundError:
            pass


def _manifest_entries(file_dir: str | os.PathLike, damaged: list[str] | None = None,
                      ) -> list[tuple[str, str | None]] | None:
    """(absolute path, backup or None) of each line of the undo log's manifest, None if there is
    none. Paths are relative to the registry folder; an absolute one (written by an older
    version) counts only inside this folder: a copied undo log never touches the original.
    Lines that are no entry (the file was damaged) are left out and, if ``damaged`` is given,
    added to it; a last line a crash cut short is no damage (the file it was about to name was
    not written yet)."""
    layout = Layout(file_dir)
    try:
        text = (layout.txn / MANIFEST).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    root = os.fspath(layout.file_dir)

    def inside(p: str) -> str | None:
        full = os.path.normpath(os.path.join(root, p))
        return full if full == root or full.startswith(root + os.sep) else None

    lines = text.split("\n")
    torn = lines.pop()  # "" if the manifest ends with a newline, as every whole entry does
    out = []
    for line in lines:
        path, tab, backup = line.partition("\t")
        if not path or not tab or _DAMAGE.search(line) or (backup and not _BACKUP.match(backup)):
            if damaged is not None:
                damaged.append(line)
            continue
        full, saved = inside(path), inside(backup) if backup else None
        if full is None or (backup and saved is None):
            log.warning("%s: ignoring an undo entry for a file outside the registry (%s): the folder was copied "
                        "in the middle of a change", layout.txn / MANIFEST, path)
            continue
        out.append((full, saved))
    if torn and _DAMAGE.search(torn) and damaged is not None:
        damaged.append(torn)
    return out


def committed_versions(file_dir: str | os.PathLike) -> dict[str, str | None]:
    """For a reader: path -> the file holding its last committed version (None: it did not exist)
    of every file an unfinished change (live or crashed) has written so far."""
    out: dict[str, str | None] = {}
    for path, backup in _manifest_entries(file_dir) or ():
        if path not in out:
            out[path] = backup
    return out


def recover(file_dir: str | os.PathLike, damaged: list[str] | None = None) -> bool:
    """Roll back a transaction a crashed session left unfinished; True if there was one.

    A damaged manifest (lines that name no file) cannot say which files the change wrote, so it
    cannot be undone in full: that is a CorruptFileError naming it, and nothing is touched,
    unless a list ``damaged`` is given (``repair_registry``, which then checks the tables against
    each other): the entries it can read are undone, the lines that name no file are added to
    ``damaged``, and the undo log is removed."""
    d = Layout(file_dir).txn
    damaged_ok = damaged is not None
    damaged = [] if damaged is None else damaged
    entries = _manifest_entries(file_dir, damaged)
    if entries is None:
        if d.exists():
            shutil.rmtree(d, ignore_errors=True)
        return False
    if damaged and not damaged_ok:
        raise CorruptFileError(
            f"{d / MANIFEST}: the undo log of a change a session did not finish is damaged ({len(damaged)} "
            f"line(s) name no file), so the change cannot be undone in full and the registry's files may hold "
            f"part of it. Run bt.repair_registry({os.fspath(file_dir)!r}): it undoes what the log still names and "
            "checks the tables against each other")
    _undo(entries)
    shutil.rmtree(d, ignore_errors=True)
    if damaged:
        log.warning("%s: the undo log of an unfinished change was damaged; undid the %d change(s) it still names "
                    "(%d line(s) named no file)", d / MANIFEST, len(entries), len(damaged))
    else:
        log.warning("rolled back an unfinished change to the registry in %s (a session died in the middle of it)",
                    file_dir)
    return True
