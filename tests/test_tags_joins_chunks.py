import numpy as np
import pandas as pd
import pytest

import batchtools as bt


def test_tags(reg):
    bt.batch_map(lambda x: x, x=range(4))
    bt.add_job_tags([1, 2], ["a", "b"])
    bt.add_job_tags([3], "a")
    assert bt.get_used_job_tags() == ["a", "b"]
    assert bt.find_tagged("b")["job_id"].tolist() == [1, 2]
    assert bt.find_tagged(["a"])["job_id"].tolist() == [1, 2, 3]
    tags = bt.get_job_tags()["tags"]
    assert tags[:3].tolist() == ["a,b", "a,b", "a"] and pd.isna(tags[3])
    bt.remove_job_tags([1], "a")
    assert bt.get_job_tags([1])["tags"].tolist() == ["b"]
    bt.remove_job_tags()
    assert bt.get_used_job_tags() == []
    with pytest.raises(ValueError, match="letters, digits"):
        bt.add_job_tags([1], "a,b")


def test_job_names(reg):
    bt.batch_map(lambda x: x, x=range(2))
    bt.set_job_names([1, 2], ["first", "second"])
    assert bt.get_job_names()["job_name"].tolist() == ["first", "second"]
    with pytest.raises(ValueError, match="one name per job"):
        bt.set_job_names([1], ["a", "b"])
    bt.set_job_names([1])
    names = bt.get_job_names()["job_name"]
    assert pd.isna(names[0]) and names[1] == "second"


def test_joins():
    x = pd.DataFrame({"job_id": [1, 2, 3], "a": [10, 20, 30]})
    y = pd.DataFrame({"job_id": [2, 3, 4], "b": ["u", "v", "w"]})
    assert bt.ijoin(x, y)["job_id"].tolist() == [2, 3]
    assert bt.ljoin(x, y)["b"].isna().tolist() == [True, False, False]
    assert bt.rjoin(x, y)["job_id"].tolist() == [2, 3, 4]
    assert bt.ojoin(x, y)["job_id"].tolist() == [1, 2, 3, 4]
    assert bt.sjoin(x, y).columns.tolist() == ["job_id", "a"] and bt.sjoin(x, y)["job_id"].tolist() == [2, 3]
    assert bt.ajoin(x, y)["job_id"].tolist() == [1]
    up = bt.ujoin(x, pd.DataFrame({"job_id": [2, 9], "a": [99, 0]}))
    assert up["a"].tolist() == [10, 99, 30]
    up_all = bt.ujoin(x, pd.DataFrame({"job_id": [2, 9], "a": [99, 0], "b": ["u", "z"]}), all_y=True)
    assert up_all["job_id"].tolist() == [1, 2, 3]  # as R: all_y adds y's columns, not its rows
    assert up_all["a"].tolist() == [10, 99, 30] and up_all["b"].tolist()[1] == "u"
    with pytest.raises(ValueError, match="no column"):
        bt.ijoin(x, pd.DataFrame({"id": [1]}))


def test_chunk_lpt_binpack():
    c = bt.chunk(range(10), n_chunks=3, shuffle=False)
    assert sorted(np.bincount(c)[1:].tolist()) == [3, 3, 4]
    c = bt.chunk(range(10), chunk_size=4)
    assert sorted(np.bincount(c)[1:].tolist()) == [3, 3, 4] and c.min() == 1
    with pytest.raises(ValueError, match="exactly one"):
        bt.chunk(range(3))
    w = [9, 7, 6, 5, 4, 3, 2]
    c = bt.lpt(w, n_chunks=3)
    sums = [sum(wi for wi, ci in zip(w, c) if ci == k) for k in (1, 2, 3)]
    assert max(sums) - min(sums) <= 3
    b = bt.binpack([3, 3, 2, 2, 1], chunk_size=5)
    for k in set(b):
        assert sum(v for v, ck in zip([3, 3, 2, 2, 1], b) if ck == k) <= 5
    with pytest.raises(ValueError, match="largest"):
        bt.binpack([6, 1], chunk_size=5)


def test_submit_bad_chunks_and_resources(reg):
    from conftest import snapshot

    bt.batch_map(lambda x: x, x=range(4))
    before = snapshot(reg.file_dir)
    ids = bt.find_jobs()
    ids["chunk"] = [1, 1, 2, 2]
    ids["walltime"] = [10, 20, 30, 30]
    with pytest.raises(ValueError, match="share resources"):
        bt.submit_jobs(ids)
    with pytest.raises(ValueError, match="duplicate"):
        bt.submit_jobs([1, 1])
    with pytest.raises(TypeError, match="resources"):
        bt.submit_jobs(resources="fast")
    with pytest.raises(ValueError, match="do not exist"):
        bt.submit_jobs([7])
    assert snapshot(reg.file_dir) == before


def test_estimate_runtimes_and_lpt(reg):
    import time

    bt.batch_map(lambda n: time.sleep(n / 100), n=[1, 2, 3, 4, 20, 21, 22, 23])
    bt.submit_jobs([1, 2, 5, 6])
    est = bt.estimate_runtimes(bt.unwrap(bt.get_job_pars()))
    assert est["type"].tolist() == ["observed", "observed", "estimated", "estimated"] * 2
    predicted = est.set_index("job_id")["runtime"]
    assert predicted[7] > predicted[3]  # learned: larger n, longer run
    chunks = bt.lpt(est["runtime"], n_chunks=2)
    assert set(chunks) == {1, 2}
    with pytest.raises(TypeError, match="job_id"):
        bt.estimate_runtimes(pd.DataFrame({"n": [1]}))
    with pytest.raises(ValueError, match="unwrap"):
        bt.estimate_runtimes(bt.get_job_pars())
