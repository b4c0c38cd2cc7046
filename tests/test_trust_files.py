"""Trust, round 2 (issue 24), the registry's files: a missing or damaged file is named, never
taken for an empty table; repair rebuilds what the evidence proves and refuses what it cannot;
the format version is checked; a copy is a new folder; the command line gives a clear message
and a non-zero exit, never a traceback, a false answer or a terminal escape from the registry."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pickle
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import batchtools as bt
from batchtools import cli
from batchtools.core.persistence import txn
from batchtools.core.persistence.files import atomic_write_bytes, write_pickle
from batchtools.core.persistence.layout import FORMAT_VERSION
from batchtools.core.persistence.tables import read_frame
from conftest import require_daemon, snapshot
from test_slurm import slurm_problem


# ------------------------------------------------------------------------------------ helpers
@contextlib.contextmanager
def kept_logging():
    """The command's logging set-up (a handler, no propagation) is undone afterwards."""
    logger = logging.getLogger("batchtools")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    try:
        yield
    finally:
        logger.handlers[:], logger.propagate, logger.level = saved[0], saved[1], saved[2]


@contextlib.contextmanager
def warnings_logged():
    """The warnings batchtools logs meanwhile, as ``.text``."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.WARNING)
    logger = logging.getLogger("batchtools")
    logger.addHandler(handler)

    class Warned:
        @property
        def text(self) -> str:
            return stream.getvalue()

    try:
        yield Warned()
    finally:
        logger.removeHandler(handler)


def command(*args) -> tuple[int, str, str]:
    """``batchtools ARGS`` in this process (faster than a subprocess per call): (exit, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with kept_logging(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def damage(path: Path, how: str) -> None:
    if how == "delete":
        path.unlink()
    elif how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(b"garbage\x00\x01" + os.urandom(8))


def g(x=0):
    return 2 * x


def ten_jobs(path: Path, run=(1, 2, 3)):
    reg = bt.make_registry(file_dir=path, seed=1, conf_file=None, make_default=False)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(g, x=range(1, 11), reg=reg)
    if run:
        bt.submit_jobs(list(run), reg=reg)
    return reg


def double(x):
    return 2 * x


# --------------------------------------------------------------- 1, 2: tables that must exist
def test_missing_definitions_are_named_and_no_job_runs_without_its_parameters(tmp_path, caplog):
    """Issue 24, 1: an rsync that missed defs.pkl. The remaining jobs ran without parameters
    ([2, 4, 6, 0, 0, ...], all "done"); now every writeable use is refused naming the file,
    read-only shows what the other tables know (loudly), and repair does not replace the
    10 definitions by the empty version make_registry left in defs.pkl.prev."""
    reg = ten_jobs(tmp_path / "reg")
    reg.lease.release()
    (tmp_path / "reg" / "defs.pkl").unlink()
    with pytest.raises(bt.CorruptFileError, match=r"defs\.pkl: the registry's defs table is missing.*repair_registry"):
        bt.load_registry(tmp_path / "reg", writeable=True)
    with caplog.at_level(logging.WARNING, logger="batchtools"):
        ro = bt.load_registry(tmp_path / "reg", make_default=False)
    assert "defs table is missing" in caplog.text and "Opened read-only" in caplog.text
    assert bt.get_status(reg=ro).done == 3 and bt.reduce_results_list(reg=ro) == [2, 4, 6]
    with pytest.raises(bt.CorruptFileError, match=r"defs\.pkl"):
        bt.get_job_pars(reg=ro)
    assert ro.lost_tables == ["defs"]
    before = snapshot(tmp_path / "reg")
    with pytest.raises(bt.CorruptFileError, match=r"defs\.pkl: .* the definitions of jobs \[1, 2, 3, 4, 5, 6, 7, 8, "
                                                  r"9, 10\] are missing.*never guessed"):
        bt.repair_registry(tmp_path / "reg")
    assert snapshot(tmp_path / "reg") == before
    code, out, err = command("submit", tmp_path / "reg", "--no-conf")
    assert code == cli.FAILED and "defs.pkl" in err and "Traceback" not in err
    assert snapshot(tmp_path / "reg") == before


def test_a_damaged_table_with_an_older_previous_version_is_never_made_shorter(tmp_path):
    """Repair takes a table's previous version only if it still holds every row the other tables
    refer to: an experiment registry whose designs.pkl is cut keeps its error, not fewer designs."""
    reg = bt.make_experiment_registry(file_dir=tmp_path / "reg", seed=1, conf_file=None, make_default=False)
    bt.add_problem("p", data=1, reg=reg)
    bt.add_algorithm("a", fun=lambda data, job, instance, k: instance * k, reg=reg)
    bt.add_experiments(algo_designs={"a": pd.DataFrame({"k": [1, 2]})}, reg=reg)
    bt.add_experiments(algo_designs={"a": pd.DataFrame({"k": [3]})}, reg=reg)  # designs.pkl.prev lacks k=3
    reg.lease.release()
    designs = tmp_path / "reg" / "designs.pkl"
    designs.write_bytes(designs.read_bytes()[:30])
    before = snapshot(tmp_path / "reg")
    with pytest.raises(bt.CorruptFileError, match=r"designs\.pkl: .*the parameters of design rows \[\d+\] are missing"):
        bt.repair_registry(tmp_path / "reg")
    assert snapshot(tmp_path / "reg") == before


def test_lost_status_and_its_previous_version_are_rebuilt_from_definitions_and_evidence(tmp_path):
    """Issue 24, 2: without status.pkl and status.pkl.prev the registry was empty and `status
    --check` said "all done" (exit 0); repair saved the empty table. Now every command names the
    lost table, and repair rebuilds the status from the definitions and the evidence: packed
    results, result files, the journal, update files and logs (a failed job's message)."""
    def f(x):
        if x == 6:
            raise ValueError("six is not allowed")
        return 2 * x

    reg = bt.make_registry(file_dir=tmp_path / "reg", seed=1, conf_file=None, make_default=False)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(f, x=range(1, 11), reg=reg)
    bt.submit_jobs([1, 2, 3, 6], reg=reg)  # packed results, and an error whose update file is merged
    reg.cluster_functions = bt.make_cluster_functions_multicore(1)
    bt.submit_jobs([7], reg=reg)  # a result file of its own
    bt.wait_for_jobs(reg=reg)
    reg.cluster_functions.close()
    reg.lease.release()
    for name in ("status.pkl", "status.pkl.prev"):
        (tmp_path / "reg" / name).unlink()
    for args in (("status", "--check"), ("status",), ("errors",), ("submit", "--no-conf")):
        code, out, err = command(args[0], tmp_path / "reg", *args[1:])
        assert code == cli.FAILED and "status.pkl: the registry's status table is missing" in err, (args, out, err)
        assert "Traceback" not in err and "Status for 0 jobs" not in out
    report = bt.repair_registry(tmp_path / "reg")
    assert report["rebuilt"] == ["status of jobs [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] (from the definitions and the "
                                 "evidence on disk)"] and report["from_logs"] >= 1
    again = bt.load_registry(tmp_path / "reg", writeable=True, make_default=False)
    assert bt.find_done(reg=again)["job_id"].tolist() == [1, 2, 3, 7]
    assert bt.reduce_results_list(reg=again) == [2, 4, 6, 14]
    errors = bt.get_error_messages(reg=again)
    assert errors["job_id"].tolist() == [6] and errors["message"].tolist() == ["ValueError: six is not allowed"]
    assert bt.find_not_submitted(reg=again)["job_id"].tolist() == [4, 5, 8, 9, 10]
    assert "six is not allowed" in "\n".join(bt.get_log(6, reg=again))
    again.cluster_functions = bt.make_cluster_functions_interactive()
    bt.submit_jobs(bt.find_not_submitted(reg=again), reg=again)
    assert bt.reduce_results_list(reg=again) == [2 * x for x in range(1, 11) if x != 6]


def test_a_previous_status_older_than_the_jobs_gains_their_rows(tmp_path):
    """status.pkl lost right after batch_map: its previous version is make_registry's empty table.
    Repair never saves it as it is (an empty registry): the ten jobs get their rows back."""
    ten_jobs(tmp_path / "reg", run=()).lease.release()
    (tmp_path / "reg" / "status.pkl").unlink()
    assert len(read_frame(tmp_path / "reg" / "status.pkl.prev", "status")) == 0
    report = bt.repair_registry(tmp_path / "reg")
    assert "status" in report["from_previous"] and report["rebuilt"]
    again = bt.load_registry(tmp_path / "reg", writeable=True, make_default=False)
    assert bt.get_status(reg=again).defined == 10
    again.cluster_functions = bt.make_cluster_functions_interactive()
    bt.submit_jobs(reg=again)
    assert bt.reduce_results_list(reg=again) == [2 * x for x in range(1, 11)]


def test_experiments_no_status_version_knows_are_an_error_naming_the_table(tmp_path):
    """An experiment's job id and replication live only in the status table: repair does not make
    them up when no version of it knows the jobs of some definitions."""
    reg = bt.make_experiment_registry(file_dir=tmp_path / "reg", seed=1, conf_file=None, make_default=False)
    bt.add_problem("p", data=1, reg=reg)
    bt.add_algorithm("a", reg=reg)
    bt.add_experiments(repls=3, reg=reg)
    reg.lease.release()
    (tmp_path / "reg" / "status.pkl").unlink()  # its previous version is make_registry's, with no job
    before = snapshot(tmp_path / "reg")
    with pytest.raises(bt.CorruptFileError, match=r"status\.pkl: .*job ids and replications of the experiments of "
                                                  r"definitions \[1\] are lost"):
        bt.repair_registry(tmp_path / "reg")
    assert snapshot(tmp_path / "reg") == before


def test_lost_settings_are_restored_from_their_previous_version_only_if_it_knows_the_jobs(tmp_path):
    """registry.pkl missing: load names it (not "no registry here"); repair restores the previous
    version, unless that predates batch_map (how the jobs call the function would be lost)."""
    def h(x, *rest):
        return x + sum(rest)

    reg = bt.make_registry(file_dir=tmp_path / "reg", seed=1, conf_file=None, make_default=False)
    reg.cluster_functions = bt.make_cluster_functions_interactive()  # saved: the settings' previous version
    bt.batch_map(h, [1, 2], [10, 20], reg=reg)  # positional arguments: kept in the settings only
    reg.lease.release()
    meta = tmp_path / "reg" / "registry.pkl"
    saved = meta.read_bytes()
    meta.unlink()
    with pytest.raises(bt.CorruptFileError, match=r"registry\.pkl: the registry's settings table is missing \(the "
                                                  r"folder holds a registry's other files"):
        bt.load_registry(tmp_path / "reg")
    before = snapshot(tmp_path / "reg")
    with pytest.raises(bt.CorruptFileError, match=r"registry\.pkl: .*previous version predates batch_map"):
        bt.repair_registry(tmp_path / "reg")
    assert snapshot(tmp_path / "reg") == before
    meta.write_bytes(saved)  # a save after batch_map: now the previous version knows the jobs
    again = bt.load_registry(tmp_path / "reg", writeable=True, make_default=False)
    bt.save_registry(reg=again)
    again.lease.release()
    meta.unlink()
    assert bt.repair_registry(tmp_path / "reg")["from_previous"] == ["settings"]
    again = bt.load_registry(tmp_path / "reg", writeable=True, make_default=False)
    again.cluster_functions = bt.make_cluster_functions_interactive()
    bt.submit_jobs(reg=again)
    assert bt.reduce_results_list(reg=again) == [11, 22]


def test_a_lost_set_up_file_fails_the_job_naming_it(tmp_path):
    """more_args.pkl lost: jobs ran without the constant arguments (their defaults), silently.
    Every set-up file (function, arguments, exports, problems, algorithms) is now required."""
    def k(x, factor=0):
        return factor * x

    reg = bt.make_registry(file_dir=tmp_path / "reg", seed=1, conf_file=None, make_default=False)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(k, x=[1, 2], more_args={"factor": 5}, reg=reg)
    bt.submit_jobs([1], reg=reg)
    reg.layout.more_args.unlink()
    bt.submit_jobs([2], reg=reg)
    assert bt.find_done(reg=reg)["job_id"].tolist() == [1]
    errors = bt.get_error_messages(reg=reg)
    assert errors["job_id"].tolist() == [2]
    assert re.search(r"more_args\.pkl: this file of the registry's set-up is missing; no job can run without it",
                     errors["message"].iloc[0])


# --------------------------------------------------------------------- 12: the format version
def test_a_newer_format_is_refused_naming_both_versions_and_an_older_one_is_upgraded(tmp_path):
    reg = ten_jobs(tmp_path / "reg")
    reg.lease.release()
    meta_path = reg.layout.meta
    meta = pickle.loads(meta_path.read_bytes())
    assert meta["version"] == FORMAT_VERSION
    meta_path.write_bytes(pickle.dumps({**meta, "version": 99}))
    before = snapshot(tmp_path / "reg")
    message = r"registry\.pkl: the registry has format version 99, .* reads format versions up to 3\. Upgrade"
    for call in (lambda: bt.load_registry(tmp_path / "reg"), lambda: bt.load_registry(tmp_path / "reg", writeable=True),
                 lambda: bt.repair_registry(tmp_path / "reg")):
        with pytest.raises(RuntimeError, match=message):
            call()
    for args in (("status",), ("submit", "--no-conf")):
        code, out, err = command(args[0], tmp_path / "reg", *args[1:])
        assert code == cli.FAILED and re.search(message, err), err
    assert snapshot(tmp_path / "reg") == before
    # format 1: registries older than the attempts table; read as they are, upgraded by a writeable load
    meta_path.write_bytes(pickle.dumps({**meta, "version": 1}))
    reg.layout.table("attempts").unlink()
    assert not reg.layout.table("attempts").with_suffix(".pkl.prev").exists()
    old = bt.load_registry(tmp_path / "reg", make_default=False)
    assert old.format_version == 1 and len(old.tables["attempts"]) == 0
    assert bt.reduce_results_list(reg=old) == [2, 4, 6]
    upgraded = bt.load_registry(tmp_path / "reg", writeable=True, make_default=False)
    assert pickle.loads(meta_path.read_bytes())["version"] == FORMAT_VERSION and reg.layout.table("attempts").exists()
    assert upgraded.format_version == FORMAT_VERSION
    upgraded.lease.release()
    reg.layout.table("attempts").unlink()  # now it is lost, not "older"
    with pytest.raises(bt.CorruptFileError, match=r"attempts\.pkl: the registry's attempts table is missing"):
        bt.load_registry(tmp_path / "reg", writeable=True)


def test_a_registry_of_format_2_opens_as_it_is_and_is_rewritten_lean_by_a_writeable_load(tmp_path, caplog):
    """Issue 30: format 3 saves a table as a dict of its columns (empty ones as one value); the
    pickled DataFrames of format 2 (every column materialised, as the previous release wrote them)
    still open read-only unchanged, and the first writeable load says it upgrades them."""
    reg = ten_jobs(tmp_path / "reg")
    bt.wait_for_jobs(reg=reg)
    bt.add_job_tags([2], "t", reg=reg)
    reg.lease.release()
    want = {name: df.copy(deep=True) for name, df in reg.tables.items()}
    for name, df in want.items():  # as format 2 wrote them: plain DataFrames, every column an array
        old = pd.DataFrame({c: pd.Series(df[c].to_numpy().copy(), index=df.index, dtype=df[c].dtype)
                            for c in df.columns})
        reg.layout.table(name).write_bytes(pickle.dumps(old))
    meta = pickle.loads(reg.layout.meta.read_bytes())
    reg.layout.meta.write_bytes(pickle.dumps({**meta, "version": 2}))
    before = snapshot(tmp_path / "reg")
    old = bt.load_registry(tmp_path / "reg", make_default=False)
    assert old.format_version == 2 and snapshot(tmp_path / "reg") == before
    for name, df in want.items():
        pd.testing.assert_frame_equal(old.tables[name], df, check_index_type=False)
    assert bt.reduce_results_list(reg=old) == [2, 4, 6] and bt.find_tagged("t", reg=old)["job_id"].tolist() == [2]
    assert bt.get_status(reg=old).done == 3
    with caplog.at_level(logging.INFO, logger="batchtools"):
        up = bt.load_registry(tmp_path / "reg", writeable=True, make_default=False)
    assert "upgraded from format version 2 to 3" in caplog.text
    assert pickle.loads(reg.layout.meta.read_bytes())["version"] == FORMAT_VERSION == 3
    bt.submit_jobs([4], reg=up)  # a change saves the status table lean
    bt.wait_for_jobs(reg=up)
    assert isinstance(pickle.loads(reg.layout.table("status").read_bytes()), dict)
    up.lease.release()
    again = bt.load_registry(tmp_path / "reg", make_default=False)
    assert bt.reduce_results_list(reg=again) == [2, 4, 6, 8] and bt.get_status(reg=again).done == 4
    pd.testing.assert_frame_equal(again.tables["tags"], want["tags"], check_index_type=False)


def test_settings_that_are_no_registry_s_are_named(tmp_path):
    reg = ten_jobs(tmp_path / "reg")
    reg.lease.release()
    reg.layout.meta.write_bytes(pickle.dumps(["not", "settings"]))
    with pytest.raises(bt.CorruptFileError, match=r"registry\.pkl: the registry's settings table cannot be read \(it "
                                                  r"holds a list"):
        bt.load_registry(tmp_path / "reg")


# ------------------------------------------------------------------------ 7: the pool's state
ALL_COMMANDS = [("status",), ("status", "--check"), ("status", "--json"), ("watch", "-n", "0.1"), ("errors",),
                ("errors", "--list"), ("log", "1"), ("workers",), ("timeline", "-o", "{dir}/t.png"),
                ("submit", "--no-conf"), ("resubmit", "--errors", "--no-conf"), ("kill", "--no-conf"),
                ("reset", "--all", "--no-conf")]


@pytest.mark.parametrize("how", ["garbage", "truncate", "delete"])
def test_a_damaged_pool_state_is_named_by_every_command_and_repair_rebuilds_it(tmp_path, how):
    """Issue 24, 7: a damaged pool/state.pkl made the registry unopenable and unrepairable, and
    all the commands printed a traceback. Now it is named like every table, and repair rebuilds
    it from the claim log, the queue files and the workers' files."""
    reg = ten_jobs(tmp_path / "reg", run=())
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.submit_workers(2, ids=range(1, 8), reg=reg)
    assert bt.wait_for_jobs(reg=reg)
    workers = bt.get_workers(reg=reg)[["worker_id", "batch_id", "claimed"]]
    reg.cluster_functions.close()
    reg.lease.release()
    damage(reg.layout.pool_state, how)
    with pytest.raises(bt.CorruptFileError, match=r"pool/state\.pkl: the registry's pool state table .*repair_registry"):
        bt.load_registry(tmp_path / "reg")
    for args in ALL_COMMANDS:
        args = [a.format(dir=tmp_path) for a in args]
        code, out, err = command(args[0], tmp_path / "reg", *args[1:])
        assert code == cli.FAILED and "pool/state.pkl" in err and "Traceback" not in err, (args, code, out, err)
    report = bt.repair_registry(tmp_path / "reg")
    assert report["pool"][0] == "rebuilt pool/state.pkl: 2 worker(s), 1 queue(s)"
    again = bt.load_registry(tmp_path / "reg", writeable=True, make_default=False)
    rebuilt = bt.get_workers(reg=again)
    # a worker that claimed nothing may have been cancelled while still queued (nothing was left for
    # it; it wrote no goodbye): with its batch id unknown too, it is rebuilt fenced, as stale
    claimed = rebuilt["claimed"] > 0
    assert set(rebuilt.loc[claimed, "state"]) == {"exited"} and set(rebuilt.loc[~claimed, "state"]) <= {"exited", "stale"}
    # a worker's batch id is known from the jobs it claimed (one that claimed none: unknown)
    workers = workers.sort_values("worker_id", ignore_index=True)
    rebuilt = rebuilt.sort_values("worker_id", ignore_index=True)
    assert rebuilt["worker_id"].tolist() == workers["worker_id"].tolist()
    assert rebuilt["claimed"].tolist() == workers["claimed"].tolist() and sum(workers["claimed"]) == 7
    assert [b if c else None for b, c in zip(workers["batch_id"], workers["claimed"])] == \
        [None if pd.isna(b) else b for b in rebuilt["batch_id"]]
    again.cluster_functions = bt.make_cluster_functions_interactive()
    bt.submit_workers(1, reg=again)  # the pool goes on
    assert bt.reduce_results_list(reg=again) == [2 * x for x in range(1, 11)]


def test_a_worker_the_rebuilt_pool_state_cannot_follow_is_fenced(tmp_path):
    """A worker whose batch id no evidence gives (it claimed nothing the status recorded, it said
    no goodbye) cannot be listed: it is fenced, so it never starts a job nobody would see."""
    reg = ten_jobs(tmp_path / "reg", run=())
    bt.submit_workers(1, ids=[1, 2], reg=reg)
    reg.lease.release()
    ghost = "worker" + "ab" * 16
    reg.layout.worker_beat(ghost).touch()  # a worker that started and beats, of which nothing else is known
    reg.layout.pool_state.unlink()
    report = bt.repair_registry(tmp_path / "reg")
    assert any(f"worker {ghost}: its batch id is not known; fenced" in note for note in report["pool"])
    assert f"D {ghost}" in (reg.layout.pool / "claims.log").read_text().splitlines()
    again = bt.load_registry(tmp_path / "reg", make_default=False)
    states = dict(zip(*(bt.get_workers(reg=again)[c].tolist() for c in ("worker_id", "state"))))
    assert states[ghost] == "stale" and list(states.values()).count("exited") == 1


# ---------------------------- 13: a copy is a new folder; 16: a folder that cannot be written
def test_a_copy_of_a_registry_whose_session_lives_opens_writeable_and_the_original_stays_held(reg, tmp_path):
    """Issue 24, 13: the copy inherited the live lease of the original's session (same host, a
    live pid): it could not be opened writeable. A lease names the folder it was taken for."""
    bt.batch_map(double, x=[1, 2, 3])
    bt.submit_jobs([1])
    shutil.copytree(reg.file_dir, tmp_path / "copy")
    code = f"""
        import batchtools as bt
        r = bt.load_registry({str(tmp_path / 'copy')!r}, writeable=True)
        r.cluster_functions = bt.make_cluster_functions_interactive()
        bt.submit_jobs([2], reg=r)
        print(bt.reduce_results_list(reg=r))
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[2,", "4]"]
    assert "it was taken for" in proc.stderr and "this folder is a copy" in proc.stderr
    proc = subprocess.run([sys.executable, "-c", f"import batchtools as bt; bt.load_registry({str(reg.file_dir)!r}, "
                                                 "writeable=True)"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "is open for writing in another session" in proc.stderr
    assert bt.reduce_results_list() == [2]  # the original's session goes on, unaffected
    bt.submit_jobs([3])
    assert bt.reduce_results_list() == [2, 6]


def test_a_copy_made_in_the_middle_of_a_change_rolls_back_its_own_files_only(reg, tmp_path):
    """The undo log of a change in progress named absolute paths: the copy's next writeable load
    rolled back the original's files (and left its own). Its paths are the folder's own now."""
    bt.batch_map(double, x=[1, 2])
    status = reg.layout.table("status")
    change = txn.Transaction(reg.file_dir)
    change.before_write(status)  # a change that has backed up status.pkl, then is copied mid-way
    committed = status.read_bytes()
    atomic_write_bytes(status, b"the change's version")  # registry files are replaced, never written in place
    shutil.copytree(reg.file_dir, tmp_path / "copy")
    change.commit()  # the original's change commits
    original = snapshot(reg.file_dir)
    assert txn.recover(tmp_path / "copy")
    assert (tmp_path / "copy" / "status.pkl").read_bytes() == committed
    assert snapshot(reg.file_dir) == original


def test_a_damaged_undo_log_is_named_and_repair_undoes_what_it_still_names(tmp_path):
    """The undo log of a change a session did not finish, damaged (a line that names no file):
    the change cannot be undone in full. A writeable load said "embedded null byte"; now it names
    .txn/manifest and repair_registry, and changes nothing; repair undoes what the log names."""
    reg = ten_jobs(tmp_path / "reg", run=(1,))
    reg.lease.release()
    tags, status = reg.layout.table("tags"), reg.layout.table("status")
    committed = {p: p.read_bytes() for p in (tags, status)}
    change = txn.Transaction(reg.file_dir)
    for p in (tags, status):  # a change that wrote two tables, then its session died
        change.before_write(p)
        atomic_write_bytes(p, b"the change's version")
    manifest = reg.layout.txn / "manifest"
    first, second = manifest.read_text().splitlines()
    manifest.write_bytes(f"{first}\ngar\x00bage\n{second}\n".encode())
    before = snapshot(tmp_path / "reg")
    with pytest.raises(bt.CorruptFileError, match=r"\.txn/manifest: the undo log of a change a session did not "
                                                  r"finish is damaged \(1 line\(s\) name no file\).*repair_registry"):
        bt.load_registry(tmp_path / "reg", writeable=True)
    assert snapshot(tmp_path / "reg") == before
    code, out, err = command("submit", tmp_path / "reg", "--no-conf")
    assert code == cli.FAILED and ".txn/manifest" in err and snapshot(tmp_path / "reg") == before
    assert bt.reduce_results_list(reg=bt.load_registry(tmp_path / "reg", make_default=False)) == [2]  # read-only
    report = bt.repair_registry(tmp_path / "reg")
    assert report["unreadable"] == [str(manifest)] and not reg.layout.txn.exists()
    assert tags.read_bytes() == committed[tags]
    again = bt.load_registry(tmp_path / "reg", writeable=True, make_default=False)
    again.cluster_functions = bt.make_cluster_functions_interactive()
    bt.submit_jobs(reg=again)
    assert bt.reduce_results_list(reg=again) == [2 * x for x in range(1, 11)]


def test_a_damaged_checkpoint_makes_the_job_start_over_saying_so(reg):
    """A checkpoint cut short or overwritten failed the job with a bare EOFError (naming no file)
    at every run; the job starts over instead (the true result, later), and its log says why."""
    def total(n, job):
        i, acc = job.restored or (0, 0)
        while i < n:
            i, acc = i + 1, acc + i
            job.checkpoint((i, acc))
        return acc

    bt.batch_map(total, n=[4])
    path = reg.layout.checkpoint(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps((3, 100))[:7])  # an earlier run's checkpoint, cut short
    bt.submit_jobs()
    assert bt.reduce_results_list() == [6] and not path.exists()
    assert any(f"{path}: the checkpoint of job 1 cannot be read" in line and "the job starts over" in line
               for line in bt.get_log(1))


def test_a_writeable_load_of_an_unwritable_copy_says_the_folder_is_not_writeable(reg, tmp_path):
    bt.batch_map(double, x=[1, 2])
    bt.submit_jobs([1])
    shutil.copytree(reg.file_dir, tmp_path / "ro")
    os.chmod(tmp_path / "ro", 0o555)
    code = textwrap.dedent(f"""
        import batchtools as bt
        try:
            bt.load_registry({str(tmp_path / 'ro')!r}, writeable=True)
        except Exception as e:
            print(type(e).__name__, e)
        print(bt.reduce_results_list(reg=bt.load_registry({str(tmp_path / 'ro')!r})))
    """)
    # root may write anywhere: drop that power (CAP_DAC_OVERRIDE) as an ordinary user does not have it
    prefix = ["setpriv", "--inh-caps=-dac_override", "--bounding-set=-dac_override"] if os.geteuid() == 0 else []
    if prefix and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: every folder is writeable")
    proc = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    os.chmod(tmp_path / "ro", 0o755)
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first.startswith("ReadOnlyRegistryError the registry at ") and "cannot be opened for writing: you may not " \
        "write there (Permission denied). Load it read-only" in first and ".lease" not in first
    assert second == "[2]"


# --------------------------------------------------------------- 16: scripts, logs, terminals
def test_a_list_of_partitions_reaches_the_script_as_slurm_takes_it(reg):
    """partition=["a", "b"] was dropped from the script without a word; a list of plain values is
    joined by commas (Slurm's list of partitions), an unsafe element refused like a plain value."""
    bt.batch_map(double, x=[1])
    script = bt.cf_brew_template(reg, bt.cf_read_brew_template("slurm"),
                                 bt.make_job_collection([1], resources={"partition": ["short", "long"]}))
    assert "#SBATCH --partition=short,long\n" in Path(script).read_text()
    with pytest.raises(ValueError, match=r"resources: partition='a;reboot' has characters that are not allowed"):
        bt.make_cluster_functions_slurm().check_resources({"partition": ["short", "a;reboot"]})


def test_the_node_makes_its_log_unwritable_by_others_whatever_made_it(tmp_path):
    """Under umask 000 a scheduler creates the job's log 0666 (Slurm's --output); the node takes
    write access from group and world before it writes a line."""
    reg = bt.make_registry(file_dir=tmp_path / "reg", seed=1, conf_file=None, make_default=False)
    bt.batch_map(double, x=[1], reg=reg)
    jc = bt.make_job_collection([1], reg=reg)
    path = reg.layout.job_collection(jc.job_hash)
    write_pickle(path, jc)
    log = Path(jc.log_file)
    log.touch()
    os.chmod(log, 0o666)  # as the scheduler made it
    subprocess.run([sys.executable, "-m", "batchtools.worker", str(path)], check=True, timeout=60,
                   preexec_fn=lambda: os.umask(0))
    assert log.stat().st_mode & 0o777 == 0o644 and "Calculation finished" in log.read_text()


@pytest.mark.slurm
def test_slurm_job_logs_are_not_writable_by_others_under_umask_000(tmp_path):
    require_daemon(slurm_problem(), "BATCHTOOLS_TEST_SLURM")
    code = textwrap.dedent(f"""
        import os, batchtools as bt
        os.umask(0)
        reg = bt.make_registry(file_dir={str(tmp_path / 'reg')!r}, seed=1, conf_file=None)
        reg.cluster_functions = bt.make_cluster_functions_slurm(scheduler_latency=0, fs_latency=5)
        reg.cluster_functions.poll, reg.cluster_functions.poll_max = 0.5, 2
        bt.batch_map(lambda x: 2 * x, x=[1, 2])
        bt.submit_jobs([1], resources={{"walltime": 120}})  # a job's log, and an array task's
        bt.submit_jobs(bt.find_jobs(ids=[2]).assign(chunk=1), resources={{"walltime": 120, "chunks_as_arrayjobs": True}})
        ok = bt.wait_for_jobs(timeout=600)
        print(ok, bt.reduce_results_list())
        if not ok:
            bt.kill_jobs()
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=700, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.split() == ["True", "[2,", "4]"], proc.stdout + proc.stderr
    logs = list((tmp_path / "reg" / "logs").glob("*.log"))
    assert logs and all(p.stat().st_mode & 0o022 == 0 for p in logs), [oct(p.stat().st_mode) for p in logs]


def test_the_command_line_shows_text_from_the_registry_literally(reg):
    """An error message, a job's output or a tag with terminal escapes (a title change, clearing
    the screen, a carriage return hiding text) reached the terminal raw: they are shown escaped."""
    def evil(x):
        print("\x1b]0;owned\x07 output\x1b[2J\rhidden")
        raise ValueError("\x1b[31mred\x1b[0m \u202eevil")

    bt.batch_map(evil, x=[1])
    bt.submit_jobs()
    reg.lease.release()
    for args in (("errors",), ("errors", "--list"), ("log", "1")):
        code, out, err = command(args[0], reg.file_dir, *args[1:])
        assert code == 0 and "\x1b" not in out + err and "\r" not in out and "\u202e" not in out, (args, out)
        assert "\\x1b[31mred\\x1b[0m \\u202eevil" in out
    assert "\\x1b]0;owned\\x07 output\\x1b[2J\nhidden" in command("log", reg.file_dir, "1")[1]  # a CR ends a line


def test_no_command_prints_a_traceback_even_for_a_failure_nothing_names(regdir_map, monkeypatch):
    def broken(args):
        raise KeyError("something nobody foresaw")

    monkeypatch.setitem(cli.COMMANDS, "errors", broken)
    code, out, err = command("errors", regdir_map)
    assert code == cli.FAILED and "Traceback" not in err
    assert "errors failed: KeyError: 'something nobody foresaw'" in err and "repair_registry" in err and "-v" in err
    code, out, err = command("-v", "errors", regdir_map)
    assert code == cli.FAILED and "Traceback" in err  # asked for: where it failed


@pytest.fixture
def regdir_map(tmp_path):
    ten_jobs(tmp_path / "reg").lease.release()
    return tmp_path / "reg"



# -------------- the acceptance test: every file of the registry directory, missing or damaged
MAP = textwrap.dedent("""
    import os, subprocess, sys, batchtools as bt

    def g(x=0, factor=0):  # more_args gives factor=2: a job run without it would return 0
        if x == 6:
            raise ValueError("six")
        return factor * x

    reg = bt.make_registry(file_dir=sys.argv[1], seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(g, x=range(1, 11), more_args={"factor": 2})
    bt.batch_export({"unused": 1})
    bt.submit_jobs([1, 2, 3], resources={"walltime": 60})  # packed results
    bt.submit_jobs([6])  # an error
    bt.add_job_tags([1], "a")
    bt.submit_workers(1, ids=[4, 5])  # the pool: queue, claims, worker files, state
    reg.cluster_functions = bt.make_cluster_functions_multicore(1)
    bt.submit_jobs([7])  # a result file of its own, a job collection, a log of its own
    bt.wait_for_jobs()
    reg.cluster_functions.close()

    accepted = []

    def node(reg, jc):  # a scheduler that runs the node later
        accepted.append(str(reg.layout.job_collection(jc.job_hash)))
        return bt.make_submit_job_result(0, "node-" + jc.job_hash)

    reg.cluster_functions = bt.make_cluster_functions("Node", node, store_job_collection=True)
    bt.submit_jobs([8])
    subprocess.run([sys.executable, "-m", "batchtools.worker", *accepted], check=True)
    assert any(n.endswith(".pkl") for n in os.listdir(reg.layout.dir("updates")))  # its report, not merged
    os._exit(0)  # no goodbye: the lease of a session that died stays
""")

EXPERIMENTS = textwrap.dedent("""
    import os, sys, pandas as pd, batchtools as bt

    reg = bt.make_experiment_registry(file_dir=sys.argv[1], seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.add_problem("p", data=10, fun=lambda data, job, n: data + n, seed=1, cache=True)
    bt.add_algorithm("a", fun=lambda data, job, instance, k: instance * k)
    bt.add_experiments({"p": pd.DataFrame({"n": [1, 2]})}, {"a": pd.DataFrame({"k": [1, 3]})}, repls=2)
    bt.submit_jobs([1, 2, 3, 4])
    bt.add_experiments({"p": pd.DataFrame({"n": [5]})}, {"a": pd.DataFrame({"k": [2]})})
    bt.submit_jobs([9])
    reg.lease.release()
""")

# a session that died: in the middle of a change to the tags, while it handed a resubmission of a
# done job (its result set aside) and another job over; a job's node that died after its checkpoint;
# job scripts kept, a quarantined update file, the jobs' own folders
DEAD = textwrap.dedent("""
    import os, subprocess, sys, batchtools as bt
    from batchtools.core import registry as core_registry

    def g(x, job):  # goes on from its checkpoint: half + x whatever the run
        (job.external_dir / "note.txt").write_text(str(x))  # a folder of the job's own
        half = job.restored
        if half is None:
            half = x
            job.checkpoint(half)
            if x == 3 and os.environ.get("DIE_AFTER_CHECKPOINT"):
                os._exit(1)  # its node dies, its checkpoint saved
        return half + x

    reg = bt.make_registry(file_dir=sys.argv[1], seed=1, conf_file=None)
    accepted = []

    def node(reg, jc):  # a scheduler that runs the node later, from a job script
        bt.cf_brew_template(reg, bt.cf_read_brew_template("#!/bin/sh\\n# {{ job_name }}\\n"), jc)
        accepted.append(str(reg.layout.job_collection(jc.job_hash)))
        return bt.make_submit_job_result(0, "node-" + jc.job_hash)

    def run_nodes():
        for path in accepted:
            subprocess.run([sys.executable, "-m", "batchtools.worker", path],
                           env={**os.environ, "DIE_AFTER_CHECKPOINT": "1"})
        accepted.clear()

    reg.cluster_functions = bt.make_cluster_functions("Node", node, store_job_collection=True, store_job_files=True)
    bt.batch_map(g, x=range(1, 6))
    bt.submit_jobs([1, 3])
    run_nodes()  # job 3's node dies after its checkpoint
    (reg.layout.dir("updates") / ("job" + "0" * 32 + "-garbage-0.pkl")).write_bytes(b"not status rows")
    bt.sync_registry()  # quarantined

    write = core_registry.atomic_write_bytes

    def dies_after_tags(path, data, **kw):  # the master dies in the middle of a change
        write(path, data, **kw)
        if str(path).endswith("tags.pkl"):
            run_nodes()  # the scheduler runs the jobs all the same
            os._exit(0)

    def node_then_tag(reg, jc):
        node(reg, jc)
        if 2 in jc.job_ids:  # the last chunk: a change to the tags while it is handed over
            core_registry.atomic_write_bytes = dies_after_tags
            bt.add_job_tags([2], "b", reg=reg)
        return bt.make_submit_job_result(0, "node-" + jc.job_hash)

    reg.cluster_functions = bt.make_cluster_functions("Node", node_then_tag, store_job_collection=True,
                                                      store_job_files=True)
    bt.submit_jobs([1, 2])  # job 1 again: its result is set aside while it is handed over
""")


def make(script: str, path: Path) -> Path:
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=120, cwd=path.parent)
    return path


def truth_map(x: int):
    return None if x == 6 else 2 * x


def truth_experiment(pars: dict):
    return (10 + pars["prob_pars"]["n"]) * pars["algo_pars"]["k"]


@pytest.fixture(scope="module")
def templates(tmp_path_factory):
    root = tmp_path_factory.mktemp("templates")
    return {"map": make(MAP, root / "map"), "experiment": make(EXPERIMENTS, root / "experiment"),
            "dead": make(DEAD, root / "dead")}


def every_command(path: Path, conf: Path) -> list[tuple[int, str, str]]:
    """Each of the 13 commands in turn on the registry at ``path`` (the acting ones run their jobs
    here, with the Interactive backend of the configuration file ``conf``)."""
    out = []
    for args in ALL_COMMANDS:
        args = [a.format(dir=path.parent) if a != "--no-conf" else "--conf" for a in args] + \
            ([str(conf)] if "--no-conf" in args else [])
        out.append(command(args[0], path, *args[1:]))
    return out


@pytest.fixture(scope="module")
def interactive_conf(tmp_path_factory):
    conf = tmp_path_factory.mktemp("conf") / "batchtools.conf.py"
    conf.write_text("cluster_functions = bt.make_cluster_functions_interactive()\n")
    return conf


@pytest.fixture(scope="module")
def base_codes(templates, interactive_conf, tmp_path_factory):
    """The exit codes of every command on an undamaged copy of each registry."""
    out = {}
    for kind, template in templates.items():
        copy = tmp_path_factory.mktemp("undamaged") / kind
        shutil.copytree(template, copy)
        out[kind] = [code for code, _, _ in every_command(copy, interactive_conf)]
    return out


def cli_answers(path: Path) -> dict:
    """What each looking command says of the registry at ``path``, normalised (no times)."""
    out = {}
    for name, args in (("status", ("status", path, "--json")), ("check", ("status", path, "--check")),
                       ("errors", ("errors", path)), ("log", ("log", path, 1)), ("workers", ("workers", path))):
        code, stdout, stderr = command(*args)
        if name == "status" and code == 0:
            stdout = json.dumps({k: v for k, v in json.loads(stdout).items() if k != "timestamp"})
        if name == "check":
            stdout = stdout.split("\n", 1)[-1]  # the first line names the time
        if name == "workers":  # the workers, whatever their state (a lost goodbye file makes one "gone")
            stdout = str(len(stdout.splitlines()))
        out[name] = (code, stdout, stderr)
    return out


def named(message: str, rel: str, kind: str, aliases=()) -> bool:
    """Whether an error message names the damaged file (``rel``), for a table its table, or one of
    ``aliases`` (the file a damaged backup was put back as)."""
    names = {rel, Path(rel).name, *aliases}
    table = Path(rel).name.split(".")[0]
    if kind == "table":
        names |= {f"{table}.pkl", f"{table} table"}
    if rel.startswith("packs/"):  # a lost pack is named by its collection (its writer's part cannot be known)
        names.add(table)
    return any(n in message for n in names)


# each file of docs/architecture.md's registry directory, by pattern: those a settled registry has,
# and those a session that died in the middle of its work leaves (the undo log of a change, the
# submission journal, a result set aside, a checkpoint); not made here: a GPU worker's slot logs and
# HyperQueue's cancel markers
MAP_FILES = ["registry.pkl", "registry.pkl.prev", "defs.pkl", "defs.pkl.prev", "status.pkl", "status.pkl.prev",
             "resources.pkl", "resources.pkl.prev", "tags.pkl", "tags.pkl.prev", "attempts.pkl", "status.counts",
             "user_function.pkl", "more_args.pkl", "exports/*.pkl", "jobs/job*.pkl", "lease.json",
             "results/*.pkl", "packs/job*.pack", "packs/pool*.pack", "logs/interactive-*.log", "logs/job*.log",
             "updates/*.pkl", "pool/queue/*.pkl", "pool/claims.log", "pool/claims.lock",
             "pool/workers/*.beat", "pool/workers/*.exit", "pool/state.pkl", "attempts.pkl.prev"]
EXPERIMENT_FILES = ["registry.pkl", "designs.pkl", "designs.pkl.prev", "defs.pkl", "defs.pkl.prev", "status.pkl",
                    "status.pkl.prev", "problems/*.pkl", "algorithms/*.pkl", "external/cache/*/*/*.pkl"]
DEAD_FILES = [".txn/manifest", ".txn/*.bak", "submissions.log", "results/.prev-*.pkl", "results/[0-9]*.pkl",
              "checkpoints/*.pkl", "jobs/*.sh", "updates/job*.pkl", "updates/quarantine/*.pkl", "external/*/note.txt",
              "tags.pkl", "tags.pkl.prev", "status.pkl", "lease.json"]
TABLES = {"registry.pkl", "defs.pkl", "status.pkl", "resources.pkl", "tags.pkl", "attempts.pkl", "designs.pkl",
          "pool/state.pkl"}


def cases():
    for kind, files in (("map", MAP_FILES), ("experiment", EXPERIMENT_FILES), ("dead", DEAD_FILES)):
        for pattern in files:
            for how in ("delete", "truncate", "garbage"):
                if how != "delete" and pattern.endswith((".lock", ".beat", ".exit")):
                    continue  # their content means nothing: only their existence (and age) counts
                yield pytest.param(kind, pattern, how, id=f"{kind}-{how}-{pattern}")


def expected(kind: str, reg) -> dict:
    """The true result of every job of the undamaged registry (None: the job fails)."""
    ids = bt.find_jobs(reg=reg)["job_id"].tolist()
    if kind == "map":
        return {i: truth_map(i) for i in ids}
    if kind == "dead":
        return {i: 2 * i for i in ids}
    pars = bt.get_job_pars(reg=reg)
    return {i: truth_experiment(p) for i, p in zip(pars["job_id"].tolist(), pars.to_dict("records"))}


@pytest.mark.parametrize("kind,pattern,how", list(cases()))
def test_each_registry_file_missing_or_damaged_gives_the_truth_or_a_named_error(templates, base_codes,
                                                                                  interactive_conf, tmp_path, kind,
                                                                                  pattern, how):
    """Every file of the registry directory, deleted, cut in half or overwritten with garbage: load
    (read-only and writeable), status, reduce, every looking command and repair each give the
    truth or an error naming the file; repair either refuses (naming it, changing nothing) or
    leaves a registry whose every answer is true, and whose lost work runs again to the true values."""
    template = templates[kind]
    base = bt.load_registry(template, make_default=False)
    truth = expected(kind, base)
    base_status = bt.get_status(reg=base).to_dict()
    base_done = bt.find_done(reg=base)["job_id"].tolist()
    base_cli = cli_answers(template) if kind != "experiment" else None
    path = tmp_path / "reg"
    shutil.copytree(template, path)
    found = sorted(path.glob(pattern))
    assert found, f"the registry has no file {pattern}"
    rel = str(found[0].relative_to(path))
    what = "table" if rel in TABLES else "file"
    aliases = []  # an unfinished change's backup is put back in place of the file it is the backup of
    if rel.startswith(".txn/") and rel.endswith(".bak"):
        aliases = [p for p, _, b in (line.partition("\t") for line in (path / ".txn" / "manifest").read_text()
                                     .splitlines()) if b == rel]
    damage(found[0], how)

    def true_or_named(call, check):
        try:
            value = call()
        except Exception as e:
            assert isinstance(e, (OSError, RuntimeError)), f"{type(e).__name__}: {e}"
            assert named(str(e), rel, what, aliases), f"the error does not name {rel}: {e}"
            return e
        check(value)
        return value

    # read-only: what is known, or the error naming the file; less than the truth only where a
    # warning names the file (a lost submission journal: the runs it recorded are unknown)
    with warnings_logged() as warned:
        ro = true_or_named(lambda: bt.load_registry(path, make_default=False), lambda r: None)
        if not isinstance(ro, Exception):
            status = bt.get_status(reg=ro).to_dict()
            if status != base_status:
                assert named(warned.text, rel, what, aliases), f"status {status} instead of {base_status}"
                assert all(status[k] <= base_status[k] for k in ("submitted", "started", "done", "error"))
            known = [i for i in base_done if i in set(bt.find_done(reg=ro)["job_id"].tolist())]
            true_or_named(lambda: bt.reduce_results_list(known, reg=ro),
                          lambda v: v == [truth[i] for i in known] or pytest.fail(f"results {v}"))
    # the command line: the undamaged answer, or exit 1 naming the file; never a traceback
    if base_cli is not None:
        for name, (code, stdout, stderr) in cli_answers(path).items():
            assert "Traceback" not in stderr, stderr
            if (code, stdout) != base_cli[name][:2]:  # else an error, or at least a warning, naming the file
                assert code in (cli.FAILED, base_cli[name][0]) and named(stderr, rel, what, aliases), \
                    f"`batchtools {name}` said {code} {stdout!r} {stderr!r} instead of {base_cli[name][:2]}"
    # all 13 commands, the acting ones too (on a copy of their own): their usual exit, or 1 naming the file
    shutil.copytree(path, tmp_path / "commands")
    for args, base, (code, out, err) in zip(ALL_COMMANDS, base_codes[kind], every_command(tmp_path / "commands",
                                                                                           interactive_conf)):
        assert "Traceback" not in err, (args, err)
        assert code == base or (code == cli.FAILED and named(err, rel, what, aliases)), \
            f"`batchtools {' '.join(args)}` said {code} {out[:200]!r} {err[:300]!r}, undamaged {base}"
    # repair: refuses naming the file and changes nothing, or every answer is true afterwards
    before = snapshot(path)
    report = true_or_named(lambda: bt.repair_registry(path), lambda r: None)
    if isinstance(report, Exception):
        after = snapshot(path)
        after.pop("lease.json", None), before.pop("lease.json", None)  # repair took the dead session's lease
        assert after == before
        return
    reg = bt.load_registry(path, writeable=True, make_default=False)
    done = bt.find_done(reg=reg)["job_id"].tolist()
    assert set(done) <= set(base_done), f"jobs {sorted(set(done) - set(base_done))} done from nothing"
    values = true_or_named(lambda: bt.reduce_results_list(done, reg=reg),
                           lambda v: v == [truth[i] for i in done] or pytest.fail(f"results {v}"))
    if isinstance(values, Exception):  # a damaged result: do what the error says
        bt.reset_jobs([int(re.search(r"reset_jobs\(\[(\d+)\]\)", str(values)).group(1))], reg=reg)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    again = bt.find_not_done(reg=reg)["job_id"].tolist()
    bt.reset_jobs(bt.find_errors(reg=reg), reg=reg)
    bt.submit_jobs(again, reg=reg)
    # every job now gives its true value, or fails: as it should (job 6), or saying the set-up file is lost
    done = bt.find_done(reg=reg)["job_id"].tolist()
    assert bt.reduce_results_list(done, reg=reg) == [truth[i] for i in done]
    errors = bt.get_error_messages(reg=reg)
    for job_id, message in zip(errors["job_id"].tolist(), errors["message"].tolist()):
        assert (truth[job_id] is None and "six" in message) or named(message, rel, what, aliases), \
            f"job {job_id} failed without naming {rel}: {message}"
    assert sorted(done + errors["job_id"].tolist()) == sorted(truth)
    reg.lease.release()


def test_a_lost_journal_leaves_runs_the_status_does_not_know_said_and_repair_adopts_them(templates, tmp_path):
    """A session died while it handed job 2 over; its node ran it. Without the submission journal
    the status knows nothing of that run: job 2 shows never submitted (never done with a made-up
    value), a warning names the run and the remedy, and repair adopts what the run left."""
    path = tmp_path / "reg"
    shutil.copytree(templates["dead"], path)
    base = bt.load_registry(templates["dead"], make_default=False)
    assert bt.find_done(reg=base)["job_id"].tolist() == [1, 2]
    (path / "submissions.log").unlink()
    with warnings_logged() as warned:
        ro = bt.load_registry(path, make_default=False)
        assert bt.find_done(reg=ro)["job_id"].tolist() == [1] and 2 in bt.find_not_submitted(reg=ro)["job_id"].tolist()
    assert re.search(r"job\(s\) \[2\] ran in collection job\w+, which the status does not know.*submissions\.log"
                     r".*repair_registry", warned.text), warned.text
    bt.repair_registry(path)
    again = bt.load_registry(path, make_default=False)
    assert bt.find_done(reg=again)["job_id"].tolist() == [1, 2] and bt.reduce_results_list(reg=again) == [2, 4]
