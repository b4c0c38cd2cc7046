"""The experiment of the blog post "Load-balanced parallel machine learning benchmarks"
(tdhock.github.io, 2025-05-30) in Python: SOAK (same/other/all) cross-validation, run by a worker pool.

Simulated regression data for two people: in "easy" both follow the same pattern (y = x^2), in
"impossible" they follow opposite ones (y = x^2 for Bob, -x^2 for Alice). Learners: featureless
(predicts the mean) and a decision tree (rpart's settings). The splitter trains on the *same*
person, the *other* person or *all* people and tests on each person, in 3 folds: 18 splits per
task, one job each, 72 jobs. Two pool workers pull them; the RMSE of every fold goes to a score
table (``soak-scores.csv``), the figure of the computation to ``soak-timeline.png``.

Run: ``python examples/soak_benchmark.py`` (part of ``make demo``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.dummy import DummyRegressor
from sklearn.tree import DecisionTreeRegressor

import batchtools as bt

WORK = Path(__file__).resolve().parent / "demo-registries"


class SameOtherAllCV:
    """SOAK splitter (mlr3resampling's ResamplingSameOtherSizesCV): rows are assigned to folds
    within each group; for every test fold and every group, train on the other folds' rows of the
    same group, of the other groups, or of all groups. Each split is described in the score table."""

    def __init__(self, n_folds: int = 3):
        self.n_folds = n_folds

    def split(self, X, y=None, groups=None):
        groups = np.asarray(groups)
        fold = np.empty(len(groups), dtype=int)
        for g in np.unique(groups):  # folds stratified by group; np.random is seeded by batchmark
            rows = np.flatnonzero(groups == g)
            fold[rows] = np.random.permutation(np.arange(rows.size) % self.n_folds) + 1
        for test_fold in range(1, self.n_folds + 1):
            for subset in np.unique(groups):
                test = np.flatnonzero((fold == test_fold) & (groups == subset))
                pool = fold != test_fold
                for train_subsets, rows in (("same", groups == subset), ("other", groups != subset),
                                            ("all", np.ones(len(groups), bool))):
                    yield (np.flatnonzero(pool & rows), test,
                           {"test_fold": test_fold, "test_subset": str(subset), "train_subsets": train_subsets})

    def get_n_splits(self, X=None, y=None, groups=None):
        return self.n_folds * len(np.unique(groups)) * 3


def rmse(estimator, X, y) -> float:
    """Root mean squared error of the estimator's predictions (a scorer: estimator, X, y)."""
    return float(np.sqrt(np.mean((estimator.predict(X) - np.asarray(y)) ** 2)))


def simulate(n: int = 80, seed: int = 1) -> dict[str, tuple]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, n)
    person = np.repeat(["Alice", "Bob"], n // 2)
    sign = np.where(person == "Alice", -1.0, 1.0)
    patterns = {"easy": x**2, "impossible": x**2 * sign}
    return {name: (pd.DataFrame({"x": x}), f + rng.normal(0, 0.5, n), person) for name, f in patterns.items()}


def main() -> None:
    print(f"\n{'=' * 72}\nExample 5: SOAK benchmark on a worker pool (the load-balancing blog's experiment)\n{'=' * 72}")
    WORK.mkdir(parents=True, exist_ok=True)
    reg = bt.make_experiment_registry(file_dir=WORK / "soak", seed=1)
    print(reg)
    learners = {"featureless": DummyRegressor(),
                "rpart": DecisionTreeRegressor(min_samples_split=20, min_samples_leaf=7, random_state=1)}
    design = bt.benchmark_grid(simulate(), learners, {"soak": SameOtherAllCV(3)})
    print(design[["task", "learner", "resampling"]])
    ids = bt.batchmark(design, scoring={"rmse": rmse})
    print(f"{len(ids)} jobs:", bt.summarize_experiments().to_dict("records"))

    # a pilot (the first split of every task x learner) teaches estimate_runtimes what costs what;
    # then two workers pull the rest one by one, the longest expected first
    bt.submit_workers(2, ids=bt.find_experiments(prob_pars="fold == 1"), idle_timeout=0)
    bt.wait_for_jobs()
    est = bt.estimate_runtimes(bt.unwrap(bt.get_job_pars()))
    todo = est[est["type"] == "estimated"].sort_values("runtime", ascending=False)
    bt.submit_workers(2, ids=todo["job_id"], idle_timeout=0)
    bt.wait_for_jobs()
    print(bt.get_status())
    res = bt.reduce_results_batchmark()
    res.scores.drop(columns="params").to_csv(WORK / "soak-scores.csv", index=False)
    cols = ["task", "learner", "train_subsets", "test_fold", "test_subset", "rmse"]
    print(res.scores[cols].head(6).to_string(index=False))
    table = res.aggregate(by=["task", "test_subset", "learner", "train_subsets"])
    print(table[["task", "test_subset", "learner", "train_subsets", "rmse_mean", "rmse_sd", "n"]]
          .round(3).to_string(index=False))
    print(f"score table written to {WORK / 'soak-scores.csv'}")
    try:
        bt.plot_timeline().savefig(WORK / "soak-timeline.png", dpi=100)
        res.plot(by="train_subsets").savefig(WORK / "soak-scores.png", dpi=100)
        print(f"timeline written to {WORK / 'soak-timeline.png'}, scores to {WORK / 'soak-scores.png'}")
    except ImportError:
        print("(install matplotlib for the pictures)")


if __name__ == "__main__":
    main()
