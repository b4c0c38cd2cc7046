"""get_status answers from counts kept per version of the status table (issue 30: 10,000,000 jobs
in well under 0.1 s): a count is never stale, whatever path changed the status."""

import time

import numpy as np
import pandas as pd
import pytest

import batchtools as bt
from batchtools.core.jobstate.counts import Status
from batchtools.core.jobstate.state import masks, status_counts, table_counts
from batchtools.core.persistence.tables import set_rows
from conftest import wait_until


def recount(reg) -> dict[str, int]:
    """The counts as get_status gave them before the cache: sums of the masks over every job."""
    out = {k: int(v.sum()) for k, v in masks(reg).items() if k != "terminated"}
    return Status(defined=len(reg.status), **out).to_dict()  # as get_status shows them (held only if any)


def check(reg) -> dict[str, int]:
    """get_status equals a recount, and the cached table counts equal the table's."""
    got = bt.get_status(reg=reg).to_dict()
    assert status_counts(reg)[0] == table_counts(reg.status)
    assert got == recount(reg)
    return got


def sleepy(s):
    import time

    time.sleep(s)
    return s


def test_counts_follow_every_verb(tmp_path):
    """batch_map, submit (done, failed), sync of a running Multicore chunk, kill, reset, a refused
    submission (undone), reload writeable and read-only: get_status always equals a recount."""
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(lambda x: 1 / x, x=[1, 0, 2, 3])
    assert check(reg)["submitted"] == 0
    bt.submit_jobs([1, 2])
    assert check(reg) == {"defined": 4, "submitted": 2, "started": 2, "done": 1, "error": 1, "queued": 0,
                          "running": 0, "expired": 0, "system": 0}
    bt.reset_jobs([2])
    assert check(reg)["error"] == 0

    def refuse(*args, **kwargs):
        raise RuntimeError("the scheduler refused")

    cf = reg.cluster_functions
    submit, cf.submit_job = cf.submit_job, refuse
    before = check(reg)
    with pytest.raises(RuntimeError, match="refused"):
        bt.submit_jobs([2, 3])
    assert check(reg) == before
    cf.submit_job = submit

    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.submit_jobs(pd.DataFrame({"job_id": [3, 4], "chunk": [1, 1]}))
    assert bt.wait_for_jobs()
    assert check(reg)["done"] == 3

    # a running chunk: counted over the unfinished jobs only, with the backend's listing
    bt.clear_registry()
    bt.batch_map(sleepy, s=[60, 60, 0])
    bt.submit_jobs(pd.DataFrame({"job_id": [1, 2, 3], "chunk": [1, 1, 2]}))
    wait_until(lambda: bt.find_running()["job_id"].tolist() == [1] and bt.find_done()["job_id"].tolist() == [3],
               60, "job 1 to run and job 3 to end")
    got = check(reg)
    assert (got["queued"], got["system"], got["submitted"]) == (1, 2, 3)
    bt.kill_jobs()
    assert bt.wait_for_jobs()
    assert check(reg)["submitted"] == 1

    saved = check(reg)
    for writeable in (True, False):
        fresh = bt.load_registry(reg.file_dir, writeable=writeable, make_default=False)
        assert check(fresh) == saved
        fresh.lease and fresh.lease.release()


def test_a_read_only_session_counts_what_it_merged(tmp_path):
    """Reports merged in memory by a read-only session (it saves nothing) are counted."""
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(sleepy, s=[0, 0])
    ro = bt.load_registry(reg.file_dir, writeable=False, make_default=False)
    assert check(ro)["submitted"] == 0
    bt.submit_jobs()  # the writeable session does not sync: the nodes' reports wait in updates/
    ro = bt.load_registry(reg.file_dir, writeable=False, make_default=False)
    wait_until(lambda: bt.get_status(reg=ro).done == 2, 60, "the read-only session to merge both jobs' reports")
    assert check(ro)["done"] == 2


def test_experiments_added_and_removed(tmp_path):
    reg = bt.make_experiment_registry(file_dir=tmp_path / "e", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.add_problem("p", data=1)
    bt.add_algorithm("a", fun=lambda instance, k: k)
    bt.add_experiments(algo_designs={"a": pd.DataFrame({"k": [1, 2, 3]})})
    bt.submit_jobs([1, 2])
    assert check(reg)["done"] == 2
    bt.remove_experiments([1])
    assert check(reg) == {"defined": 2, "submitted": 1, "started": 1, "done": 1, "error": 0, "queued": 0,
                          "running": 0, "expired": 0, "system": 0}
    bt.add_experiments(algo_designs={"a": pd.DataFrame({"k": [4]})})
    assert check(reg)["defined"] == 3


def test_any_write_to_a_counted_column_is_a_new_version(tmp_path):
    """Random writes through every way the code or a user can change the status in memory
    (set_rows, in-place pandas writes, a new frame, a failed mutation's undo): the cached counts
    equal a recount after each."""
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    bt.batch_map(lambda x: x, x=range(200))
    rng = np.random.default_rng(7)
    cols = ("submitted", "started", "done", "error")

    def value(col, k):
        if col == "error":
            return np.array([None if v else "boom" for v in rng.random(k) < 0.5], dtype=object)
        return np.where(rng.random(k) < 0.3, np.nan, 1.0)

    for step in range(300):
        status_counts(reg)  # cache the current version
        st = reg.status
        col = cols[rng.integers(4)]
        i = int(rng.integers(len(st)))
        how = step % 6
        if how == 0:
            pos = rng.choice(len(st), 20, replace=False)
            set_rows(st, pos, col, value(col, 20))
        elif how == 1:
            st.loc[i, col] = value(col, 1)[0]
        elif how == 2:
            st.iloc[i, st.columns.get_loc(col)] = value(col, 1)[0]
        elif how == 3:
            st.at[i, col] = value(col, 1)[0]
        elif how == 4:
            reg.status = st.copy()
            set_rows(reg.status, np.array([i]), col, value(col, 1))
        else:
            before = table_counts(reg.status)
            with pytest.raises(RuntimeError):
                with reg.mutation("test"):
                    set_rows(reg.status, np.arange(len(st)), col, value(col, len(st)))
                    status_counts(reg)  # the changed version cached, then undone
                    raise RuntimeError("undo")
            assert status_counts(reg)[0] == before
        assert status_counts(reg)[0] == table_counts(reg.status), (step, how, col)


def test_the_table_is_counted_once_per_version(tmp_path, monkeypatch):
    """A second get_status of an unchanged table reads no column (the counts are kept), a
    changed one counts again."""
    import batchtools.core.jobstate.state as state

    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    bt.batch_map(lambda x: x, x=range(1000))
    calls = []
    count = state._count
    monkeypatch.setattr(state, "_count", lambda st: calls.append(1) or count(st))
    bt.get_status()
    bt.get_status()
    assert calls == []  # counted when batch_map saved the table
    set_rows(reg.status, np.array([5]), "submitted", time.time())
    reg.mark_dirty("status")
    assert bt.get_status().submitted == 1 and len(calls) == 1


def test_a_result_adopted_while_counting_is_counted(tmp_path):
    """A job gone from the system without a report but with its result is recorded done while
    get_status counts (the table changes under the count): counted done, not expired."""
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions(
        "Silent", lambda reg, jc: bt.make_submit_job_result(0, "b1"), list_jobs=lambda reg: ([], []))
    bt.batch_map(lambda x: x, x=[1, 2])
    bt.submit_jobs()
    assert bt.get_status().expired == 2
    reg.store.put(1, "the result of a run that died before its report")
    got = check(reg)
    assert (got["done"], got["expired"], got["started"]) == (1, 1, 1)
