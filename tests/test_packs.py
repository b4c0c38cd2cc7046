"""Result packs: a collection of many jobs appends its small results to one file. Which record
counts is decided by the status table's job hash: a reset or a resubmission retires the old
records, a stale run cannot replace the accepted result, and a torn or damaged record hides no
other job's result."""

import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import batchtools as bt
from batchtools.core.errors import CorruptFileError
from batchtools.core.results.packs import HEADER, PACK_LIMIT, PackIndex, PackWriter
from batchtools.core.results.store import FolderStore, PackedStore


def echo(x):
    return x


def big(x):
    return bytes(PACK_LIMIT + x)


def _chunked(reg, ids=None, n_chunks=1):
    tab = bt.find_jobs(ids=ids, reg=reg)
    tab["chunk"] = bt.chunk(tab["job_id"], n_chunks=n_chunks, shuffle=False)
    return tab


@pytest.fixture
def reg(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "reg", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    yield reg


def _packs(reg) -> list[str]:
    return sorted(os.listdir(reg.file_dir / "packs"))


def test_a_chunk_writes_one_pack_and_large_results_their_own_file(reg):
    bt.batch_map(echo, x=range(1, 101))
    bt.submit_jobs(_chunked(reg, n_chunks=4))
    assert bt.get_status().done == 100
    # Interactive runs the chunks in this process, one after another: they share one pack
    assert len(_packs(reg)) == 1 and os.listdir(reg.file_dir / "results") == []
    assert bt.reduce_results_list() == list(range(1, 101))
    assert bt.load_result(7) == 7 and reg.store.exists(7) and reg.store.ids().tolist() == list(range(1, 101))
    assert abs(reg.store.modified(7) - bt.get_job_table(7)["done"].iloc[0].timestamp()) < 5
    # a result above the pack limit gets its own file, next to the packed ones
    bt.batch_map(big, x=[1, 2], reg=bt.make_registry(file_dir=reg.file_dir.parent / "big", seed=1, conf_file=None))
    other = bt.get_default_registry()
    other.cluster_functions = bt.make_cluster_functions_interactive()
    bt.submit_jobs(_chunked(other))
    assert sorted(os.listdir(other.file_dir / "results")) == ["1.pkl", "2.pkl"]
    assert [len(r) for r in bt.reduce_results_list()] == [PACK_LIMIT + 1, PACK_LIMIT + 2]


def test_reset_and_resubmission_retire_old_records_and_sweep_removes_dead_packs(reg):
    bt.batch_map(echo, x=range(10))
    bt.submit_jobs(_chunked(reg))
    old = _packs(reg)
    bt.reset_jobs([1, 2])
    assert not reg.store.exists(1) and reg.store.ids().tolist() == list(range(3, 11))
    with pytest.raises(FileNotFoundError):
        reg.store.get(1)
    assert bt.reduce_results_list() == list(range(2, 10))
    bt.submit_jobs(_chunked(reg, [1, 2]))
    assert bt.reduce_results_list() == list(range(10))
    assert bt.sweep_registry()["packs"] == 0  # jobs 3-10 still count on the first pack
    bt.reset_jobs(list(range(3, 11)))
    assert bt.sweep_registry()["packs"] == 1 and old[0] not in _packs(reg)
    assert bt.reduce_results_list() == [0, 1]
    # another session (and a node reading this registry) decides by the saved status table
    ro = bt.load_registry(reg.file_dir)
    assert ro.store.ids().tolist() == [1, 2]
    plain = FolderStore(reg.file_dir)
    assert plain.ids().tolist() == [1, 2] and plain.get(2) == 1 and not plain.exists(3)


def test_a_stale_run_cannot_replace_the_accepted_result(reg):
    bt.batch_map(echo, x=["a", "b"])
    bt.submit_jobs(_chunked(reg))
    stale_hash = bt.get_job_table(1)["job_hash"].iloc[0]
    bt.reset_jobs([1])
    bt.submit_jobs(_chunked(reg, [1]))
    # the superseded run (its collection was reset) finishes late and appends a result
    late = FolderStore(reg.file_dir).packed(stale_hash)
    late.put(1, "stale")
    late.close()
    assert bt.load_result(1) == "a" and bt.reduce_results_list() == ["a", "b"]


def test_a_restarted_collection_sees_only_its_own_records(tmp_path):
    store = FolderStore(tmp_path)
    first = store.packed("h1")
    first.put(1, "one")
    first.close()
    again = store.packed("h1")  # a requeued run of the same collection
    other = store.packed("h2")
    assert again.exists(1) and not again.exists(2) and not other.exists(1)
    again.put(1, "again")  # both are results of the same job spec: the last one counts
    again.close()
    assert store.get(1) == "again" and store.ids().tolist() == [1]  # no status table: any record counts
    assert isinstance(again, PackedStore) and "h1" in repr(again)


def test_pool_workers_pack_their_results(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "reg", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(echo, x=range(200))
    bt.submit_workers(2)
    assert bt.wait_for_jobs(timeout=60)
    assert bt.reduce_results_list() == list(range(200))
    assert os.listdir(reg.file_dir / "results") == [] and 1 <= len(_packs(reg)) <= 2
    reg.cluster_functions.close()


def _records(tmp_path, n, size=100):
    path = tmp_path / "packs"
    writer = PackWriter(str(path), "h")
    for i in range(1, n + 1):
        writer.append(i, "h", bytes([i % 256]) * size)
    writer.close()
    (name,) = os.listdir(path)
    return os.path.join(path, name)


def test_a_torn_tail_hides_only_the_records_it_cut(tmp_path):
    path = _records(tmp_path, 20)
    data = open(path, "rb").read()
    rng = random.Random(1)
    for cut in sorted({rng.randrange(len(data)) for _ in range(40)} | {0, HEADER.size, len(data) - 1}):
        with open(path, "wb") as fh:
            fh.write(data[:cut])
        index = PackIndex(str(tmp_path / "packs"))
        index.refresh()
        assert index.valid_ids(None).tolist() == list(range(1, cut // (HEADER.size + 1 + 100) + 1)), cut
    # a file that grows in small steps (a writer going on): each record is seen once, when whole
    os.truncate(path, 0)
    index = PackIndex(str(tmp_path / "packs"))
    with open(path, "ab") as fh:
        for start in range(0, len(data), 37):
            fh.write(data[start:start + 37])
            fh.flush()
            index.refresh()
    assert index.valid_ids(None).tolist() == list(range(1, 21))
    assert sum(len(pf.ids) for pf in index.files.values()) == 20


def test_a_damaged_record_hides_no_other_result(tmp_path):
    path = _records(tmp_path, 10)
    with open(path, "r+b") as fh:
        fh.seek(3 * (HEADER.size + 1 + 100) + HEADER.size + 5)  # inside the data of job 4
        fh.write(b"\xff")
    store = FolderStore(tmp_path)  # read after the damage: the checksum finds it
    assert store.ids().tolist() == list(range(1, 11))  # as a damaged result file, it is there
    assert [store.raw(i) for i in (3, 5, 10)] == [bytes([i]) * 100 for i in (3, 5, 10)]
    with pytest.raises(CorruptFileError, match=r"\.pack: the result of job 4 .*checksum does not match.*reset_jobs"):
        store.get(4)
    # damage in the last record is a torn tail: the job has no result (it will count as expired)
    path = _records(tmp_path / "other", 3)
    with open(path, "r+b") as fh:
        fh.seek(-3, 2)
        fh.write(b"\xff")
    assert FolderStore(tmp_path / "other").ids().tolist() == [1, 2]


def test_an_unreadable_record_names_the_pack_and_the_way_out(tmp_path):
    store = FolderStore(tmp_path)
    w = store.packed("h")
    w.commit((w.writer, 3, ("h", b"not a pickle")))
    w.close()
    with pytest.raises(CorruptFileError, match=r"\.pack: the result of job 3 .*reset_jobs\(\[3\]\)"):
        store.get(3)


def test_a_failed_append_is_cut_back_and_the_next_result_starts_a_new_pack(tmp_path, monkeypatch):
    import batchtools.core.results.packs as packs

    writer = PackWriter(str(tmp_path / "packs"), "h")
    writer.append(1, "h", pickle.dumps("first"))
    real = packs.write_all

    def half_then_fail(fd, data):
        os.write(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(packs, "write_all", half_then_fail)
    with pytest.raises(OSError):
        writer.append(2, "h", b"second" * 10)
    monkeypatch.setattr(packs, "write_all", real)
    writer.append(3, "h", pickle.dumps("third"))
    writer.close()
    assert len(os.listdir(tmp_path / "packs")) == 2
    store = FolderStore(tmp_path)
    assert store.ids().tolist() == [1, 3] and store.get_many([1, 3]) == ["first", "third"]


def test_packed_results_are_compressed_as_configured(reg):
    reg.compress = "gzip"
    bt.batch_map(echo, x=["z" * 5000] * 3)
    bt.submit_jobs(_chunked(reg))
    assert bt.reduce_results_list() == ["z" * 5000] * 3
    assert os.path.getsize(reg.file_dir / "packs" / _packs(reg)[0]) < 3 * 5000


def test_a_node_killed_while_appending_leaves_whole_records_only(tmp_path):
    """SIGKILL a process that appends large records as fast as it can, at random moments: every
    record the index shows is whole and right, and a new writer's records after it are found."""
    script = textwrap.dedent(f"""
        import pickle
        from batchtools.core.results.packs import PackWriter
        w = PackWriter({str(tmp_path / "packs")!r}, "h")
        i = 0
        while True:
            i += 1
            w.append(i, "h", pickle.dumps(bytes([i % 256]) * 60000))
            if i == 3:
                print("going", flush=True)
    """)
    rng = random.Random(7)
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "going"
        time.sleep(rng.random() * 0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    store = FolderStore(tmp_path)
    index = store._pack_index()
    assert len(index.files) == 5
    for pf in index.files.values():
        assert list(pf.ids) == list(range(1, len(pf.ids) + 1))  # no gap: only a tail can be torn
    for i in np.unique(np.concatenate([pf.ids for pf in index.files.values()])).tolist():
        assert store.get(i) == bytes([i % 256]) * 60000


def test_on_a_network_file_system_results_keep_one_file_each(reg, monkeypatch):
    """NFS clients may not see data appended by another client before the writer closes the file,
    so results are not packed there."""
    import batchtools.core.results.store as store_module

    monkeypatch.setattr(store_module, "file_system_type", lambda path: "nfs4")
    bt.batch_map(echo, x=range(5))
    bt.submit_jobs(_chunked(reg))
    assert sorted(os.listdir(reg.file_dir / "results")) == [f"{i}.pkl" for i in range(1, 6)]
    assert not os.path.exists(reg.file_dir / "packs") or _packs(reg) == []
    assert bt.reduce_results_list() == list(range(5))


def test_multicore_chunks_pack_apart_and_interactive_jobs_share_one_closed_pack(tmp_path, reg):
    mc = bt.make_registry(file_dir=tmp_path / "mc", seed=1, conf_file=None, make_default=False)
    mc.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(echo, x=range(40), reg=mc)
    bt.submit_jobs(_chunked(mc, n_chunks=4), reg=mc)
    assert bt.wait_for_jobs(reg=mc, timeout=60)
    assert len(_packs(mc)) == 4 and bt.reduce_results_list(reg=mc) == list(range(40))
    mc.cluster_functions.close()
    # Interactive: each job is its own collection (as in R), all append to the session's pack
    bt.batch_map(echo, x=range(50))
    bt.submit_jobs()
    assert len(_packs(reg)) == 1 and os.listdir(reg.file_dir / "results") == []
    assert bt.reduce_results_list() == list(range(50))
    hashes = bt.get_job_table()["job_hash"]
    assert hashes.nunique() == 50
    open_files = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                  if os.path.exists(f"/proc/self/fd/{fd}")]
    assert not any(str(reg.file_dir / "packs") in f for f in open_files), open_files  # closed at the end
    bt.submit_jobs([1, 2])  # a later submission starts a new pack
    assert len(_packs(reg)) == 2 and bt.reduce_results_list() == list(range(50))
    assert bt.sweep_registry()["packs"] == 0  # 48 records of the first pack still count


@pytest.mark.parametrize("damage", ["none", "header", "data", "magic_in_data", "garbage", "torn_tail", "two_hashes"])
def test_a_large_window_is_indexed_at_once_as_record_by_record(tmp_path, monkeypatch, damage):
    """Windows of many records are indexed at once up to the first bytes that are not a run of whole
    intact records; the index is the one the record-by-record loop makes, whatever the damage."""
    from batchtools.core.results import packs

    d = tmp_path / "packs"
    d.mkdir()
    w = PackWriter(str(d), "a" * 40)
    rng = random.Random(7)
    for i in range(1, 3001):
        data = pickle.dumps(b"BTR3" * (i % 5) + bytes(rng.randrange(0, 200)) if damage == "magic_in_data" else i * i)
        w.append(i, ("b" if damage == "two_hashes" and i > 1500 else "a") * 40, data)
    w.close()
    (path,) = d.iterdir()
    raw = bytearray(path.read_bytes())
    mid = len(raw) // 2
    if damage == "header":
        raw[raw.find(b"BTR3", mid) + 12] ^= 0xFF
    elif damage == "data":
        raw[raw.find(b"BTR3", mid) + HEADER.size + 45] ^= 0xFF
    elif damage == "garbage":
        at = raw.find(b"BTR3", mid)
        raw[at:at] = b"\x00garbage\x00" * 3
    elif damage == "torn_tail":
        raw = raw[:-7]
    path.write_bytes(bytes(raw))

    def index():
        ix = PackIndex(str(d))
        ix.refresh()
        (pf,) = ix.files.values()
        return (pf.ids.tolist(), pf.hashes, pf.offsets.tolist(), pf.lengths.tolist(), pf.crcs.tolist(),
                pf.times.tolist(), pf.damage, pf.parsed)

    assert len(raw) > packs.RUN_MIN
    at_once = index()
    monkeypatch.setattr(packs, "RUN_MIN", 1 << 62)
    one_by_one = index()
    assert at_once == one_by_one
    assert len(at_once[0]) == {"none": 3000, "magic_in_data": 3000, "two_hashes": 3000, "torn_tail": 2999,
                               "data": 3000, "header": 2999, "garbage": 3000}[damage]
    assert (min(at_once[3]) < 0) == (damage == "data")
