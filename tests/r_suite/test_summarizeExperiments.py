"""R batchtools tests/testthat/test_summarizeExperiments.R, ported (1 of 1 block)."""

import pandas as pd
import pytest

import batchtools as bt

from .helper import differs, make_test_experiment_registry


@differs("`add_experiments` refuses a design parameter", "`summarize_experiments` counts in a column `count`")
def test_summarizeExperiments():
    """R: test_that("summarizeExperiments")"""
    reg = make_test_experiment_registry()
    iris = pd.DataFrame({"a": range(150)})
    bt.add_problem(reg=reg, name="p1", data=iris, fun=lambda job, data: len(data), seed=42)
    bt.add_problem(reg=reg, name="p2", data=iris, fun=lambda job, data: len(data), seed=42)
    bt.add_algorithm(reg=reg, name="a1", fun=lambda job, data, instance, sq: instance**sq)
    designs = ({"p1": pd.DataFrame(), "p2": pd.DataFrame({"x": [1, 2]})}, {"a1": pd.DataFrame({"sq": [1, 2, 3]})})
    # R adds the design and fails when a job runs (p2's function does not take x); here it is refused
    with pytest.raises(ValueError, match="does not accept \\['x'\\]"):
        bt.add_experiments(*designs, reg=reg)
    bt.add_problem(reg=reg, name="p2", data=iris, fun=lambda job, data, **kw: len(data), seed=42)
    bt.add_experiments(*designs, reg=reg)

    s = bt.summarize_experiments(reg=reg)
    assert s.shape == (2, 3)
    assert s["count"].tolist() == [3, 6]  # R: .count
    assert s["problem"].tolist() == ["p1", "p2"]
    assert s["algorithm"].tolist() == ["a1", "a1"]

    s = bt.summarize_experiments(reg=reg, by=["problem", "algorithm", "x"])
    assert s.shape == (3, 4)
    assert s["count"].tolist() == [3, 3, 3]
    assert pd.isna(s["x"][0]) and s["x"].tolist()[1:] == [1, 2]
