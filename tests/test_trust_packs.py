"""Result packs and in-process runs after ordinary mishaps (issue 24, items 3, 5, 6, 8, 15): a lost
or damaged packed result is named with its job and the remedy, and repair makes the job run again;
damage of any byte of a record never passes another job's value off; reading a result of a huge
pack costs the memory of the result; an Interactive master killed mid-submit, or stopped by a full
disk, forgets no job that finished; a collection run by hand is recorded, as in R.

``BATCHTOOLS_FAULT_TRIALS`` sets the number of kills (default 10).
"""

import collections
import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import pytest

import batchtools as bt
import batchtools.core.results.packs as packs
from batchtools.api.repair import DAMAGED_RESULT, MISSING_RESULT
from batchtools.core.errors import CorruptFileError, ResultNotFoundError
from batchtools.core.results.packs import HEADER2, MAGIC2, PackWriter
from batchtools.core.results.store import FolderStore
from conftest import fill

TRIALS = int(os.environ.get("BATCHTOOLS_FAULT_TRIALS", "10"))


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
    assert report["damaged_results"] == [3] and report["missing_results"] == [] and report["damaged_packs"] == {}
    reg = bt.load_registry(reg.file_dir, writeable=True)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    assert bt.find_errors()["job_id"].tolist() == [3]
    assert bt.get_error_messages()["message"].tolist() == [DAMAGED_RESULT]
    bt.submit_jobs(bt.find_errors())
    assert bt.reduce_results_list() == [value(x) for x in range(1, 6)]


def test_a_damaged_header_is_reported_and_its_job_runs_again(reg, caplog):
    bt.batch_map(value, x=range(1, 6))
    bt.submit_jobs(_chunked(reg))
    (pack,) = _pack_paths(reg)
    data = bytearray(pack.read_bytes())
    at = data.index(value(3).encode())
    data[data.rindex(b"BTR3", 0, at) + 12] ^= 0x01  # in the job id of job 3's record
    pack.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="batchtools"):
        other = bt.load_registry(reg.file_dir)
        with pytest.raises(ResultNotFoundError, match=rf"job 3 is lost.*{pack.name} has \d+ unreadable bytes"):
            bt.load_result(3, reg=other)
    assert f"{pack}: " in caplog.text and "hold no readable record" in caplog.text
    assert bt.reduce_results_list(ids=[2, 4], reg=other) == [value(2), value(4)]  # its neighbours
    report = bt.repair_registry(reg.file_dir)
    assert report["missing_results"] == [3] and list(report["damaged_packs"]) == [str(pack)]


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


# ------------------------------------------------------------------ item 5: in-process runs journalled
def ran_and_squared(x, log_dir, sleep):
    """Records each execution (one file per job), then returns x*x (x divisible by 17: fails)."""
    import os
    import time

    time.sleep(sleep)
    with open(os.path.join(log_dir, f"{x}.run"), "a") as fh:
        fh.write(f"{os.getpid()}\n")
    if x % 17 == 0:
        raise ValueError(f"job {x} fails")
    return x * x


def _runs(log_dir: Path) -> collections.Counter:
    return collections.Counter({int(p.stem): len(p.read_text().split()) for p in log_dir.glob("*.run")})


def test_killed_interactive_master_forgets_no_finished_job(tmp_path):
    """SIGKILL an Interactive master at a random moment of ``submit_jobs`` (400 jobs, saves every
    10 s, so the kill falls between saves): after a writeable load every job whose result (or
    failure) reached the disk is done (or failed) with its true value, none is expired, and
    submitting the rest runs every other job once. At most the one job running at the kill, whose
    result was not stored yet, runs again."""
    rng = random.Random(24)
    n, stats = 400, []
    for trial in range(TRIALS):
        path, log_dir = tmp_path / f"reg{trial}", tmp_path / f"runs{trial}"
        log_dir.mkdir()
        reg = bt.make_registry(file_dir=path, seed=1, conf_file=None, make_default=False)
        bt.batch_map(ran_and_squared, x=range(1, n + 1), more_args={"log_dir": str(log_dir), "sleep": 0.004}, reg=reg)
        reg.lease.release()
        master = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
            import batchtools as bt
            reg = bt.load_registry({str(path)!r}, writeable=True)
            reg.cluster_functions = bt.make_cluster_functions_interactive()
            print("loaded", flush=True)
            bt.submit_jobs()
            print("finished", flush=True)
        """)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert master.stdout.readline().strip() == "loaded"
        time.sleep(rng.uniform(0.3, 1.5))
        master.send_signal(signal.SIGKILL)
        master.wait()
        ran = {x for x, k in _runs(log_dir).items() if k}  # (a file created, its line not written: not run)
        reg = bt.load_registry(path, writeable=True, make_default=False)
        reg.cluster_functions = bt.make_cluster_functions_interactive()
        done = set(bt.find_done(reg=reg)["job_id"].tolist())
        failed = set(bt.find_errors(reg=reg)["job_id"].tolist())
        assert set(reg.store.ids().tolist()) == done
        assert bt.find_expired(reg=reg).empty
        assert bt.reduce_results_list(sorted(done), reg=reg) == [x * x for x in sorted(done)]
        forgotten = ran - done - failed  # ran, but its result or failure had not reached the disk
        assert forgotten <= {max(ran, default=0)}, sorted(forgotten)
        assert done == {x for x in ran if x % 17} - forgotten
        assert failed == {x for x in ran if x % 17 == 0} - forgotten
        assert bt.find_not_submitted(reg=reg)["job_id"].tolist() == sorted(set(range(1, n + 1)) - done - failed)
        bt.submit_jobs(reg=reg)  # the rest: never submitted ones only
        assert bt.reduce_results_list(reg=reg) == [x * x for x in range(1, n + 1) if x % 17]
        twice = sorted(x for x, k in _runs(log_dir).items() if k > 1)
        assert twice == sorted(forgotten), (twice, forgotten)
        stats.append((len(done) + len(failed), len(forgotten)))
        reg.lease.release()
    print(f"\n{TRIALS} kills: jobs recorded after reload {[s[0] for s in stats]}, "
          f"the job running at the kill ran again in {sum(s[1] for s in stats)}")
    assert any(0 < s[0] < n for s in stats)  # the kills fell in the middle of submissions


def fills_the_disk(x, disk, log_dir):
    from pathlib import Path

    with open(Path(log_dir) / f"{x}.run", "a") as fh:
        fh.write("ran\n")
    if x == 10 and not (Path(log_dir) / "filled").exists():
        (Path(log_dir) / "filled").touch()
        fill(Path(disk))  # another user's file: no room from here on, not even for the status
    return bytes([x]) * 30_000


def test_full_disk_during_an_interactive_run_forgets_no_finished_job(small_disk, tmp_path):
    """The disk fills up during an Interactive run, so the results of the later jobs and the
    status at its end cannot be written, and the session ends: once there is room again, the
    jobs whose results reached the pack are done (none runs again), the others run."""
    log_dir = tmp_path / "runs"
    log_dir.mkdir()
    reg = bt.make_registry(file_dir=small_disk / "reg", seed=1, conf_file=None, make_default=False)
    bt.batch_map(fills_the_disk, x=range(1, 61), more_args={"disk": str(small_disk), "log_dir": str(log_dir)},
                 reg=reg)
    reg.lease.release()
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import batchtools as bt
        reg = bt.load_registry({str(reg.file_dir)!r}, writeable=True)
        reg.cluster_functions = bt.make_cluster_functions_interactive(write_logs=False)
        try:
            bt.submit_jobs()
        except OSError as e:
            print("failed:", e)
    """)], capture_output=True, text=True, cwd=tmp_path)
    assert "failed: [Errno 28] No space left" in out.stdout, out.stdout + out.stderr
    (small_disk / "filler").unlink()
    reg = bt.load_registry(reg.file_dir, writeable=True, make_default=False)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    assert bt.find_done(reg=reg)["job_id"].tolist() == list(range(1, 10))
    assert bt.reduce_results_list(reg=reg) == [bytes([x]) * 30_000 for x in range(1, 10)]
    assert bt.find_expired(reg=reg).empty
    assert bt.find_not_submitted(reg=reg)["job_id"].tolist() == list(range(10, 61))
    bt.submit_jobs(reg=reg)
    assert bt.reduce_results_list(reg=reg) == [bytes([x]) * 30_000 for x in range(1, 61)]
    runs = _runs(log_dir)
    assert all(runs[x] == 1 for x in range(1, 10)) and sorted(runs) == list(range(1, 61))  # 10-60: twice


def value_or_file(x):
    return value(x) if x < 7 else bytes(packs.PACK_LIMIT + x)  # 7, 8: a result file each


def test_a_dead_in_process_session_is_replayed_by_the_evidence_its_runs_left(reg, caplog):
    """What a dead session's in-process chunks left decides which of their jobs are recorded: a
    packed record (jobs 1, 2), a failed job's update file (3), a result file of a job that had
    none (6) or whose previous one was set aside for the chunk (8); not a chunk the backend
    raised on (4), nor one that left nothing (5), nor a previous run's result never set aside (7)."""
    from batchtools.core.contract.journal import Journal, chunk_hash, inprocess_prefix
    from batchtools.node.updates import UpdateBuffer

    bt.batch_map(value_or_file, x=range(1, 9))
    bt.submit_jobs([7, 8])
    old = bt.get_job_table([7, 8])["job_hash"].tolist()
    reg.lease.release()
    # the dead session: chunks [1, 2], [3], [4], [5], [6], [7], [8], journalled before any ran
    prefix = inprocess_prefix("feedfacefeedfacefeedfacefeedface")
    h = [chunk_hash(prefix, k) for k in range(7)]
    journal = Journal(reg.layout.journal)
    journal.begin()
    journal.inprocess(prefix, [1, 2, 3, 4, 5, 6, 7, 8], [(0, 2), (2, 3), (3, 4), (4, 5), (5, 6), (6, 7), (7, 8)],
                      time.time(), [{}] * 7)
    store = FolderStore(reg.file_dir)
    ran = store.packed(h[0])
    ran.put(1, value(1))
    ran.put(2, value(2))
    ran.close()
    journal.ran(prefix, 0, "cfX", "x.log")
    failed = UpdateBuffer(reg.layout, h[1])
    failed.set(3, started=time.time(), done=time.time(), error="ValueError: boom")
    failed.close()
    raised = store.packed(h[2])  # a chunk of two jobs whose backend raised after the first one
    raised.put(4, value(4))
    raised.close()
    journal.refused(h[2])
    store.put(6, value(6))  # a large result of its own
    store.stash([8], h[6])  # chunk 6 was reached: the previous result of 8 set aside, a new one written
    store.put(8, "new")
    journal.close()
    with caplog.at_level("WARNING", logger="batchtools"):
        reg = bt.load_registry(reg.file_dir, writeable=True)
    assert "recorded 5 job(s)" in caplog.text
    assert bt.find_done()["job_id"].tolist() == [1, 2, 6, 7, 8]
    assert bt.find_errors()["job_id"].tolist() == [3] and bt.find_not_submitted()["job_id"].tolist() == [4, 5]
    assert bt.find_expired().empty
    table = bt.get_job_table().set_index("job_id")
    assert table.loc[[1, 2, 3, 6, 8], "job_hash"].tolist() == [h[0], h[0], h[1], h[4], h[6]]
    assert table.loc[7, "job_hash"] == old[0] and table.loc[1, "batch_id"] == "cfX"
    assert bt.reduce_results_list() == [value(1), value(2), value(6), bytes(packs.PACK_LIMIT + 7), "new"]
    assert not reg.store.stashed() and not reg.layout.journal.exists()


def test_a_journal_line_cut_by_a_full_disk_is_cut_off(tmp_path, monkeypatch):
    import batchtools.core.contract.journal as journal

    j = journal.Journal(tmp_path / "submissions.log")
    j.intent("h1", [1, 2])
    real = journal.write_all

    def half(fd, data):
        os.write(fd, data[:len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(journal, "write_all", half)
    with pytest.raises(OSError, match="No space left.*submissions.log"):
        j.intent("h2", [3])
    monkeypatch.setattr(journal, "write_all", real)
    j.intent("h3", [4])
    assert [r["intent"] for r in journal.read(tmp_path / "submissions.log")] == ["h1", "h3"]


# ------------------------------------------------------------------ item 15: collections run by hand
def test_a_collection_run_by_hand_is_recorded_as_r_does(reg, caplog):
    bt.batch_map(value, x=range(1, 6))
    jc = bt.make_job_collection([1, 2])
    assert bt.do_job_collection(jc, output=jc.log_file) == {"done": 2, "error": 0}
    assert bt.sync_registry() is True
    assert bt.find_done()["job_id"].tolist() == [1, 2]
    assert bt.reduce_results_list() == [value(1), value(2)]
    assert "Starting job" in "\n".join(bt.get_log(2))
    # a collection file run by the node's entry point, as a scheduler would
    jc = bt.make_job_collection([3])
    path = reg.layout.job_collection(jc.job_hash)
    from batchtools.core.persistence.files import write_pickle

    write_pickle(path, jc)
    proc = subprocess.run([sys.executable, "-m", "batchtools.worker", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert bt.find_done()["job_id"].tolist() == [1, 2, 3] and bt.load_result(3) == value(3)
    # a done job run by hand again: the new run replaces it; a job with a run pending keeps it
    reg.cluster_functions = bt.make_cluster_functions(
        "Holds", lambda r, jc: bt.make_submit_job_result(0, "held"), list_jobs_queued=lambda r: ["held"])
    bt.submit_jobs([4])
    before = bt.get_job_table([1])["job_hash"].iloc[0]
    jc = bt.make_job_collection([1, 4])
    with caplog.at_level("WARNING", logger="batchtools"):
        bt.do_job_collection(jc)
        bt.sync_registry()
    assert "jobs [4] were run by hand" in caplog.text
    assert bt.get_job_table([1])["job_hash"].iloc[0] == jc.job_hash != before
    assert bt.find_queued()["job_id"].tolist() == [4] and bt.load_result(1) == value(1)
    assert bt.find_not_submitted()["job_id"].tolist() == [5]
