"""Result packs after ordinary mishaps (issue 24, items 3, 6, 8): a lost or damaged packed result
is named with its job and the remedy, and repair makes the job run again; damage of any byte of a
record never passes another job's value off; reading a result of a huge pack costs the memory of
the result."""

import os
import pickle
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import batchtools as bt
import batchtools.core.packs as packs
from batchtools.api.repair import DAMAGED_RESULT, MISSING_RESULT
from batchtools.core.errors import CorruptFileError, ResultNotFoundError
from batchtools.core.packs import HEADER2, MAGIC2, PackWriter
from batchtools.core.store import FolderStore


def value(x):
    return f"value-{x:03d}"


def _chunked(reg, n_chunks=1):
    tab = bt.find_jobs(reg=reg)
    tab["chunk"] = bt.chunk(tab["job_id"], n_chunks=n_chunks, shuffle=False)
    return tab


def _pack_paths(reg) -> list[Path]:
    return sorted((reg.file_dir / "packs").glob("*.pack"))


# ------------------------------------------------------------------ item 3: lost and damaged results
def test_a_lost_pack_is_named_with_its_jobs_missing_val_covers_them_and_repair_runs_them_again(reg, caplog):
    bt.batch_map(value, x=range(1, 7))
    bt.submit_jobs(_chunked(reg, n_chunks=2))
    (pack,) = _pack_paths(reg)  # Interactive: the chunks of a submission share one pack
    os.remove(pack)
    for read in (bt.reduce_results_list, lambda: bt.load_result(2), lambda: bt.reduce_results(lambda a, b: a + b)):
        with pytest.raises(ResultNotFoundError) as e:
            read()
        msg = str(e.value)
        assert "is lost" in msg and "repair_registry" in msg and "missing_val" in msg
        assert f"{pack.name.split('.')[0]}*.pack" in msg  # the pack it was in (named after the submission)
    with caplog.at_level("WARNING", logger="batchtools"):
        assert bt.reduce_results_list(missing_val="gone") == ["gone"] * 6
        assert bt.reduce_results_dataframe(missing_val=None)["result"].isna().all()
    assert "result of job 1 is lost" in caplog.text
    report = bt.repair_registry(reg.file_dir)
    assert report["missing_results"] == [1, 2, 3, 4, 5, 6]
    reg = bt.load_registry(reg.file_dir, writeable=True)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    assert bt.find_done().empty and (bt.get_error_messages()["message"] == MISSING_RESULT).all()
    bt.submit_jobs(bt.find_errors())
    assert bt.reduce_results_list() == [value(x) for x in range(1, 7)]


def test_a_pack_cut_short_is_named_and_its_other_results_stay_readable(reg):
    bt.batch_map(value, x=range(1, 11))
    bt.submit_jobs(_chunked(reg))
    (pack,) = _pack_paths(reg)
    data = pack.read_bytes()
    cut = data.index(value(6).encode())  # the records of jobs 6-10 are gone (6: cut short)
    pack.write_bytes(data[:cut])
    other = bt.load_registry(reg.file_dir)  # a fresh index, and the one of the session that ran them
    for r in (other, reg):
        with pytest.raises(ResultNotFoundError, match=rf"job 6 is lost.*{pack.name}.* holds no record of it"):
            bt.reduce_results_list(reg=r)
        assert bt.reduce_results_list(ids=[1, 5], reg=r) == [value(1), value(5)]
    assert bt.repair_registry(reg.file_dir)["missing_results"] == [6, 7, 8, 9, 10]


def test_repair_finds_a_record_damaged_in_place_and_the_job_runs_again(reg):
    bt.batch_map(value, x=range(1, 6))
    bt.submit_jobs(_chunked(reg))
    (pack,) = _pack_paths(reg)
    data = bytearray(pack.read_bytes())
    data[data.index(value(3).encode()) + 7] ^= 0x01  # a flipped bit in the data of job 3's record
    pack.write_bytes(bytes(data))
    other = bt.load_registry(reg.file_dir)
    assert 3 in other.store.ids()  # listed: a damaged result is there, as a damaged result file is
    with pytest.raises(CorruptFileError, match=rf"{pack.name}: the result of job 3 .*checksum does not match"):
        bt.load_result(3, reg=other)
    assert bt.reduce_results_list(missing_val=None, reg=other) == [value(1), value(2), None, value(4), value(5)]
    report = bt.repair_registry(reg.file_dir)
    assert report["damaged_results"] == [3] and report["missing_results"] == []
    reg = bt.load_registry(reg.file_dir, writeable=True)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    assert bt.find_errors()["job_id"].tolist() == [3]
    assert bt.get_error_messages()["message"].tolist() == [DAMAGED_RESULT]
    bt.submit_jobs(bt.find_errors())
    assert bt.reduce_results_list() == [value(x) for x in range(1, 6)]


# ------------------------------------------------------------------ item 8: damage never shadows
def _v2_record(job_id: int, job_hash: str, data: bytes, when: float = 1.0) -> bytes:
    """A record as version 2 wrote it (one checksum over the header's fields, the hash and the data)."""
    h = job_hash.encode()
    crc = zlib.crc32(data, zlib.crc32(h, zlib.crc32(packs._BODY2.pack(job_id, when, len(data), len(h)))))
    return HEADER2.pack(MAGIC2, crc, job_id, when, len(data), len(h)) + h + data


def _pack_of(tmp_path: Path, version: int, n: int = 7) -> tuple[Path, int]:
    """A pack of jobs 1..n (all of hash "h", results value(i)) in a folder without a status table
    (every record counts: the worst case for a damaged id); its path and the size of one record."""
    directory = tmp_path / "packs"
    if version == 3:
        w = PackWriter(str(directory), "h")
        for i in range(1, n + 1):
            w.append(i, "h", pickle.dumps(value(i)))
        w.close()
        (path,) = directory.iterdir()
    else:
        directory.mkdir(parents=True)
        path = directory / "h.1-old-1-0.pack"
        path.write_bytes(b"".join(_v2_record(i, "h", pickle.dumps(value(i))) for i in range(1, n + 1)))
    return path, path.stat().st_size // n


@pytest.mark.parametrize("block", [packs.BLOCK, 16], ids=["window-1MiB", "window-16B"])
@pytest.mark.parametrize("version", [3, 2])
def test_damage_to_any_byte_of_a_record_never_passes_another_jobs_value_off(tmp_path, monkeypatch, version, block):
    """Every byte of job 4's record, flipped three ways: every other job still reads its own value,
    and job 4 reads its own value or an error, never another job's (also read in 16-byte windows)."""
    monkeypatch.setattr(packs, "BLOCK", block)
    path, size = _pack_of(tmp_path / "orig", version)
    original = path.read_bytes()
    trial = tmp_path / "trial"
    (trial / "packs").mkdir(parents=True)
    for at in range(3 * size, 4 * size):
        for flip in (0x01, 0x80, 0xFF):
            data = bytearray(original)
            data[at] ^= flip
            (trial / "packs" / path.name).write_bytes(bytes(data))
            store = FolderStore(trial)
            for i in range(1, 8):
                try:
                    got = store.get(i)
                except (CorruptFileError, ResultNotFoundError):
                    assert i == 4, (at, flip, i)
                    continue
                assert got == value(i), (at - 3 * size, flip, i, got)
            got = store.get_many([1, 2, 3, 5, 6, 7])
            assert got == [value(i) for i in (1, 2, 3, 5, 6, 7)], (at, flip)


def test_a_pack_changed_after_it_was_read_is_checked_again_when_a_result_is_read(tmp_path):
    path, size = _pack_of(tmp_path, 3)
    store = FolderStore(tmp_path)
    assert store.ids().tolist() == list(range(1, 8))  # indexed
    data = bytearray(path.read_bytes())
    data[data.index(value(5).encode())] ^= 0x01
    path.write_bytes(bytes(data))  # damaged where it lies, size unchanged: the index is not read again
    with pytest.raises(CorruptFileError, match="job 5 .*no longer matches its checksum"):
        store.get(5)
    with pytest.raises(CorruptFileError, match="job 5 "):
        store.get_many([4, 5, 6])
    assert store.get_many([4, 6]) == [value(4), value(6)]


def test_a_registry_with_packs_of_format_2_still_reads_them(reg):
    """Packs written before the format had a header checksum (version 2) are read as before."""
    bt.batch_map(value, x=range(1, 21))
    bt.submit_jobs(_chunked(reg, n_chunks=2))
    (pack,) = _pack_paths(reg)
    records = [(pf.ids[k], pf.hashes[k], pack.read_bytes()[pf.offsets[k]:pf.offsets[k] + pf.lengths[k]])
               for pf in reg.store._pack_index().files.values() for k in range(len(pf.ids))]
    pack.write_bytes(b"".join(_v2_record(i, h, d) for i, h, d in records))
    old = bt.load_registry(reg.file_dir, writeable=True)
    old.cluster_functions = bt.make_cluster_functions_interactive()
    assert bt.reduce_results_list(reg=old) == [value(x) for x in range(1, 21)]
    assert bt.load_result(13, reg=old) == value(13)
    bt.reset_jobs([13], reg=old)  # a registry of both formats: its new runs append version 3 records
    bt.submit_jobs([13], reg=old)
    assert bt.reduce_results_list(reg=old) == [value(x) for x in range(1, 21)]
    assert len(_pack_paths(old)) == 2 and bt.sweep_registry(reg=old)["packs"] == 0


# ------------------------------------------------------------------ item 6: memory and size of packs
def test_packs_are_capped_and_read_in_windows(reg, monkeypatch):
    monkeypatch.setattr(packs, "PACK_CAP", 4000)
    monkeypatch.setattr(packs, "BLOCK", 500)
    bt.batch_map(lambda x: bytes([x]) * 300, x=range(1, 101))
    bt.submit_jobs(_chunked(reg, n_chunks=1))  # one collection, one writer
    sizes = [p.stat().st_size for p in _pack_paths(reg)]
    assert len(sizes) >= 100 * 300 // 4000 and max(sizes) <= 4000
    assert bt.reduce_results_list() == [bytes([x]) * 300 for x in range(1, 101)]
    other = bt.load_registry(reg.file_dir)  # an index read in windows of 500 bytes
    assert bt.reduce_results_list(ids=[100, 1, 57], reg=other) == [bytes([x]) * 300 for x in (100, 1, 57)]


MEMORY_PROBE = """
import resource, sys, tracemalloc
import psutil
import batchtools as bt
reg = bt.load_registry(sys.argv[1])
bt.get_status(reg=reg); bt.reduce_results_list(ids=[], reg=reg)  # imports and tables, before measuring
rss = psutil.Process().memory_info().rss
tracemalloc.start()
one = bt.load_result(800, reg=reg)
_, peak_one = tracemalloc.get_traced_memory()
tracemalloc.reset_peak()
three = bt.reduce_results_list(ids=[1, 800, 1600], reg=reg)
_, peak_three = tracemalloc.get_traced_memory()
assert one == bytes([800 % 256]) * 65000 and [len(r) for r in three] == [65000] * 3
print(peak_one, peak_three, psutil.Process().memory_info().rss - rss)
"""


def big(x):
    return bytes([x % 256]) * 65000


def test_reading_one_result_of_a_100_mb_pack_takes_the_memory_of_the_result(reg, monkeypatch):
    """1,600 results of 65 KB in one pack of 104 MB (the size cap raised: a pack written before it
    existed): reading one result, or three, takes a few MB, not the pack (measured in a fresh
    process: tracemalloc's peak and the growth of the resident memory)."""
    monkeypatch.setattr(packs, "PACK_CAP", 1 << 40)
    bt.batch_map(big, x=range(1, 1601))
    bt.submit_jobs(_chunked(reg))
    (pack,) = _pack_paths(reg)
    assert pack.stat().st_size > 100_000_000
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(reg.file_dir)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    peak_one, peak_three, rss = map(int, out.stdout.split())
    print(f"\n104 MB pack: one result peak {peak_one / 2**20:.1f} MiB, three {peak_three / 2**20:.1f} MiB, "
          f"RSS +{rss / 2**20:.1f} MiB")
    assert peak_one < 4 * 2**20 and peak_three < 4 * 2**20 and rss < 20 * 2**20
