"""The paths of a million jobs (issue 30), at small sizes: sync applies many update rows in
batches (the status it leaves is the one a single batch leaves, requeued runs of a collection
included); a submission looks job specs up in windows (every chunk gets its own jobs' specs);
many results are read pack by pack (in the order asked for, files and packs mixed)."""

import pickle

import numpy as np
import pandas as pd
import pytest

import batchtools as bt
from batchtools.core import submission
from batchtools.core.contract.protocol import new_row
from batchtools.core.jobstate import sync


def _registry(path):
    reg = bt.make_registry(file_dir=path, seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive(external=True)
    bt.batch_map(lambda x: x, x=range(6))
    hashes = [f"job{c * 32}" for c in "ab"]  # two collections of three jobs
    st = reg.status
    st.loc[:, ["submitted", "attempt", "restart"]] = [100.0, 1.0, 0.0]
    st["job_hash"] = np.array([hashes[i // 3] for i in range(6)], dtype=object)
    st["batch_id"] = np.array(["7", "7", "7", "8", "8", "8"], dtype=object)
    reg.save()
    # collection a: a start report, then the ends (one failed); collection b: requeued once
    files = {
        f"{hashes[0]}-t0-0": [[1, 101.0] + new_row(1)[2:], [2, 102.0] + new_row(2)[2:]],
        f"{hashes[0]}-t0-1": [],
        f"{hashes[1]}-t1-0": [],
        f"{hashes[1]}-s2-0": [],  # the later run's file: read first (files are read by name)
    }
    row = new_row(1)
    row[1], row[2], row[8], row[10] = 101.0, 110.0, 0.5, 110.0
    files[f"{hashes[0]}-t0-1"].append(row)
    row = new_row(2)
    row[2], row[3], row[10] = 111.0, "ValueError: two", 111.0
    files[f"{hashes[0]}-t0-1"].append(row)
    for job_id, restart, start, end, done, reason in [(4, 0, 101, 150, None, "requeued"),
                                                       (5, 0, 101, 150, None, "requeued"),
                                                       (4, 1, 155, 205, 205.0, None),
                                                       (5, 1, 155, 206, 206.0, None),
                                                       (6, 1, 160, 207, 207.0, None)]:
        row = new_row(job_id)
        row[1], row[10], row[9], row[5] = float(start), float(end), float(restart), reason
        if done:
            row[2] = done
        files[f"{hashes[1]}-{'s2' if restart else 't1'}-0"].append(row)
    for name, rows in files.items():
        with open(reg.layout.update(*name.split("-", 1)), "wb") as fh:
            pickle.dump(rows, fh)
    return reg


def _state(reg):
    reg.sync()
    tab = bt.get_job_table().drop(columns=["job_pars"], errors="ignore")
    return tab, bt.get_job_attempts()


@pytest.mark.parametrize("batch", [1, 4])
def test_rows_applied_in_batches_leave_the_status_one_batch_leaves(tmp_path, monkeypatch, batch):
    whole_tab, whole_attempts = _state(_registry(tmp_path / "whole"))
    assert whole_tab["done"].notna().sum() == 5 and whole_tab["error"].notna().sum() == 1
    assert whole_tab["attempt"].tolist()[3:5] == [2, 2]  # the requeued run closed an attempt
    monkeypatch.setattr(sync, "APPLY_BATCH", batch)
    calls = []
    apply = sync._apply
    monkeypatch.setattr(sync, "_apply", lambda *a, **k: calls.append(len(a[1])) or apply(*a, **k))
    tab, attempts = _state(_registry(tmp_path / "batched"))
    assert len(calls) == 2 and sum(calls) == 9  # split where collection a's files end, b's runs together
    pd.testing.assert_frame_equal(tab, whole_tab)
    pd.testing.assert_frame_equal(attempts, whole_attempts)


def _id_and_x(x, job):
    return job.id, x


def test_a_submission_looks_specs_up_in_windows_and_each_chunk_gets_its_jobs(tmp_path, monkeypatch):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(_id_and_x, x=[f"v{i}" for i in range(1, 12)])
    monkeypatch.setattr(submission, "SPEC_WINDOW", 4)
    looked_up = []
    specs = reg.definitions.specs
    monkeypatch.setattr(reg.definitions, "specs", lambda ids: looked_up.append(len(ids)) or specs(ids))
    ids = bt.find_jobs()
    ids["chunk"] = [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]  # chunks of 3, 3 and 5 jobs
    bt.submit_jobs(ids)
    assert bt.reduce_results_list() == [(i, f"v{i}") for i in range(1, 12)]
    assert looked_up == [4, 3, 4]  # jobs 1-4 (chunk 1 and one of 2), 5-7 (the rest of 2 and one of 3), 8-11: once each


def _sized(x):
    return "y" * 70_000 if x % 7 == 0 else x  # every 7th result too large for a pack: a file of its own


def test_many_results_are_read_in_the_order_asked_for_packs_and_files_mixed(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(_sized, x=range(1, 31))
    ids = bt.find_jobs()
    ids["chunk"] = bt.chunk(ids["job_id"], n_chunks=3)  # shuffled: chunks interleave ids
    bt.submit_jobs(ids)
    assert len(list(reg.layout.dir("packs").iterdir())) >= 1 and len(list(reg.layout.dir("results").iterdir())) == 4
    want = list(range(30, 0, -1))
    assert bt.reduce_results_list(ids=want) == [_sized(x) for x in want]
    # a pack damaged where a result lies: the error names the job (as before the bulk read)
    pf = next(iter(reg.store._pack_index().files.values()))
    data = bytearray(open(pf.path, "rb").read())
    data[pf.offsets[0]] ^= 0xFF  # the first record's data (a record follows it)
    open(pf.path, "wb").write(bytes(data))
    reg.store._packs = None  # a new session's index
    with pytest.raises(bt.CorruptFileError, match=f"job {pf.ids[0]}"):
        bt.reduce_results_list()
