"""R batchtools tests/testthat/test_chunk.R, ported (4 of 4 blocks)."""

import numpy as np
import pandas as pd

import batchtools as bt

from .helper import make_test_experiment_registry, submit_and_wait


def expect_chunks(res, n, lower, upper):
    """R: expect_integer(res, len = n, lower = lower, upper = upper, any.missing = FALSE)."""
    res = np.asarray(res)
    assert res.dtype.kind == "i" and len(res) == n
    assert n == 0 or (res.min() >= lower and res.max() <= upper)


def test_chunk():
    """R: test_that("chunk")"""
    x = np.arange(1, 11)
    for n_chunks in (2, 1, 10, 20):
        expect_chunks(bt.chunk(x, n_chunks=n_chunks), len(x), 1, n_chunks)
    expect_chunks(bt.chunk(np.arange(0), n_chunks=20), 0, 1, 20)

    for chunk_size in (3, 1):
        res = bt.chunk(x, chunk_size=chunk_size)
        expect_chunks(res, len(x), 1, len(x))
        counts = pd.Series(res).value_counts()
        assert counts.min() >= 1 and counts.max() <= chunk_size

    assert list(bt.chunk([], chunk_size=1)) == []
    assert list(bt.chunk([], n_chunks=1)) == []
    assert list(bt.chunk(x, n_chunks=2, shuffle=False)) == [1] * 5 + [2] * 5


def test_binpack():
    """R: test_that("binpack")"""
    rng = np.random.default_rng(1)
    for x, chunk_size in ((np.arange(1, 11), 10), (np.array([1]), 10), (np.ones(100), 1), (rng.random(100), 1)):
        res = bt.binpack(x, chunk_size=chunk_size)
        expect_chunks(res, len(x), 1, len(x))
        sums = pd.Series(x).groupby(np.asarray(res)).sum()
        assert sums.min() >= x.min() and sums.max() <= chunk_size
    assert list(bt.binpack([], 1)) == []


def test_lpt():
    """R: test_that("lpt")"""
    rng = np.random.default_rng(1)
    for x, n_chunks in ((np.arange(1, 11), 2), (rng.random(100), 3), (np.arange(1, 11), 1), (np.arange(1, 11), 12)):
        res = bt.lpt(x, n_chunks)
        expect_chunks(res, len(x), 1, n_chunks)
        sums = pd.Series(x).groupby(np.asarray(res)).sum()
        assert len(sums) == min(len(x), n_chunks) and sums.min() >= x.min()
    assert list(bt.lpt(np.arange(1, 11), 12)) == list(range(10, 0, -1))
    assert list(bt.lpt([], 1)) == []


def test_caching_works():
    """R: test_that("caching works")"""
    reg = make_test_experiment_registry()
    bt.add_problem(reg=reg, name="p1", data=pd.DataFrame({"a": range(150)}))
    bt.add_problem(reg=reg, name="p2", data=pd.DataFrame({"a": range(1, 11)}))
    bt.add_algorithm(reg=reg, name="a1", fun=lambda data, **kw: len(data))
    bt.add_algorithm(reg=reg, name="a2", fun=lambda data, **kw: 2 * len(data))
    bt.add_experiments(reg=reg)
    ids = bt.find_jobs(reg=reg)
    ids["chunk"] = 1
    submit_and_wait(reg, ids)
    assert bt.reduce_results_list(ids, reg=reg) == [150, 300, 10, 20]
