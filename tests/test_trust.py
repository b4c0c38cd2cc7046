"""Trust: a failed call changes nothing, one writeable session at a time, the backend is remembered,
corrupt files are named and repairable. (Kills, pauses and full disks: test_faults.py.)"""

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import batchtools as bt
from batchtools.core.persistence import lease as lease_mod
from batchtools.core.persistence.tables import read_frame
from conftest import snapshot, wait_until


def run_script(code: str, cwd, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (another session), with batchtools imported as bt."""
    proc = subprocess.run([sys.executable, "-c", "import batchtools as bt\n" + textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"script failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def double(x):
    return 2 * x


# ------------------------------------------------------------ refused calls change nothing
class Refuse:
    """A backend that accepts the first ``accept`` submissions (running them here), then refuses."""

    def __init__(self, accept: int = 0):
        self.accept = accept

    def __call__(self, reg, jc):
        if self.accept <= 0:
            return bt.make_submit_job_result(101, msg="queue closed")
        self.accept -= 1
        bt.do_job_collection(jc, sink=reg.pending_updates)
        return bt.make_submit_job_result(0, "ok")


def test_refused_resubmission_keeps_status_results_and_logs(reg):
    bt.batch_map(double, x=[1, 2, 3])
    bt.submit_jobs()
    table = bt.get_job_table()
    reg.cluster_functions = bt.make_cluster_functions("Refusing", Refuse())
    before = snapshot(reg.file_dir)
    with pytest.raises(bt.SubmitError, match="queue closed"):
        bt.submit_jobs([1, 2])
    assert snapshot(reg.file_dir) == before
    assert bt.get_job_table().equals(table)
    assert bt.reduce_results_list() == [2, 4, 6]


def test_a_second_chunk_refused_keeps_the_first_and_restores_the_rest(reg):
    bt.batch_map(double, x=[1, 2, 3])
    bt.submit_jobs()
    first = bt.get_job_status()["job_hash"].tolist()
    reg.cluster_functions = bt.make_cluster_functions("HalfOpen", Refuse(accept=1))
    with pytest.raises(bt.SubmitError):
        bt.submit_jobs([1, 2])
    st = bt.get_job_status()
    assert st["job_hash"][0] != first[0] and st["job_hash"].tolist()[1:] == first[1:]  # job 1 re-ran, 2 kept
    assert bt.reduce_results_list() == [2, 4, 6] and bt.find_done()["job_id"].tolist() == [1, 2, 3]
    assert not any(n.startswith(".prev-") for n in os.listdir(reg.layout.dir("results")))
    assert not reg.layout.journal.exists()


def test_unpicklable_resource_changes_nothing(mreg):
    bt.batch_map(double, x=[1, 2])
    bt.submit_jobs()
    assert bt.wait_for_jobs()
    before = snapshot(mreg.file_dir)
    with open(os.devnull) as handle, pytest.raises(TypeError, match="resources: handle cannot be stored"):
        bt.submit_jobs([1, 2], resources={"handle": handle})
    assert snapshot(mreg.file_dir) == before
    assert bt.reduce_results_list() == [2, 4]


def test_unsupported_capability_is_refused_before_anything_is_written(reg, tmp_path):
    bt.batch_map(double, x=[1, 2])
    bt.submit_jobs()
    reg.cluster_functions = bt.make_cluster_functions_sge(template="#!/bin/sh\n{{ command }}\n")
    before = snapshot(reg.file_dir)
    ids = bt.find_jobs().assign(chunk=1)
    with pytest.raises(ValueError, match="chunks_as_arrayjobs is not supported by the SGE backend"):
        bt.submit_jobs(ids, resources={"chunks_as_arrayjobs": True})
    with pytest.raises(ValueError, match="not allowed in a job script"):
        bt.submit_jobs([1], resources={"partition": "a; rm -rf /"})
    assert snapshot(reg.file_dir) == before


def test_refused_pool_submission_changes_nothing(reg):
    bt.batch_map(double, x=[1, 2])
    bt.submit_jobs()
    reg.cluster_functions = bt.make_cluster_functions("Refusing", Refuse())
    before = snapshot(reg.file_dir)
    with pytest.raises(bt.SubmitError):
        bt.submit_workers(1, ids=[1, 2])
    after = snapshot(reg.file_dir)
    assert {k: v for k, v in after.items() if not k.startswith("pool/")} == \
        {k: v for k, v in before.items() if not k.startswith("pool/")}
    assert bt.reduce_results_list() == [2, 4] and bt.get_status().done == 2
    claims = (reg.layout.pool / "claims.log").read_text().split("\n")
    assert claims[0].startswith("Q ") and claims[1].startswith("X ")  # queued, then cancelled: nobody takes them


def test_failed_calls_leave_memory_and_disk_as_they_were(reg, monkeypatch):
    """Each mutating call, with its k-th file write failing for every k until it succeeds:
    every failed attempt leaves memory and disk exactly as they were."""
    from batchtools.core import registry as core_registry

    bt.batch_map(double, x=[1, 2, 3])
    bt.submit_jobs()
    orig = core_registry.atomic_write_bytes
    fail = {"at": 0, "n": 0}

    def kth_fails(path, data, fsync=False):
        fail["n"] += 1
        if fail["n"] == fail["at"]:
            raise OSError(28, "No space left on device")
        return orig(path, data, fsync=fsync)

    monkeypatch.setattr(core_registry, "atomic_write_bytes", kth_fails)
    actions = [lambda: bt.add_job_tags([1], "t"), lambda: bt.remove_job_tags([1], "t"),
               lambda: bt.set_job_names([1, 2], ["a", "b"]), lambda: bt.reset_jobs([1]),
               lambda: bt.batch_export({"a": 1, "b": 2}), lambda: bt.save_registry(), lambda: bt.clear_registry()]
    failures = 0
    for action in actions:
        for k in range(1, 20):
            before = snapshot(reg.file_dir)
            tables = {name: t.copy() for name, t in reg.tables.items()}
            fail.update(at=k, n=0)
            try:
                action()
            except OSError as e:
                assert "No space left" in str(e)
                failures += 1
                assert snapshot(reg.file_dir) == before
                assert tables.keys() == reg.tables.keys() and all(reg.tables[n].equals(t) for n, t in tables.items())
                continue
            break
    assert failures >= 12
    monkeypatch.undo()


def test_failed_batch_map_leaves_an_empty_registry(tmp_path, monkeypatch):
    reg = bt.make_registry(file_dir=tmp_path / "r", conf_file=None)
    before = snapshot(reg.file_dir)
    from batchtools.core import registry as core_registry

    orig = core_registry.atomic_write_bytes

    def status_fails(path, data, fsync=False):
        if str(path).endswith("status.pkl"):
            raise OSError(28, "No space left on device")
        return orig(path, data, fsync=fsync)

    monkeypatch.setattr(core_registry, "atomic_write_bytes", status_fails)
    with pytest.raises(OSError, match="No space left"):
        bt.batch_map(double, x=range(1000))
    assert len(reg.status) == 0 and len(reg.defs) == 0
    assert snapshot(reg.file_dir) == before
    monkeypatch.undo()
    bt.batch_map(double, x=range(3))  # and it can be retried
    assert len(bt.find_jobs()) == 3


# ------------------------------------------------------------------- the lease
HOLD = """
reg = bt.load_registry({path!r}, writeable=True)
print("holding", flush=True)
import time; time.sleep(120)
"""


def _hold(path, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import batchtools as bt\n" + HOLD.format(path=str(path))],
                            cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    return proc


def test_second_writeable_session_is_refused_naming_the_holder(reg, tmp_path):
    bt.batch_map(double, x=[1, 2])
    path = reg.file_dir
    out = run_script(f"""
        try:
            bt.load_registry({str(path)!r}, writeable=True)
        except bt.LeaseError as e:
            print("REFUSED", e)
        bt.load_registry({str(path)!r})  # read-only is fine
        print("READ-ONLY OK")
    """, tmp_path).stdout
    assert "REFUSED" in out and f"pid {os.getpid()}" in out and "force=True" in out
    assert "READ-ONLY OK" in out
    bt.submit_jobs()  # this session still holds it
    assert bt.reduce_results_list() == [2, 4]


def test_dead_holder_is_taken_over_with_a_warning(tmp_path, caplog):
    reg = bt.make_registry(file_dir=tmp_path / "r", conf_file=None)
    reg.lease.release()
    holder = _hold(reg.file_dir, tmp_path)
    with pytest.raises(bt.LeaseError, match=f"pid {holder.pid}"):
        bt.load_registry(reg.file_dir, writeable=True)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with caplog.at_level(logging.WARNING, logger="batchtools"):
        again = bt.load_registry(reg.file_dir, writeable=True)
    assert "its session is gone" in caplog.text and again.writeable


def test_a_session_that_lost_its_lease_refuses_writes(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(double, x=[1, 2])
    run_script(f"""
        reg = bt.load_registry({str(reg.file_dir)!r}, writeable=True, force=True)
        bt.add_job_tags([1], "theirs")
    """, tmp_path)
    before = snapshot(reg.file_dir)
    with pytest.raises(bt.LeaseError, match="lost the writeable lease"):
        bt.add_job_tags([2], "mine")
    assert not reg.writeable
    with pytest.raises(bt.ReadOnlyRegistryError):
        bt.submit_jobs()
    assert bt.get_status().defined == 2  # queries still work
    assert snapshot(reg.file_dir) == before  # and change nothing
    assert bt.load_registry(reg.file_dir).get_job_tags()["tags"].tolist() == ["theirs", None]


def test_reloading_in_the_same_process_moves_the_lease(reg):
    bt.batch_map(double, x=[1])
    newer = bt.load_registry(reg.file_dir, writeable=True)
    bt.submit_jobs(reg=newer)
    with pytest.raises(bt.LeaseError):
        bt.add_job_tags([1], "x", reg=reg)
    assert bt.reduce_results_list(reg=newer) == [2]


def test_lease_of_another_host_expires_by_its_file_age(reg, monkeypatch):
    info = {"host": "elsewhere", "pid": 1, "pid_start": None, "session": "theirs", "taken": time.time()}
    reg.lease.release()
    path = reg.file_dir / lease_mod.FILE
    path.write_text(__import__("json").dumps(info))
    with pytest.raises(bt.LeaseError, match="'elsewhere'"):
        bt.load_registry(reg.file_dir, writeable=True)
    old = time.time() - lease_mod.TIMEOUT - 5
    os.utime(path, (old, old))
    assert bt.load_registry(reg.file_dir, writeable=True).writeable


def test_read_only_sessions_never_delete_move_or_rewrite(mreg, tmp_path):
    bt.batch_map(lambda s: time.sleep(s) or s, s=[0.5, 0.5])
    bt.submit_jobs()
    assert bt.wait_for_jobs()
    bt.reset_jobs([1, 2])
    bt.submit_jobs()
    wait_until(lambda: len(os.listdir(mreg.layout.dir("updates"))) >= 2, what="update files")
    before = {k: v for k, v in snapshot(mreg.file_dir).items() if k.startswith(("updates/", "results/"))}
    out = run_script(f"""
        import os
        reg = bt.load_registry({str(mreg.file_dir)!r})
        for _ in range(5):
            bt.get_status(); bt.find_expired(); bt.get_job_table(); bt.reduce_results_list(missing_val=None)
        print(sorted(os.listdir(reg.layout.dir("updates"))))
    """, tmp_path).stdout
    assert "pkl" in out
    after = {k: v for k, v in snapshot(mreg.file_dir).items() if k.startswith(("updates/", "results/"))}
    assert {k: v for k, v in after.items() if k in before} == before  # nothing of it removed or rewritten
    assert bt.wait_for_jobs()


# ------------------------------------------------------------ the backend is remembered
def test_registry_remembers_its_cluster_functions(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_socket(2)
    reg.cluster_functions.close()
    out = run_script(f"""
        reg = bt.load_registry({str(reg.file_dir)!r})
        print(reg.cluster_functions)
    """, tmp_path / "r").stdout
    assert "ClusterFunctions(Socket, ncpus=2)" in out
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "batchtools.conf.py").write_text("cluster_functions = bt.make_cluster_functions_interactive()\n")
    proc = run_script(f"""
        reg = bt.load_registry({str(reg.file_dir)!r})
        print(reg.cluster_functions)
    """, tmp_path / "conf")
    assert "ClusterFunctions(Interactive)" in proc.stdout and "overriding" in proc.stderr


def test_slurm_registry_reopens_as_slurm_and_unavailable_backends_say_so(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", conf_file=None)
    (tmp_path / "my.tmpl").write_text("#!/bin/sh\n{{ command }}\n")
    reg.cluster_functions = bt.make_cluster_functions_slurm(template=str(tmp_path / "my.tmpl"))
    assert bt.load_registry(reg.file_dir).cluster_functions.name == "Slurm"
    (tmp_path / "my.tmpl").unlink()  # the template is gone on this machine
    reg2 = bt.load_registry(reg.file_dir)
    assert "unavailable" in reg2.cluster_functions.name
    with pytest.raises(RuntimeError, match="cannot be rebuilt here"):
        reg2.cluster_functions.list_on_system(reg2)


# ------------------------------------------------------------------- corrupt files
def test_truncated_table_names_the_file_and_repair_rebuilds_the_state(reg):
    bt.batch_map(double, x=[1, 2, 3])
    bt.submit_jobs()
    bt.add_job_tags([1], "keep")
    status = reg.layout.table("status")
    status.write_bytes(status.read_bytes()[:40])
    with pytest.raises(bt.CorruptFileError, match=r"status\.pkl.*repair_registry"):
        bt.load_registry(reg.file_dir)
    report = bt.repair_registry(reg.file_dir)
    assert "status" in report["from_previous"]
    again = bt.load_registry(reg.file_dir)
    assert bt.reduce_results_list(reg=again) == [2, 4, 6] and bt.get_status(reg=again).done == 3


def test_corrupt_result_names_file_and_job_and_the_rest_stays_readable(reg, caplog):
    bt.batch_map(double, x=[1, 2, 3])
    bt.submit_jobs()
    pf, k = reg.store._record(2)  # a bit flips inside the packed result of job 2
    with open(pf.path, "r+b") as fh:
        fh.seek(pf.offsets[k] + 1)
        fh.write(bytes([fh.read(1)[0] ^ 0x10]))
    with pytest.raises(bt.CorruptFileError, match=r"\.pack: the result of job 2 .*reset_jobs\(\[2\]\)"):
        bt.reduce_results_list()
    # a result file of its own that cannot be unpickled says so too
    reg.store.put(2, None)
    reg.layout.result(2).write_bytes(b"garbage")
    reg.store.job_hashes = lambda ids: np.array([None] * len(ids), dtype=object)  # only files count now
    with pytest.raises(bt.CorruptFileError, match=r"results/2\.pkl.*job 2.*reset_jobs\(\[2\]\)"):
        bt.load_result(2)
    reg.store.job_hashes = reg._job_hashes
    with caplog.at_level(logging.WARNING, logger="batchtools"):
        assert bt.reduce_results_list(missing_val=None) == [2, None, 6]
    assert bt.load_result(3) == 6


def test_garbage_update_file_is_quarantined(reg, caplog):
    bt.batch_map(double, x=[1])
    bt.submit_jobs()
    garbage = reg.layout.update("jobdeadbeef", "x-0")
    garbage.write_bytes(b"not a pickle")
    with caplog.at_level(logging.WARNING, logger="batchtools"):
        bt.get_status()
    assert "not a status update" in caplog.text and str(garbage) in caplog.text
    assert not garbage.exists() and (reg.layout.dir("updates") / "quarantine" / garbage.name).exists()


def test_malformed_claims_line_keeps_the_registry_readable(reg, caplog):
    bt.batch_map(double, x=[1, 2])
    bt.submit_workers(1)
    with open(reg.layout.pool / "claims.log", "a") as fh:
        fh.write("C broken\nZZZ\n")
    with caplog.at_level(logging.WARNING, logger="batchtools"):
        again = bt.load_registry(reg.file_dir)
        assert bt.get_status(reg=again).done == 2
    assert "malformed line" in caplog.text


def test_corrupt_job_collection_fails_its_jobs_with_a_message(mreg):
    bt.batch_map(double, x=[1, 2])
    orig = mreg.cluster_functions.submit_job

    def corrupt_then_submit(reg, jc):
        reg.layout.job_collection(jc.job_hash).write_bytes(b"\x80garbage")
        return orig(reg, jc)

    mreg.cluster_functions.submit_job = corrupt_then_submit
    bt.submit_jobs(bt.find_jobs().assign(chunk=1))
    assert bt.wait_for_jobs() is False
    errs = bt.get_error_messages()
    assert errs["job_id"].tolist() == [1, 2]
    assert errs["message"].str.contains("cannot be read").all()
    assert "cannot be read" in "\n".join(bt.get_log(1))


def test_missing_result_of_a_done_job_is_found_by_repair(reg):
    bt.batch_map(double, x=[1, 2])
    bt.submit_jobs([1])
    bt.submit_jobs([2])
    os.remove(reg.store.location(1))
    report = bt.repair_registry(reg.file_dir)
    assert report["missing_results"] == [1]
    again = bt.load_registry(reg.file_dir, writeable=True)
    assert bt.find_errors(reg=again)["job_id"].tolist() == [1]


def test_pickle_tables_roundtrip_previous_versions(reg):
    bt.batch_map(double, x=[1, 2])
    bt.add_job_tags([1], "a")
    prev = reg.layout.table("tags").with_name("tags.pkl.prev")
    assert prev.exists() and len(read_frame(prev, "tags")) == 0  # the version before the tag
    assert np.array_equal(bt.find_tagged("a")["job_id"].to_numpy(), [1])
