"""R batchtools tests/testthat/test_ExperimentRegistry.R, ported (2 of 2 blocks)."""

import re

import pandas as pd

import batchtools as bt

from .helper import check_new_registry, differs, make_test_experiment_registry


@differs("The registry folder holds pickles, not RDS files")
def test_makeTestExperimentRegistry():
    """R: test_that("makeTestExperimentRegistry")"""
    reg = make_test_experiment_registry()
    assert isinstance(reg, bt.ExperimentRegistry)
    check_new_registry(reg)
    assert reg.problems == []
    assert reg.algorithms == []
    assert "Experiment Registry" in str(reg)


def test_Printer_works_170():
    """R: test_that("Printer works (#170)")"""
    reg = make_test_experiment_registry()
    assert reg.problems == [] and reg.algorithms == []
    assert re.search(r"Problems\s*:\s*0", str(reg))
    assert re.search(r"Algorithms\s*:\s*0", str(reg))
    bt.add_problem("iris", data=pd.DataFrame({"x": range(150)}), reg=reg)
    bt.add_algorithm("foo", fun=lambda **kw: kw, reg=reg)
    assert reg.problems == ["iris"] and reg.algorithms == ["foo"]
    assert re.search(r"Problems\s*:\s*1", str(reg))
    assert re.search(r"Algorithms\s*:\s*1", str(reg))
    # the short form (repr) names the counts too
    assert "problems=1, algorithms=1" in repr(reg)
