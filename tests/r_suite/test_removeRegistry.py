"""R batchtools tests/testthat/test_removeRegistry.R, ported (2 of 2 blocks)."""

import pytest

import batchtools as bt

from .helper import make_test_experiment_registry, make_test_registry


def test_removeRegistry():
    """R: test_that("removeRegistry")"""
    reg = make_test_registry()
    assert reg.file_dir.is_dir()
    res = bt.remove_registry(0.01, reg=reg)
    assert isinstance(res, str)
    assert not reg.file_dir.exists()


def test_removeRegistry_resets_default_registry():
    """R: test_that("removeRegistry resets default registry")"""
    reg = make_test_experiment_registry(make_default=True)
    assert bt.get_default_registry() is reg
    bt.remove_registry(0, reg=reg)
    assert not reg.file_dir.exists()
    with pytest.raises(ValueError, match="no default registry"):
        bt.get_default_registry()
