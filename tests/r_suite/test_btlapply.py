"""R batchtools tests/testthat/test_btlapply.R, ported (2 of 2 blocks)."""

import numpy as np

import batchtools as bt

from .helper import differs, make_test_registry


def test_btlapply():
    """R: test_that("btlapply")"""
    reg = make_test_registry()

    def fun(x, y):
        return x**y

    res = bt.btlapply([1, 2, 3], fun, more_args={"y": 2}, n_chunks=2, resources={"dummy": 42}, reg=reg)
    assert res == [fun(x, 2) for x in [1, 2, 3]]
    assert reg.status["job_hash"].nunique() == 2
    assert reg.tables["resources"]["resources"][0]["dummy"] == 42


@differs("`btmapply(simplify=True)` puts one row per job")
def test_btmapply():
    """R: test_that("btmapply")"""
    def fun(x, y):
        return f"{x}{y}"

    x, y = [1, 2, 3], ["a", "b", "c"]
    reg = make_test_registry()
    res = bt.btmapply(fun, x=x, y=y, chunk_size=2, use_names=False, reg=reg)
    assert res == list(map(fun, x, y))
    assert reg.status["job_hash"].nunique() == 2

    reg = make_test_registry()
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    res = bt.btmapply(fun, x=x, y=y, n_chunks=1, use_names=False, simplify=True, reg=reg)
    assert isinstance(res, np.ndarray) and res.tolist() == ["1a", "2b", "3c"]

    # R's USE.NAMES: names from the first argument when it is character; here x is not, so no names
    reg = make_test_registry()
    res = bt.btmapply(fun, x=x, y=y, n_chunks=1, use_names=True, simplify=True, reg=reg)
    assert res.tolist() == ["1a", "2b", "3c"]
    # results of vectors simplify to one row per job (R: one column per job)
    reg = make_test_registry()
    res = bt.btmapply(lambda a, b: [a, b], x, [4, 5, 6], simplify=True, reg=reg)
    assert res.shape == (3, 2) and res[:, 0].tolist() == x
