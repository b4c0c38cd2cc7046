"""R batchtools tests/testthat/test_batchMap.R, ported (1 of 2 blocks).

Skipped: "batchMap with unnamed more.args (#267)": R lists mix named and unnamed elements
(``more.args = list(j = 1L, 5L)`` passes 5 by position); ``more_args`` is a dict of keyword
arguments, and positional constants are a ``functools.partial`` or a closure in Python.
"""

import itertools

import pandas as pd

import batchtools as bt
from batchtools.core.persistence.files import read_pickle

from .helper import check_tables, make_test_registry


def test_batchMap():
    """R: test_that("batchMap")"""
    reg = make_test_registry()

    def fun(*args, **kw):
        return args, kw

    ids = bt.batch_map(fun, i=[1, 2, 3], more_args={"x": 1}, reg=reg)
    assert list(ids.columns) == ["job_id"] and ids["job_id"].tolist() == [1, 2, 3]
    assert read_pickle(reg.layout.more_args) == {"x": 1}
    check_tables(reg)
    assert len(reg.defs) == 3 and len(reg.status) == 3
    assert len(reg.tables["resources"]) == 0
    assert bt.get_job_pars(reg=reg)["job_pars"][0] == {"i": 1}

    reg = make_test_registry()
    bt.batch_map(fun, [1, 2, 3], more_args={"j": 1}, reg=reg)
    assert read_pickle(reg.layout.more_args) == {"j": 1}
    assert bt.test_job(2, reg=reg) == ((2,), {"j": 1})

    reg = make_test_registry()
    bt.batch_map(fun, args={"i": [1, 2, 3]}, more_args={"j": 1}, reg=reg)
    assert read_pickle(reg.layout.more_args) == {"j": 1}
    assert bt.get_job_pars(reg=reg)["job_pars"].tolist() == [{"i": 1}, {"i": 2}, {"i": 3}]

    reg = make_test_registry()
    bt.batch_map(fun, i=[1, 2, 3], j=[1], reg=reg)  # a length-1 argument is recycled, as R
    assert bt.get_job_pars(reg=reg)["job_pars"][2] == {"i": 3, "j": 1}

    reg = make_test_registry()
    cj = pd.DataFrame(list(itertools.product([1, 2, 3], ["a", "b", "c"])), columns=["a", "b"])  # R: CJ(a, b)
    ids = bt.batch_map(fun, args=cj, reg=reg)
    assert len(ids) == 9
    pd.testing.assert_frame_equal(bt.unwrap(bt.get_job_pars(reg=reg))[["a", "b"]], cj)
