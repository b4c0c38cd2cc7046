"""The batchtools vignette's machine-learning example, ported to scikit-learn.

Problem ``iris``: subsample the iris data (ratio of training points 0.67 or 0.9).
Algorithms ``svm`` (kernel x C) and ``forest`` (n_estimators), 5 replications each,
run on the local multicore backend, reduced to the misclassification error and
aggregated per algorithm and parameters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import batchtools as bt

WORK = Path(__file__).resolve().parent / "demo-registries"


def subsample(data, job, ratio):
    n = len(data["y"])
    train = job.rng.choice(n, size=int(n * ratio), replace=False)
    test = np.setdiff1d(np.arange(n), train)
    return {"train": train, "test": test}


def svm_wrapper(data, job, instance, kernel, C):
    from sklearn.metrics import confusion_matrix
    from sklearn.svm import SVC

    X, y = data["X"], data["y"]
    model = SVC(kernel=kernel, C=C).fit(X[instance["train"]], y[instance["train"]])
    return confusion_matrix(y[instance["test"]], model.predict(X[instance["test"]]), labels=[0, 1, 2])


def forest_wrapper(data, job, instance, n_estimators):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import confusion_matrix

    X, y = data["X"], data["y"]
    model = RandomForestClassifier(n_estimators=n_estimators, random_state=job.seed, n_jobs=1)
    model.fit(X[instance["train"]], y[instance["train"]])
    return confusion_matrix(y[instance["test"]], model.predict(X[instance["test"]]), labels=[0, 1, 2])


def mce(conf) -> dict:
    return {"mce": float((conf.sum() - np.trace(conf)) / conf.sum())}


def main() -> None:
    from sklearn.datasets import load_iris

    print(f"\n{'=' * 72}\nExample 4: machine learning experiments (iris, svm vs forest)\n{'=' * 72}")
    WORK.mkdir(parents=True, exist_ok=True)
    reg = bt.make_experiment_registry(file_dir=WORK / "iris", seed=1)
    iris = load_iris()
    bt.add_problem("iris", data={"X": iris.data, "y": iris.target}, fun=subsample, seed=42)
    bt.add_algorithm("svm", fun=svm_wrapper)
    bt.add_algorithm("forest", fun=forest_wrapper)
    print("problems:", reg.problems, "algorithms:", reg.algorithms)

    pdes = {"iris": pd.DataFrame({"ratio": [0.67, 0.9]})}
    ades = {
        "svm": pd.MultiIndex.from_product([["linear", "poly", "rbf"], [0.1, 1.0]], names=["kernel", "C"]).to_frame(index=False),
        "forest": pd.DataFrame({"n_estimators": [100, 500, 1000]}),
    }
    bt.add_experiments(pdes, ades, repls=5)
    print(bt.summarize_experiments())
    print(bt.summarize_experiments(by=["problem", "algorithm", "ratio"]))

    id1 = bt.find_experiments(algo_name="svm")["job_id"].iloc[0]
    id2 = bt.find_experiments(algo_name="forest", algo_pars="n_estimators == 1000")["job_id"].iloc[0]
    print(f"test_job({id1}):\n", bt.test_job(id1))
    print(f"test_job({id2}):\n", bt.test_job(id2))

    bt.submit_jobs()
    print("wait_for_jobs ->", bt.wait_for_jobs())
    print(bt.get_status())

    results = bt.reduce_results_dataframe(fun=mce)
    tab = bt.ijoin(bt.unwrap(bt.get_job_pars()), results)
    print(tab.head(6))
    summary = (tab[tab["ratio"] == 0.67]
               .groupby(["algorithm", "kernel", "C", "n_estimators"], dropna=False)["mce"].mean()
               .rename("mmce").reset_index())
    print(summary.to_string(index=False))


if __name__ == "__main__":
    main()
