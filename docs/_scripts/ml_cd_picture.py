"""Make the critical-difference diagram of the ML benchmark guide (docs/images/ml-cd.png): the
guide's study (4 data sets x 3 learners x 3 folds) run by 2 pool workers on Multicore(2).

    .venv/bin/python docs/_scripts/ml_cd_picture.py [OUTPUT_DIR]   (default docs/images)

Takes about 10 s. The registry goes to a temporary folder.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from sklearn import datasets, dummy, naive_bayes, tree  # noqa: E402

import batchtools as bt  # noqa: E402


def main(out: Path) -> None:
    tasks = {"iris": datasets.load_iris(return_X_y=True), "wine": datasets.load_wine(return_X_y=True),
             "cancer": datasets.load_breast_cancer(return_X_y=True), "digits": datasets.load_digits(return_X_y=True)}
    learners = {"featureless": dummy.DummyClassifier(), "bayes": naive_bayes.GaussianNB(),
                "tree": tree.DecisionTreeClassifier(max_depth=5)}
    with tempfile.TemporaryDirectory() as tmp:
        reg = bt.make_experiment_registry(Path(tmp) / "study", seed=1, conf_file=None)
        reg.cluster_functions = bt.make_cluster_functions_multicore(2)
        bt.batchmark(bt.benchmark_grid(tasks, learners, 3), scoring=["accuracy", "balanced_accuracy"])
        bt.submit_workers(2)
        bt.wait_for_jobs()
        bt.reduce_results_batchmark().plot(kind="cd").savefig(out / "ml-cd.png", dpi=90)
    print(f"wrote {out / 'ml-cd.png'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "images")
