"""The ML study end to end (issue 25): re-runnable scripts (``exist_ok``), fixing a learner in place
(``batchmark(replace=True)``), the benchmark's words (task/learner) wherever problem/algorithm are
accepted, the printed aggregate, the paper's figures (critical-difference diagram, box plots), and
the whole study (4 data sets x 3 learners x 3 folds, one learner broken then fixed) run as a script
twice on the worker pool."""

import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

import batchtools as bt
from conftest import snapshot

sklearn = pytest.importorskip("sklearn")
from sklearn.base import BaseEstimator, ClassifierMixin  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_iris, load_wine  # noqa: E402
from sklearn.dummy import DummyClassifier  # noqa: E402
from sklearn.model_selection import KFold  # noqa: E402
from sklearn.naive_bayes import GaussianNB  # noqa: E402
from sklearn.tree import DecisionTreeClassifier  # noqa: E402

IRIS = load_iris(return_X_y=True)
WINE = load_wine(return_X_y=True)
CANCER = load_breast_cancer(return_X_y=True)


class Flaky(BaseEstimator, ClassifierMixin):
    """A learner that fails to fit while ``broken`` (a bug), and predicts the majority class once fixed."""

    def __init__(self, broken=True):
        self.broken = broken

    def fit(self, X, y):
        if self.broken:
            raise RuntimeError("Flaky is broken")
        values, counts = np.unique(y, return_counts=True)
        self.majority_ = values[np.argmax(counts)]
        return self

    def predict(self, X):
        return np.full(len(X), self.majority_)


def ereg(tmp_path, name="study", cf=None, seed=7):
    r = bt.make_experiment_registry(file_dir=tmp_path / name, seed=seed, conf_file=None)
    r.cluster_functions = cf or bt.make_cluster_functions_interactive()
    return r


def held_backend():
    """Cluster functions that accept every job and never run it: the jobs stay queued."""
    return bt.make_cluster_functions("Hold", lambda r, jc: bt.make_submit_job_result(0, "held"),
                                     list_jobs_queued=lambda r: ["held"])


# ------------------------------------------------------------------------------------ exist_ok
def test_exist_ok_opens_the_same_kind_writeable_and_keeps_its_jobs(tmp_path):
    path = tmp_path / "reg"
    first = bt.make_experiment_registry(path, seed=3, conf_file=None)
    bt.batchmark(bt.benchmark_grid({"iris": IRIS}, {"dummy": DummyClassifier()}, 3), reg=first)
    again = bt.make_experiment_registry(path, seed=3, conf_file=None, exist_ok=True)
    assert isinstance(again, bt.ExperimentRegistry) and again.writeable and again is bt.get_default_registry()
    assert again.find_jobs()["job_id"].tolist() == [1, 2, 3] and again.problems == ["iris"]
    assert bt.make_experiment_registry(path, conf_file=None, exist_ok=True).seed == 3  # seed=None: whatever it has
    plain = tmp_path / "plain"
    bt.make_registry(plain, seed=1, conf_file=None, exist_ok=True)  # nothing there yet: made
    bt.batch_map(lambda x: x, x=[1, 2])
    assert len(bt.make_registry(plain, seed=1, conf_file=None, exist_ok=True).find_jobs()) == 2
    assert bt.make_registry(None, exist_ok=True).temporary  # a temporary registry is always new


@pytest.mark.parametrize("call, error, message", [
    (lambda p: bt.make_registry(p, seed=3, conf_file=None, exist_ok=True), FileExistsError,
     r"holds an experiment registry \(made by make_experiment_registry\), not a map registry"),
    (lambda p: bt.make_experiment_registry(p, seed=4, conf_file=None, exist_ok=True), ValueError,
     "has seed=3, this call asks seed=4"),
    (lambda p: bt.make_experiment_registry(p, seed=3, packages=["json"], conf_file=None, exist_ok=True), ValueError,
     r"packages: the registry .* has packages=\(\), this call asks packages=\('json',\)"),
    (lambda p: bt.make_experiment_registry(p, seed=3, conf_file=None, exist_ok="yes"), TypeError,
     "exist_ok: must be True or False"),
    (lambda p: bt.make_experiment_registry(p, seed=3, conf_file=None), FileExistsError,
     r"already holds a registry.*exist_ok=True"),
])
def test_exist_ok_refuses_another_kind_or_seed_naming_it_and_writes_nothing(tmp_path, call, error, message):
    path = tmp_path / "reg"
    bt.make_experiment_registry(path, seed=3, conf_file=None).add_problem("p", data=1)
    bt.get_default_registry().lease.release()  # as if its session had ended: the call below may open it
    before = snapshot(path)
    with pytest.raises(error, match=message):
        call(path)
    assert snapshot(path) == before


def test_exist_ok_is_refused_while_another_live_session_writes(tmp_path):
    path = tmp_path / "reg"
    script = (f"import batchtools as bt, sys, time; bt.make_registry({str(path)!r}, seed=1, conf_file=None); "
              "print('ready', flush=True); sys.stdin.read()")
    other = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "ready"
        with pytest.raises(bt.LeaseError, match="open for writing in another session"):
            bt.make_registry(path, seed=1, conf_file=None, exist_ok=True)
    finally:
        other.stdin.close()
        other.wait(timeout=60)


def _design(learners, tasks=None, resamplings=3):
    return bt.benchmark_grid(tasks or {"iris": IRIS, "wine": WINE}, learners, resamplings)


# ------------------------------------------------------------------------------------ task / learner
def test_task_and_learner_are_accepted_wherever_problem_and_algorithm_are(tmp_path):
    reg = ereg(tmp_path, cf=bt.make_cluster_functions_multicore(2))
    bt.batchmark(_design({"dummy": DummyClassifier(), "tree": DecisionTreeClassifier(random_state=0)}),
                 scoring="accuracy")
    by_words = bt.summarize_experiments(by=["task", "learner"])
    by_names = bt.summarize_experiments(by=["problem", "algorithm"])
    assert by_words.columns.tolist() == ["task", "learner", "count"]
    assert by_words.to_numpy().tolist() == by_names.to_numpy().tolist()
    assert bt.find_experiments(task="wine", learner=["tree"])["job_id"].tolist() == [10, 11, 12]
    assert bt.find_experiments(task="wine", learner="tree").equals(bt.find_experiments(prob_name="wine",
                                                                                       algo_name="tree"))
    assert bt.find_jobs("learner == 'tree' and fold == 1")["job_id"].tolist() == [4, 10]
    with pytest.raises(ValueError, match="task: is another name for prob_name; give one of them"):
        bt.find_experiments(task="wine", prob_name="wine")
    bt.submit_jobs()
    assert bt.wait_for_jobs()
    pytest.importorskip("matplotlib")
    fig = bt.plot_timeline(color_by="learner")
    legend = fig.axes[0].get_legend()
    assert legend.get_title().get_text() == "learner"
    assert {"dummy", "tree"} <= {t.get_text().split(" (")[0] for t in legend.get_texts()}  # "tree (6)"
    out = tmp_path / "timeline.png"
    cli = subprocess.run([sys.executable, "-m", "batchtools.cli", "timeline", str(reg.file_dir), "--color-by", "task",
                          "-o", str(out)], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0, cli.stderr
    assert out.stat().st_size > 1000


def test_the_benchmark_words_are_not_taken_for_columns_elsewhere(tmp_path):
    r = ereg(tmp_path, "plain")
    bt.add_problem("p", data=1)
    bt.add_algorithm("a", fun=lambda instance, learner: learner)
    bt.add_experiments(algo_designs={"a": pd.DataFrame({"learner": ["x", "y"]})})
    # a plain experiment registry: "learner" is the parameter, "task" nothing
    assert bt.summarize_experiments(by="learner")["learner"].tolist() == ["x", "y"]
    with pytest.raises(ValueError, match=r"by: unknown column\(s\) \['task'\]"):
        bt.summarize_experiments(by="task")
    bt.submit_jobs()
    pytest.importorskip("matplotlib")
    with pytest.raises(ValueError, match="color_by: 'task' is neither a job parameter"):
        bt.plot_timeline(color_by="task", reg=r)
