"""R batchtools tests/testthat/test_batchReduce.R, ported (2 of 2 blocks)."""

import numpy as np

import batchtools as bt

from .helper import make_test_registry, submit_and_wait


def test_batchReduce():
    """R: test_that("batchReduce")"""
    reg = make_test_registry()
    xs = list(range(1, 21))
    ids = bt.batch_reduce(lambda aggr, x: aggr + x, xs, init=0, chunks=bt.chunk(np.arange(len(xs)), n_chunks=10),
                          reg=reg)
    assert len(ids) == 10
    submit_and_wait(reg, ids)
    y = bt.reduce_results(lambda aggr, job, res: aggr + res, init=0, reg=reg)
    assert y == sum(xs)


def test_batchReduce_w_more_args():
    """R: test_that("batchReduce w/ more.args")"""
    reg = make_test_registry()
    xs = np.arange(1, 21)
    chunks = np.sort(bt.chunk(np.arange(len(xs)), n_chunks=10))
    ids = bt.batch_reduce(lambda aggr, x, y: aggr + x + y, xs.tolist(), init=100, chunks=chunks, more_args={"y": 1},
                          reg=reg)
    assert len(ids) == 10
    submit_and_wait(reg)
    expected = [100 + len(part) + part.sum() for part in (xs[chunks == c] for c in np.unique(chunks))]
    assert bt.reduce_results_list(reg=reg) == expected
    y = bt.reduce_results(lambda aggr, job, res: aggr + res, init=0, reg=reg)
    assert y == xs.sum() + 20 + len(np.unique(chunks)) * 100
