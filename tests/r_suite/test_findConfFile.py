"""R batchtools tests/testthat/test_findConfFile.R, ported (1 of 1 block)."""

import os

import batchtools as bt

from .helper import differs


@differs("`$BATCHTOOLS_CONF` names a file")
def test_findConfFile(tmp_path, monkeypatch):
    """R: test_that("findConfFile")"""
    d = tmp_path.resolve()
    fn = d / "batchtools.conf.py"
    fn.touch()
    os.chmod(fn, 0o644)
    monkeypatch.chdir(d)
    assert bt.find_conf_file() == str(fn)
    # R: R_BATCHTOOLS_SEARCH_PATH names the folder; here BATCHTOOLS_CONF names the file
    monkeypatch.chdir("/")
    monkeypatch.setenv("BATCHTOOLS_CONF", str(fn))
    assert bt.find_conf_file() == str(fn)
    fn.unlink()
