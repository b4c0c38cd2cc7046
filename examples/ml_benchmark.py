"""The batchtools vignette's machine-learning example, as an ML benchmark through ``batchmark``.

Tasks iris and wine; learners: support vector machines (linear and RBF kernel, C = 0.1 and 1)
and a random forest; resamplings: 5-fold cross-validation and 5 random 67 % subsamples (the
vignette's ``ratio = 0.67``). One job per task x learner x resampling x fold (100 jobs) on the
default backend, reduced to a tidy score table and aggregated per task x learner.
"""

from __future__ import annotations

from pathlib import Path

from sklearn.datasets import load_iris, load_wine
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import ShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

import batchtools as bt

WORK = Path(__file__).resolve().parent / "demo-registries"


def main() -> None:
    print(f"\n{'=' * 72}\nExample 4: an ML benchmark (iris and wine; svm vs forest) with batchmark\n{'=' * 72}")
    WORK.mkdir(parents=True, exist_ok=True)
    reg = bt.make_experiment_registry(file_dir=WORK / "ml", seed=1)
    print(reg)
    tasks = {"iris": load_iris(return_X_y=True), "wine": load_wine(return_X_y=True)}
    learners = {f"svm_{k}_C{c}": make_pipeline(StandardScaler(), SVC(kernel=k, C=c))
                for k in ("linear", "rbf") for c in (0.1, 1.0)}
    learners["forest"] = RandomForestClassifier(n_estimators=100, n_jobs=1)
    design = bt.benchmark_grid(tasks, learners, {"cv5": 5, "subsample": ShuffleSplit(5, train_size=0.67)})
    print(design[["task", "learner", "resampling"]].head(4))
    ids = bt.batchmark(design, scoring=["accuracy", "balanced_accuracy"])
    print(f"{len(ids)} jobs; one of them:", bt.unwrap(bt.get_job_pars(ids["job_id"][:1])).to_dict("records"))
    print("test_job(1):", bt.test_job(1)["scores"])

    bt.submit_jobs()
    print("wait_for_jobs ->", bt.wait_for_jobs())
    print(bt.get_status())
    res = bt.reduce_results_batchmark()
    print(res)
    print(res.scores[["task", "learner", "resampling", "fold", "accuracy", "fit_time", "job_id"]].head(3))
    print(res.aggregate()[["task", "learner", "resampling", "accuracy_mean", "accuracy_sd", "n"]]
          .round(3).to_string(index=False))
    try:
        res.plot().savefig(WORK / "ml-scores.png", dpi=100)
        print(f"figure written to {WORK / 'ml-scores.png'}")
    except ImportError:
        pass


if __name__ == "__main__":
    main()
