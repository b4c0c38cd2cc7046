import random

import numpy as np

import batchtools as bt


def draw(x, job):
    return (random.random(), float(np.random.random()), float(job.rng.random()), job.seed)


def run(tmp_path, name, cf, chunked=False, order=None):
    reg = bt.make_registry(file_dir=tmp_path / name, seed=123, conf_file=None)
    reg.cluster_functions = cf
    bt.batch_map(draw, x=range(6))
    ids = bt.find_jobs()
    if order is not None:
        ids = ids.iloc[order]
    if chunked:
        ids["chunk"] = [1, 1, 1, 2, 2, 2][: len(ids)]
    bt.submit_jobs(ids)
    assert bt.wait_for_jobs()
    return bt.reduce_results_list()


def test_same_seed_same_results_whatever_backend_chunking_order(tmp_path):
    a = run(tmp_path, "a", bt.make_cluster_functions_interactive())
    b = run(tmp_path, "b", bt.make_cluster_functions_multicore(2), chunked=True)
    c = run(tmp_path, "c", bt.make_cluster_functions_multicore(2), order=[5, 3, 1, 0, 2, 4])
    d = run(tmp_path, "d", bt.make_cluster_functions_interactive(external=True), chunked=True)
    assert a == b == c == d
    assert [r[3] for r in a] == [124, 125, 126, 127, 128, 129]
    assert len({r[0] for r in a}) == 6


def test_seed_is_logged(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=10, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(draw, x=[1])
    bt.submit_jobs()
    assert "### [bt]: Setting seed to 11 ..." in bt.get_log(1)


def test_random_default_seed(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", conf_file=None)
    assert 1 <= reg.seed <= 100_000


def draw_importing_numpy(x):
    import numpy  # a job that imports NumPy itself, in a node that has not imported it yet

    return float(numpy.random.random())


def test_numpy_imported_by_the_job_is_seeded_too(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=7, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive(external=True)
    bt.batch_map(draw_importing_numpy, x=range(3))
    bt.submit_jobs(bt.find_jobs().assign(chunk=1))
    assert bt.wait_for_jobs()
    expected = []
    for seed in (8, 9, 10):
        np.random.seed(seed)
        expected.append(float(np.random.random()))
    assert bt.reduce_results_list() == expected
