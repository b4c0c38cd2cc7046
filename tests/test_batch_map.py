import numpy as np
import pandas as pd
import pytest

import batchtools as bt
from conftest import snapshot


def test_positional_keyword_args_and_recycling(reg):
    def f(a, b, c=0, d=0):
        return (a, b, c, d)

    ids = bt.batch_map(f, [1, 2, 3], ["x"], args={"c": [7, 8, 9]}, d=range(3))
    assert ids["job_id"].tolist() == [1, 2, 3]
    assert ids["job_id"].dtype == np.int64
    pars = bt.get_job_pars()
    assert pars["job_pars"].tolist()[0] == {"a": 1, "b": "x", "c": 7, "d": 0}
    bt.submit_jobs()
    assert bt.reduce_results_list() == [(1, "x", 7, 0), (2, "x", 8, 1), (3, "x", 9, 2)]


def test_args_as_dataframe_and_more_args(reg):
    design = pd.DataFrame({"x": [1, 2], "y": [0.5, 1.5]})
    bt.batch_map(lambda x, y, scale: (x + y) * scale, args=design, more_args={"scale": 2})
    bt.submit_jobs()
    assert bt.reduce_results_list() == [3.0, 7.0]


def test_python_types_survive(reg):
    bt.batch_map(lambda v: type(v).__name__, v=[1, 2])
    bt.submit_jobs()
    assert bt.reduce_results_list() == ["int", "int"]
    bt.clear_registry()
    bt.batch_map(lambda v: v, v=[1, 2.5, "a", None, {"k": 1}])
    bt.submit_jobs()
    assert bt.reduce_results_list() == [1, 2.5, "a", None, {"k": 1}]


def test_closure_lambda_and_job_argument(reg):
    offset = 100

    def g(x, job):
        return x + offset, job.id, job.seed

    bt.batch_map(g, x=[1, 2])
    bt.submit_jobs()
    assert bt.reduce_results_list() == [(101, 1, 2), (102, 2, 3)]


def test_unequal_lengths_and_bad_iterables(reg):
    before = snapshot(reg.file_dir)
    with pytest.raises(ValueError, match="different lengths"):
        bt.batch_map(lambda x, y: x, x=[1, 2, 3], y=[1, 2])
    with pytest.raises(TypeError, match="more_args"):
        bt.batch_map(lambda x: x, x=5)
    with pytest.raises(TypeError, match="iterable"):
        bt.batch_map(lambda x: x, x="abc")
    with pytest.raises(TypeError, match="does not accept"):
        bt.batch_map(lambda x: x, z=[1])
    with pytest.raises(TypeError, match="fun: must be callable"):
        bt.batch_map(42, x=[1])
    with pytest.raises(ValueError, match="given more than once"):
        bt.batch_map(lambda x: x, [1], args={"x": [2]})
    with pytest.raises(ValueError, match="also mapped"):
        bt.batch_map(lambda x: x, x=[1], more_args={"x": 2})
    assert snapshot(reg.file_dir) == before
    assert len(bt.find_jobs()) == 0


def test_unpicklable_function(reg):
    import threading

    lock = threading.Lock()
    before = snapshot(reg.file_dir)
    with pytest.raises(TypeError, match="cannot be serialised"):
        bt.batch_map(lambda x: lock, x=[1])
    assert snapshot(reg.file_dir) == before


def test_registry_must_be_empty(reg):
    bt.batch_map(lambda x: x, x=[1])
    with pytest.raises(ValueError, match="empty registry"):
        bt.batch_map(lambda x: x, x=[2])


def test_zero_jobs(reg):
    assert len(bt.batch_map(lambda x: x, x=[])) == 0
    assert bt.get_status().defined == 0


def test_batch_reduce(reg):
    bt.batch_reduce(lambda a, b: a + b, range(10), init=0, chunks=[1] * 5 + [2] * 5)
    bt.submit_jobs()
    assert bt.reduce_results_list() == [10, 35]
    assert bt.reduce_results(lambda a, b: a + b) == 45


def test_batch_map_results(reg, tmp_path):
    bt.batch_map(lambda x: x * 2, x=[1, 2, 3])
    bt.submit_jobs()
    target = bt.make_registry(file_dir=tmp_path / "t", conf_file=None, make_default=False)
    target.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map_results(lambda res, k: res + k, k=[10, 20, 30], target=target, reg=reg)
    bt.submit_jobs(reg=target)
    assert bt.reduce_results_list(reg=target) == [12, 24, 36]


def test_btlapply_and_btmapply(tmp_path):
    assert bt.btlapply([1, 2, 3], lambda x: x * 2) == [2, 4, 6]
    assert bt.btmapply(lambda a, b: a + b, [1, 2], [10, 20], n_chunks=1) == [11, 22]
