"""Trust: a read-only session (another process, a job reading its own registry, the command line)
never reports a live or finished job wrongly while the writeable session merges the nodes'
reports, saves the tables and deletes the merged update files. Each test pauses the reader at the
exact point (a hook on the function it is about to call, or a gate file in another process), lets
the master run, then lets the reader go on: no sleeps decide the interleaving."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd

import batchtools as bt
from batchtools.core import registry as registry_mod
from batchtools.core.contract.protocol import DONE, JOB_ID
from batchtools.core.jobstate import sync as sync_mod
from conftest import wait_until


def square_or_fail(x):
    if x == 2:
        raise ValueError("two fails")
    return x * x


def reported(reg) -> set[int]:
    """The jobs whose end the update files waiting in ``updates/`` report."""
    return {int(r[JOB_ID]) for u in sync_mod.read_updates(sync_mod.list_updates(reg)) if u.rows
            for r in u.rows if r[DONE] == r[DONE]}


def master_with_reports(tmp_path, ids=(1, 2)):
    """A writeable session whose jobs (1 done, 2 failed) ended; their reports wait in ``updates/``."""
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None, make_default=False)
    reg.cluster_functions = bt.make_cluster_functions_socket(2)
    bt.batch_map(square_or_fail, x=list(ids), reg=reg)
    bt.submit_jobs(reg=reg)  # the master does not sync after: the reports wait
    wait_until(lambda: reported(reg) == set(ids), 60, "both jobs' reports")
    return reg


def merge_and_delete(master) -> None:
    """What the master does at any sync: merge the reports, save the status, delete the files."""
    bt.sync_registry(reg=master)
    assert not reported(master) and not master.status_unsaved


def check_reader(reader) -> None:
    """A reader sees job 1 done (with its result) and job 2 failed, never anything else."""
    assert bt.load_result(1, reg=reader) == 1
    status = bt.get_status(reg=reader)
    assert (status.done, status.error, status.expired, status.submitted) == (1, 1, 0, 2), status
    assert bt.find_done(reg=reader)["job_id"].tolist() == [1]
    assert bt.find_errors(reg=reader)["job_id"].tolist() == [2]
    assert bt.find_expired(reg=reader).empty


def pause_reader_before_listing(monkeypatch, run_master):
    """The first time a read-only session lists the update files, ``run_master()`` runs first."""
    real = sync_mod.list_updates
    fired = []

    def hooked(reg):
        if not reg.writeable and not fired:
            fired.append(True)
            run_master()
        return real(reg)

    monkeypatch.setattr(sync_mod, "list_updates", hooked)
    return fired


def test_a_reader_loading_while_the_master_merges_and_deletes_the_reports(tmp_path, monkeypatch):
    """The reader read the status table (both jobs unfinished), then, before it lists
    ``updates/``, the master merges both reports, saves and deletes them: the reader must see the
    saved table, not the old one without the reports (job 1 'is not done', job 2 expired)."""
    master = master_with_reports(tmp_path)
    fired = pause_reader_before_listing(monkeypatch, lambda: merge_and_delete(master))
    reader = bt.load_registry(master.file_dir, writeable=False, make_default=False, conf_file=None)
    assert fired
    check_reader(reader)


def gated_master_and_reader(tmp_path):
    """A master whose jobs (1 done, 2 failed) wait at a gate file (returned, closed), and a reader
    loaded while they wait."""
    gate = tmp_path / "gate"
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None, make_default=False)
    reg.cluster_functions = bt.make_cluster_functions_socket(2)
    bt.batch_map(wait_then_square_or_fail, x=[1, 2], more_args={"gate": str(gate)}, reg=reg)
    bt.submit_jobs(reg=reg)
    return gate, reg, bt.load_registry(reg.file_dir, writeable=False, make_default=False, conf_file=None)


def test_a_reader_loaded_before_the_jobs_ended_sees_reports_merged_since(tmp_path):
    """A reader loaded while the jobs were unfinished (their reports not written yet) asks again
    after the master merged the reports and deleted their files."""
    gate, reg, reader = gated_master_and_reader(tmp_path)
    assert bt.find_done(reg=reader).empty
    gate.touch()
    wait_until(lambda: reported(reg) == {1, 2}, 60, "both jobs' reports")
    merge_and_delete(reg)
    check_reader(reader)


def wait_then_square_or_fail(x, gate):
    import os
    import time

    while not os.path.exists(gate):  # a gate: the test opens it
        time.sleep(0.01)
    return square_or_fail(x)


def test_a_reader_paused_between_two_tables_while_the_master_adds_jobs(tmp_path, monkeypatch):
    """The reader read ``defs``, then the master's add_experiments writes ``defs`` and ``status``
    with two more jobs and commits, then the reader reads ``status``: it must not pair the new
    status with the old definitions (jobs without parameters, or another job's)."""
    reg = bt.make_experiment_registry(file_dir=tmp_path / "e", seed=1, conf_file=None, make_default=False)
    bt.add_problem("p", data=1, reg=reg)
    bt.add_algorithm("a", fun=lambda instance, k: k, reg=reg)
    bt.add_experiments(algo_designs={"a": pd.DataFrame({"k": [1, 2]})}, reg=reg)
    real = registry_mod.read_frame
    fired = []

    def hooked(path, name, *args):
        out = real(path, name, *args)
        if name == "defs" and not fired:
            fired.append(True)
            bt.add_experiments(algo_designs={"a": pd.DataFrame({"k": [3, 4]})}, reg=reg)
        return out

    monkeypatch.setattr(registry_mod, "read_frame", hooked)
    reader = bt.load_registry(reg.file_dir, writeable=False, make_default=False, conf_file=None)
    assert fired
    pars = bt.get_job_pars(reg=reader)
    assert pars["job_id"].tolist() == [1, 2, 3, 4]
    assert [p["k"] for p in pars["algo_pars"]] == [1, 2, 3, 4]


READER = """
import os, sys, time
import batchtools as bt
from batchtools.core.jobstate import sync
from batchtools import cli

path, paused, go, what = sys.argv[1:5]
real = sync.list_updates


def hooked(reg):  # the first listing of a read-only session waits at the gate
    if not reg.writeable and not os.path.exists(paused):
        open(paused, "w").close()
        while not os.path.exists(go):
            time.sleep(0.01)
    return real(reg)


sync.list_updates = hooked
if what == "cli":
    sys.exit(cli.main(["status", path, "--json"]))
reg = bt.load_registry(path, make_default=False, conf_file=None)  # as a job reads its own registry
print(bt.load_result(1, reg=reg))
"""


def run_reader_at_gate(tmp_path, master, what: str) -> str:
    """Run a reader in another process, paused at its first listing of ``updates/`` while the
    master merges, saves and deletes; its output."""
    paused, go = tmp_path / "paused", tmp_path / "go"
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(READER), str(master.file_dir), str(paused),
                             str(go), what], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: paused.exists() or proc.poll() is not None, 120, "the reader at the gate")
        assert paused.exists(), proc.communicate()
        merge_and_delete(master)
        go.touch()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, 2, 3) and "Traceback" not in err, err  # 0: ok; cli: 2/3 jobs failed or left
    return out


def test_a_job_reading_its_own_registry_while_the_master_saves(tmp_path):
    """The reported case: another process opens the registry read-only and calls load_result
    once, while the master merges, saves and deletes the reports."""
    master = master_with_reports(tmp_path)
    assert run_reader_at_gate(tmp_path, master, "result").strip() == "1"


def test_the_command_line_status_while_the_master_saves(tmp_path):
    master = master_with_reports(tmp_path)
    counts = json.loads(run_reader_at_gate(tmp_path, master, "cli"))
    assert (counts["done"], counts["error"], counts["expired"]) == (1, 1, 0), counts
    assert np.isfinite(counts["timestamp"])


def test_the_command_line_summary_during_a_submission(tmp_path, capsys):
    """Every submitted job finished, so ``batchtools status`` may answer from the saved counts
    (status.counts); but while the master hands more jobs over (journalled as accepted, the
    status not saved yet) they are live: the answer must count them submitted (before: the saved
    counts, 1 submitted, at both chunks)."""
    from batchtools import cli

    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None, make_default=False)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(square_or_fail, x=[1, 3, 4], reg=reg)
    bt.submit_jobs(1, reg=reg)
    seen = []

    def status_now(reg_):  # post_submit_job: the chunk is accepted and journalled, the status not saved
        capsys.readouterr()
        cli.main(["status", str(reg.file_dir), "--json"])
        seen.append(json.loads(capsys.readouterr().out))

    reg.cluster_functions.hooks["post_submit_job"] = status_now
    bt.submit_jobs([2, 3], reg=reg)
    assert [(s["defined"], s["submitted"]) for s in seen] == [(3, 2), (3, 3)], seen  # one call per chunk


def test_the_command_line_summary_read_before_a_whole_submission(tmp_path, monkeypatch, capsys):
    """``batchtools status`` read the saved counts, then the master submitted (and saved, and
    emptied its journal) before the command looked for a journal: the counts it read are not
    the status any more, so it reads the table."""
    from batchtools import cli
    from batchtools.core.jobstate import counts as counts_mod

    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None, make_default=False)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(square_or_fail, x=[1, 3], reg=reg)
    bt.submit_jobs(1, reg=reg)
    real = counts_mod._size
    fired = []

    def hooked(path):  # the command is about to look at the journal: the master submits first
        if not fired:
            fired.append(True)
            bt.submit_jobs(2, reg=reg)
        return real(path)

    monkeypatch.setattr(counts_mod, "_size", hooked)
    capsys.readouterr()
    cli.main(["status", str(reg.file_dir), "--json"])
    counts = json.loads(capsys.readouterr().out)
    assert fired and (counts["submitted"], counts["done"]) == (2, 2), counts


def test_a_reader_asking_the_backend_while_the_master_merges_and_deletes(tmp_path, monkeypatch):
    """The reader merged what was there (nothing: the jobs wait at a gate), then, while it asks
    the backend which jobs are on the system, both jobs end and the master merges, saves and
    deletes their reports: the jobs the backend no longer lists are not expired, but done and
    failed, as the saved status says."""
    from batchtools.core.jobstate import state as state_mod

    gate, reg, reader = gated_master_and_reader(tmp_path)
    real = state_mod.on_system
    fired = []

    def hooked(reg_):
        if not reg_.writeable and not fired:
            fired.append(True)
            gate.touch()
            wait_until(lambda: reported(reg) == {1, 2}, 60, "both jobs' reports")
            merge_and_delete(reg)
        return real(reg_)

    monkeypatch.setattr(state_mod, "on_system", hooked)
    assert bt.find_errors([1, 2], reg=reader)["job_id"].tolist() == [2]
    assert fired
    check_reader(reader)
