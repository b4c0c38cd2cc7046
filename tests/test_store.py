"""The result store's write path: a staged result is invisible until committed, a commit replaces
an older result atomically, and nothing is left behind by a discard or a writer killed mid-way,
with unnamed files (Linux O_TMPFILE) and with the named temporary files used where those fail."""

import errno
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from batchtools.core.results.store import FolderStore


def _store(tmp_path, named: bool) -> FolderStore:
    (tmp_path / "results").mkdir()
    store = FolderStore(tmp_path)
    if named:
        store._unnamed = False
    return store


def _listing(tmp_path) -> list[str]:
    return sorted(os.listdir(tmp_path / "results"))


@pytest.mark.parametrize("named", [False, True], ids=["unnamed", "named"])
def test_staged_results_are_invisible_until_committed_and_replace_older_ones(tmp_path, named):
    store = _store(tmp_path, named)
    token = store.stage(3, {"run": 1})
    assert not store.exists(3) and store.ids().tolist() == []
    store.commit(token)
    assert store.get(3) == {"run": 1}
    token = store.stage(3, {"run": 2})
    assert store.get(3) == {"run": 1}  # the older result stays until the commit
    store.commit(token)
    assert store.get(3) == {"run": 2}
    store.discard(store.stage(4, "never"))
    assert not store.exists(4)
    assert _listing(tmp_path) == ["3.pkl"]  # no temporary file is left behind
    assert oct(os.stat(store.path(3)).st_mode & 0o777) == "0o600"


def test_without_unnamed_files_the_store_falls_back_to_named_temporary_files(tmp_path, monkeypatch):
    store = _store(tmp_path, named=False)
    real_open = os.open

    def no_tmpfile(path, flags, *args, **kwargs):
        if flags & getattr(os, "O_TMPFILE", 0) == getattr(os, "O_TMPFILE", -1):
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")  # as on NFS
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_tmpfile)
    store.put(1, "a")
    store.put(1, "b")
    assert store.get(1) == "b" and not store._unnamed
    assert _listing(tmp_path) == ["1.pkl"]


def test_a_missing_results_folder_is_an_error_not_a_fallback(tmp_path):
    store = FolderStore(tmp_path)  # no results/ folder
    with pytest.raises(FileNotFoundError):
        store.put(1, "x")
    assert store._unnamed == hasattr(os, "O_TMPFILE")


@pytest.mark.parametrize("named", [False, True], ids=["unnamed", "named"])
def test_a_writer_killed_between_stage_and_commit_changes_nothing(tmp_path, named):
    store = _store(tmp_path, named)
    store.put(5, "accepted")
    script = textwrap.dedent(f"""
        import os, sys
        from batchtools.core.results.store import FolderStore
        store = FolderStore({str(tmp_path)!r})
        store._unnamed = {not named}
        token = store.stage(5, "x" * 1_000_000)
        print("staged", flush=True)
        sys.stdin.read()
        store.commit(token)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "staged"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert store.get(5) == "accepted"
    left = [n for n in _listing(tmp_path) if n != "5.pkl"]
    # a named temporary file stays for sweep_registry (it is hidden from readers); an unnamed one vanishes
    assert left == [] if not named else all(n.startswith(".tmp-") for n in left) and len(left) == 1
    assert store.ids().tolist() == [5]


def test_a_forked_child_links_through_its_own_proc_entry(tmp_path):
    store = _store(tmp_path, named=False)
    store.put(1, "parent")  # the parent has opened /proc
    pid = os.fork()
    if pid == 0:
        try:
            store.put(2, "child")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert store.get(2) == "child" and store.get(1) == "parent"
    assert _listing(tmp_path) == ["1.pkl", "2.pkl"]
