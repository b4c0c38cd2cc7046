"""R batchtools tests/testthat/test_showLog.R, ported (2 of 2 blocks)."""

import pydoc

import pytest

import batchtools as bt

from .helper import differs, make_test_registry, submit_and_wait


@differs("Unknown job ids raise `ValueError` naming them")
def test_showLog_getLog(monkeypatch):
    """R: test_that("showLog/getLog")"""
    reg = make_test_registry()
    bt.batch_map(lambda x: print("GREPME"), [1, 2], reg=reg)
    with pytest.raises(FileNotFoundError, match="no log"):  # R: "not available"
        bt.show_log(id=1, reg=reg)
    submit_and_wait(reg)

    lines = bt.get_log(id=1, reg=reg)
    assert len(lines) >= 3 and all(isinstance(line, str) for line in lines)
    assert sum("GREPME" in line for line in lines) == 1
    assert any(line.startswith("### [bt") for line in lines)
    assert sum(line.endswith("[batchtools job.id=1]") for line in lines) == 2
    assert not any(line.endswith("[batchtools job.id=2]") for line in lines)

    lines = bt.get_log(id=2, reg=reg)
    assert not any(line.endswith("[batchtools job.id=1]") for line in lines)

    shown = []
    monkeypatch.setattr(pydoc, "pager", shown.append)  # R: options(pager = ...)
    bt.show_log(id=2, reg=reg)
    assert sum("GREPME" in line for line in shown[0].splitlines()) == 1

    with pytest.raises(ValueError, match="exactly one"):
        bt.get_log(id=[1, 2], reg=reg)
    with pytest.raises(ValueError, match="3"):  # R: "exactly"; here the unknown id is named
        bt.get_log(id=3, reg=reg)


def test_empty_log_files():
    """R: test_that("empty log files")"""
    reg = make_test_registry()
    bt.batch_map(lambda x: x, [1], reg=reg)
    submit_and_wait(reg)
    # overwrite log file
    log_file = reg.layout.log_named(reg.status["log_file"][0])
    log_file.unlink()
    log_file.touch()
    assert bt.get_log(1, reg=reg) == []
