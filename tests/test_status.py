import os
import time

import numpy as np
import pytest

import batchtools as bt


def test_status_counts_and_str(reg):
    bt.batch_map(lambda x: 1 / x, x=[1, 0, 2, 4])
    bt.submit_jobs([1, 2, 3])
    st = bt.get_status()
    assert st.to_dict() == {"defined": 4, "submitted": 3, "started": 3, "done": 2, "error": 1,
                            "queued": 0, "running": 0, "expired": 0, "system": 0}
    assert st["done"] == 2
    text = str(st)
    assert text.startswith("Status for 4 jobs at ")
    assert "---- Done    : 2 ( 50.0%)" in text and "---- Error   : 1 ( 25.0%)" in text
    assert bt.get_status(ids=[1, 2]).defined == 2


def test_find_functions(reg):
    bt.batch_map(lambda x: 1 / x, x=[1, 0, 2, 4])
    bt.submit_jobs([1, 2, 3])
    assert bt.find_submitted()["job_id"].tolist() == [1, 2, 3]
    assert bt.find_not_submitted()["job_id"].tolist() == [4]
    assert bt.find_started()["job_id"].tolist() == [1, 2, 3]
    assert bt.find_not_started()["job_id"].tolist() == [4]
    assert bt.find_done()["job_id"].tolist() == [1, 3]
    assert bt.find_not_done()["job_id"].tolist() == [2, 4]
    assert bt.find_errors()["job_id"].tolist() == [2]
    assert bt.find_done(ids=[3, 4])["job_id"].tolist() == [3]
    assert bt.find_on_system().empty and bt.find_expired().empty and bt.find_queued().empty
    out = bt.find_done()
    assert out["job_id"].dtype == np.int64 and list(out.index) == [0, 1]


def test_find_jobs_query_and_callable(reg):
    bt.batch_map(lambda x, kernel: x, x=range(1, 11), kernel=["rbf", "linear"] * 5)
    assert bt.find_jobs("x > 8")["job_id"].tolist() == [9, 10]
    assert bt.find_jobs("x > 5 and kernel == 'rbf'")["job_id"].tolist() == [7, 9]
    assert bt.find_jobs(lambda p: p["x"] % 5 == 0)["job_id"].tolist() == [5, 10]
    assert bt.find_jobs("x > 1", ids=[1, 2, 3])["job_id"].tolist() == [2, 3]
    with pytest.raises(ValueError, match="available columns"):
        bt.find_jobs("nope > 1")
    with pytest.raises(TypeError, match="query string"):
        bt.find_jobs(42)


def test_ids_argument_forms(reg):
    bt.batch_map(lambda x: x, x=range(5))
    import pandas as pd

    assert bt.find_jobs(ids=3)["job_id"].tolist() == [3]
    assert bt.find_jobs(ids=np.array([2, 1]))["job_id"].tolist() == [1, 2]
    assert bt.find_jobs(ids=pd.Series([4]))["job_id"].tolist() == [4]
    assert bt.find_jobs(ids=pd.DataFrame({"job_id": [5, 1]}))["job_id"].tolist() == [1, 5]
    with pytest.raises(ValueError, match="do not exist.*6, 7"):
        bt.find_jobs(ids=[1, 6, 7])
    with pytest.raises(TypeError, match="job ids"):
        bt.find_jobs(ids="1")
    with pytest.raises(TypeError, match="whole numbers"):
        bt.find_jobs(ids=[1.5])
    with pytest.raises(ValueError, match="job_id"):
        bt.find_jobs(ids=pd.DataFrame({"id": [1]}))


def _lost_backend():
    """A backend that accepts jobs but never runs them: they are expired once gone."""
    return bt.make_cluster_functions("Lost", lambda r, jc: bt.make_submit_job_result(0, "lost-1"),
                                     list_jobs_running=lambda r: [], poll=0.01, poll_max=0.01)


def test_expired_jobs(reg):
    reg.cluster_functions = _lost_backend()
    bt.batch_map(lambda x: x, x=[1, 2])
    bt.submit_jobs([1])
    assert bt.find_expired()["job_id"].tolist() == [1]
    assert bt.get_status().expired == 1
    assert bt.wait_for_jobs() is False
    assert bt.wait_for_jobs(stop_on_expire=True) is False


def test_expired_waits_for_fs_latency(reg):
    cf = _lost_backend()
    cf.fs_latency = 0.4
    reg.cluster_functions = cf
    bt.batch_map(lambda x: x, x=[1])
    bt.submit_jobs()
    t0 = time.time()
    assert bt.wait_for_jobs(expire_after=1) is False
    assert time.time() - t0 >= 0.4


def test_wait_for_jobs_timeout_and_stop_on_error(mreg):
    bt.batch_map(lambda s: time.sleep(s) or (1 / s if s < 1 else s), s=[0, 5])
    bt.submit_jobs()
    assert bt.wait_for_jobs(stop_on_error=True) is False
    t0 = time.time()
    assert bt.wait_for_jobs(timeout=0.3) is False
    assert time.time() - t0 < 4.5  # the timeout ends the wait, not job 2's end (5 s)
    bt.kill_jobs()
    with pytest.raises(ValueError, match="timeout"):
        bt.wait_for_jobs(timeout=-1)


def test_job_table(reg):
    bt.batch_map(lambda x, y: x, x=[1, 2], y=["a", "b"])
    bt.add_job_tags([2], "t1")
    bt.submit_jobs(resources={"walltime": 10})
    tab = bt.get_job_table()
    assert list(tab.columns[:4]) == ["job_id", "submitted", "started", "done"]
    for col in ("error", "mem_used", "batch_id", "time_running", "job_pars", "resources", "tags"):
        assert col in tab.columns
    assert tab["tags"].isna().tolist() == [True, False] and tab["tags"][1] == "t1"
    wide = bt.unwrap(tab[["job_id", "job_pars"]])
    assert wide.columns.tolist() == ["job_id", "x", "y"]
    assert wide["y"].tolist() == ["a", "b"]


def test_a_backend_that_wakes_the_wait_all_the_time_does_not_make_it_spin(reg, monkeypatch):
    """wait_for_jobs takes a turn at most once per BUSY_RATIO times what its last turn cost, however
    often the backend's wait returns (Multicore's wakes at every job's end)."""
    from batchtools.api import wait as wait_module

    turns = []  # (start, end) of each look at the jobs
    real_masks = wait_module.masks

    def timed_masks(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return real_masks(*args, **kwargs)
        finally:
            turns.append((t0, time.perf_counter()))

    reg.cluster_functions = bt.make_cluster_functions(
        "Restless", lambda reg, jc: bt.make_submit_job_result(0, "b1"), list_jobs=lambda reg: ([], ["b1"]),
        wait=lambda timeout: None, poll=0.05, poll_max=0.05)
    bt.batch_map(lambda x: x, x=range(20_000))
    bt.submit_jobs(bt.find_jobs().assign(chunk=1))
    monkeypatch.setattr(wait_module, "masks", timed_masks)
    assert bt.wait_for_jobs(timeout=2) is False
    assert len(turns) > 5
    # however busy the machine, the pause after a turn is at least BUSY_RATIO times what the turn
    # cost (up to the evidence poll): a slower turn only makes the pause longer (the last pause
    # may be cut short by the timeout)
    for (start, end), (next_start, _) in zip(turns[:-2], turns[1:-1]):
        least = min(wait_module.EVIDENCE_POLL, wait_module.BUSY_RATIO * (end - start))
        assert next_start - end >= 0.95 * least, (end - start, next_start - end)


def test_a_job_that_ends_between_the_merge_and_the_listing_is_not_expired(reg):
    """The nodes' reports are merged, then the backend is asked what runs: a job that ends in
    between (its report written before it ended) is in neither. It is never counted expired."""
    held = []

    def list_jobs(reg):
        if held:  # the job ends while the backend is being asked
            bt.do_job_collection(held.pop(), output=open(os.devnull, "w"))
            return [], []
        return [], ["b1"]

    reg.cluster_functions = bt.make_cluster_functions(
        "Racy", lambda reg, jc: held.append(jc) or bt.make_submit_job_result(0, "b1"), list_jobs=list_jobs)
    bt.batch_map(lambda x: 1 / x, x=[0])  # an error leaves no result to adopt: only its report tells
    bt.submit_jobs()
    status = bt.get_status()
    assert (status.expired, status.error) == (0, 1), status
