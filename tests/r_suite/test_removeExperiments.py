"""R batchtools tests/testthat/test_removeExperiments.R, ported (1 of 1 block)."""

import pandas as pd
import pytest

import batchtools as bt

from .helper import check_tables, differs, make_test_experiment_registry


@differs("`add_experiments` refuses a design parameter", "Unknown job ids raise `ValueError` naming them")
def test_removeExperiments():
    """R: test_that("removeExperiments")"""
    reg = make_test_experiment_registry()
    iris = pd.DataFrame({"a": range(150)})
    bt.add_problem(reg=reg, name="p1", data=iris, fun=lambda job, data: len(data), seed=42)
    bt.add_problem(reg=reg, name="p2", data=iris, fun=lambda job, data: len(data), seed=42)
    bt.add_algorithm(reg=reg, name="a1", fun=lambda job, data, instance, sq: instance**sq)
    bt.add_algorithm(reg=reg, name="a2", fun=lambda job, data, instance, sq: instance**sq)
    designs = ({"p1": pd.DataFrame(), "p2": pd.DataFrame({"x": [1, 2]})},
               {"a1": pd.DataFrame({"sq": [1, 2, 3]}), "a2": pd.DataFrame({"sq": [1, 2]})})
    # R adds the design and fails when a job runs (p2's function does not take x); here it is refused
    with pytest.raises(ValueError, match="does not accept \\['x'\\]"):
        bt.add_experiments(*designs, reg=reg)
    bt.add_problem(reg=reg, name="p2", data=iris, fun=lambda job, data, **kw: len(data), seed=42)
    bt.add_experiments(*designs, reg=reg)
    n = len(bt.find_experiments(reg=reg))
    assert n == 15

    assert bt.remove_experiments([1], reg=reg)["job_id"].tolist() == [1]
    assert bt.find_experiments(reg=reg)["job_id"].tolist() == list(range(2, n + 1))
    # R: removing job 1 again removes nothing; here job 1 is unknown now and named in the error
    with pytest.raises(ValueError, match="1"):
        bt.remove_experiments([1], reg=reg)
    assert bt.find_experiments(reg=reg)["job_id"].tolist() == list(range(2, n + 1))

    ids = bt.find_experiments(prob_name="p1", reg=reg)
    assert len(bt.remove_experiments(ids, reg=reg)) == 4
    assert bt.find_experiments(reg=reg)["job_id"].tolist() == list(range(6, n + 1))
    assert reg.layout.problem("p1").exists()
    assert set(reg.problems) == {"p1", "p2"}

    ids = bt.find_experiments(algo_name="a2", reg=reg)
    assert len(bt.remove_experiments(ids, reg=reg)) == 4
    assert bt.find_experiments(reg=reg)["job_id"].tolist() == [i for i in range(6, n + 1) if i not in set(ids["job_id"])]
    assert reg.layout.algorithm("a2").exists()
    assert set(reg.algorithms) == {"a1", "a2"}
    check_tables(reg)
