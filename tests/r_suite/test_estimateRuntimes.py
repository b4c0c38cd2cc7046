"""R batchtools tests/testthat/test_estimateRuntimes.R, ported (1 of 1 block)."""

import itertools

import numpy as np
import pandas as pd

import batchtools as bt

from .helper import differs, make_test_experiment_registry, s_chunk, submit_and_wait


@differs("`estimate_runtimes` uses scikit-learn's `RandomForestRegressor`")
def test_estimateRuntimes(capsys):
    """R: test_that("estimateRuntimes")"""
    reg = make_test_experiment_registry()
    bt.add_problem(name="iris", data=pd.DataFrame({"a": range(150)}), fun=lambda data, **kw: data, reg=reg)
    bt.add_algorithm(name="nrow", fun=lambda instance, **kw: instance.shape[0], reg=reg)
    bt.add_algorithm(name="ncol", fun=lambda instance, **kw: instance.shape[1], reg=reg)
    cj = pd.DataFrame(list(itertools.product(range(1, 51), list("abcde"))), columns=["x", "y"])
    bt.add_experiments(algo_designs={"nrow": cj}, reg=reg)
    bt.add_experiments(algo_designs={"ncol": cj}, reg=reg)
    tab = bt.unwrap(bt.get_job_pars(reg=reg))

    ids = tab.groupby(["problem", "algorithm", "y"], group_keys=False).sample(4, random_state=1)
    ids = ids[["job_id"]].sort_values("job_id", ignore_index=True)
    submit_and_wait(reg, s_chunk(ids))

    # "simulate" runtimes
    def runtime(algorithm, y):
        return np.where(algorithm == "nrow", 100, 500) + 100000 * np.isin(y, ["a", "b"])

    st = reg.status.copy()
    pos = np.searchsorted(st["job_id"].to_numpy(), ids["job_id"].to_numpy())
    sub = tab.set_index("job_id").loc[ids["job_id"]]
    st.loc[pos, "done"] = st.loc[pos, "done"].to_numpy() + runtime(sub["algorithm"].to_numpy(), sub["y"].to_numpy())
    reg.status = st

    res = bt.estimate_runtimes(tab, reg=reg)
    assert isinstance(res, bt.RuntimeEstimate)
    assert res.model is not None and type(res.model).__name__ == "RandomForestRegressor"  # R: ranger
    assert len(res.runtimes) == len(reg.status) and res["job_id"].is_monotonic_increasing
    print(res.summary())
    assert "Runtime Estimate for" in capsys.readouterr().out

    res = bt.ijoin(res.runtimes, tab)
    t = res.groupby("y")["runtime"].mean()
    assert (t["a"] > t[["c", "d", "e"]]).all()

    # remaining is suppressed if nothing more to submit, no error
    res = bt.estimate_runtimes(bt.unwrap(bt.get_job_pars(bt.find_done(reg=reg), reg=reg)), reg=reg)
    print(res.summary(n=2))
    assert "Runtime Estimate for" in capsys.readouterr().out
