"""R batchtools tests/testthat/test_grepLogs.R, ported (1 of 1 block)."""

import sys

import pytest

import batchtools as bt

from .helper import differs, make_test_registry, submit_and_wait


@pytest.fixture(scope="module")
def reg(tmp_path_factory):
    """R: the file's set-up (``silent({...})`` before the block)."""
    def fun(x):
        if x == 1:
            print("FOOBAR: AAA")
        elif x == 2:
            print("FOOBAR: BBB", end="")  # R: cat() without a newline
        else:
            print("FOOBAR: CCC", file=sys.stderr)

    reg = make_test_registry(file_dir=tmp_path_factory.mktemp("grep") / "reg")
    ids = bt.batch_map(fun, x=[1, 2, 3, 4, 5], reg=reg)
    ids["chunk"] = [1, 1, 2, 3, 4]
    submit_and_wait(reg, ids[:4])
    return reg


@differs("`grep_logs` gives one row per matching line")
def test_grepLogs(reg):
    """R: test_that("grepLogs")"""
    assert any("AAA" in line for line in bt.get_log(1, reg=reg))
    assert any("BBB" in line for line in bt.get_log(2, reg=reg))
    assert any("CCC" in line for line in bt.get_log(3, reg=reg))
    assert not any("AAA" in line for line in bt.get_log(2, reg=reg))

    def ids(**kw):
        tab = bt.grep_logs(reg=reg, **kw)
        assert list(tab.columns) == ["job_id", "line"]  # R: job.id and matches (one row per job)
        return tab["job_id"].tolist()

    assert ids(pattern="FOOBAR") == [1, 2, 3, 4]
    assert ids(pattern="XXX") == []
    with pytest.raises(ValueError, match="non-empty"):
        bt.grep_logs(pattern="", reg=reg)
    with pytest.raises(ValueError, match="non-empty"):
        bt.grep_logs(pattern=None, reg=reg)
    assert ids(pattern="AAA") == [1]
    assert ids(pattern="BBB") == [2]
    assert ids(pattern="CCC") == [3, 4]

    assert ids(pattern="aaa") == []
    assert ids(pattern="aaa", ignore_case=True) == [1]

    assert len(ids(pattern="F..BAR")) == 4
    assert len(ids(pattern="F..BAR", fixed=True)) == 0

    assert ids(ids=[1, 2], pattern="CCC") == []
    assert ids(ids=[5], pattern="CCC") == []
