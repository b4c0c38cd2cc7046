"""The Submission object (core/submission.py): plan -> hand over a chunk -> accepted or refused ->
close, and its one undo. (Through ``submit_jobs``: test_trust.py; kills: test_faults.py.)"""

import json
import os

import pandas as pd
import pytest

import batchtools as bt
from batchtools.core.submission import Submission
from conftest import snapshot


def double(x):
    return 2 * x


class AcceptThenRefuse:
    """Accepts the first ``accept`` collections (running them here, one result file per job, as a
    node does), then refuses for good."""

    def __init__(self, accept: int):
        self.accept = accept

    def __call__(self, reg, jc):
        if self.accept <= 0:
            return bt.make_submit_job_result(101, msg="queue closed")
        self.accept -= 1
        bt.do_job_collection(jc)
        return bt.make_submit_job_result(0, "ok")


def journal_lines(reg) -> list[dict]:
    return [json.loads(line) for line in reg.layout.journal.read_text().splitlines()]


@pytest.fixture
def ran(reg):
    """Three jobs run once (their results in files), then a backend that accepts one collection
    and refuses the next (it writes its collections, as a scheduler backend does)."""
    bt.batch_map(double, x=[1, 2, 3])
    reg.cluster_functions = bt.make_cluster_functions("Open", AcceptThenRefuse(3))
    bt.submit_jobs()
    assert sorted(os.listdir(reg.layout.dir("results"))) == ["1.pkl", "2.pkl", "3.pkl"]
    reg.cluster_functions = bt.make_cluster_functions("HalfOpen", AcceptThenRefuse(1), store_job_collection=True)
    return reg


def test_a_refused_chunk_is_undone_at_once_memory_and_files(ran):
    reg = ran
    status = reg.status.copy()
    files = snapshot(reg.file_dir)
    sub = Submission(reg, pd.DataFrame({"job_id": [1, 2, 3], "chunk": [1, 2, 2]}), {}, lambda i: 0.0)
    assert snapshot(reg.file_dir) == files  # the plan writes nothing
    with pytest.raises(bt.SubmitError, match="queue closed"), sub.open():
        assert sub.hand_over(0) == 1
        accepted_hash = sub.rec_obj["job_hash"][0]
        assert reg.inflight == {accepted_hash} and sub.stashes  # job 1's previous result set aside
        try:
            sub.hand_over(1)
        finally:
            # chunk 2 undone before the submission closes: only the accepted chunk is held
            assert reg.inflight == {accepted_hash}
            assert reg.status.equals(status)  # nothing recorded yet
            refused = journal_lines(reg)[-1]["refused"]
            assert refused != accepted_hash
            assert not reg.layout.job_collection(refused).exists()
            # job 1's previous result still set aside (dropped once its new run is saved), 2 and 3 back
            assert reg.store.stashed() == [(accepted_hash, 1)]
            assert {"2.pkl", "3.pkl"} <= set(os.listdir(reg.layout.dir("results")))
            assert sub.accepted == 1 and sub.recorded == 0
    # closed: the accepted chunk recorded, its stash dropped, the journal emptied
    st = reg.status.set_index("job_id")
    assert st.loc[1, "job_hash"] == accepted_hash
    assert st.loc[[2, 3], "job_hash"].tolist() == status["job_hash"].tolist()[1:]
    assert reg.inflight == set() and not reg.layout.journal.exists()
    assert not any(n.startswith(".prev-") for n in os.listdir(reg.layout.dir("results")))
    assert bt.reduce_results_list(reg=reg) == [2, 4, 6]


def test_a_refused_first_chunk_leaves_registry_as_before(ran):
    reg = ran
    reg.cluster_functions = bt.make_cluster_functions("Closed", AcceptThenRefuse(0), store_job_collection=True)
    status, results = reg.status.copy(), bt.reduce_results_list(reg=reg)
    files = snapshot(reg.file_dir)
    with pytest.raises(bt.SubmitError), Submission(reg, [2, 3], {}, lambda i: 0.0).open() as sub:
        sub.hand_over(0)
    assert snapshot(reg.file_dir) == files
    assert reg.status.equals(status) and reg.inflight == set()
    assert bt.reduce_results_list(reg=reg) == results
