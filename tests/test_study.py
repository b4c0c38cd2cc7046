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
from pathlib import Path

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


def test_exist_ok_takes_source_files_as_they_were_given_the_first_time(tmp_path):
    """A relative source file is stored as an absolute path (from the work dir): the same call run
    again (a script run twice) opens the registry; another file is refused."""
    (tmp_path / "helpers.py").write_text("X = 1\n")
    (tmp_path / "other.py").write_text("X = 2\n")
    path = tmp_path / "reg"
    bt.make_registry(path, seed=1, conf_file=None, work_dir=tmp_path, source=["helpers.py"])
    bt.get_default_registry().lease.release()
    again = bt.make_registry(path, seed=1, conf_file=None, work_dir=tmp_path, source=["helpers.py"], exist_ok=True)
    assert again.source == (str(tmp_path / "helpers.py"),)
    again.lease.release()
    with pytest.raises(ValueError, match="source: the registry"):
        bt.make_registry(path, seed=1, conf_file=None, work_dir=tmp_path, source=["other.py"], exist_ok=True)


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


# ------------------------------------------------------------------------------------ replace=True
def _design(learners, tasks=None, resamplings=3):
    return bt.benchmark_grid(tasks or {"iris": IRIS, "wine": WINE}, learners, resamplings)


def test_a_broken_learner_is_fixed_in_place_with_replace(tmp_path, caplog):
    reg = ereg(tmp_path)
    broken = _design({"tree": DecisionTreeClassifier(random_state=0), "flaky": Flaky()})
    assert bt.batchmark(broken, scoring="accuracy")["job_id"].tolist() == list(range(1, 13))
    bt.submit_jobs()
    flaky = bt.find_experiments(learner="flaky")["job_id"].tolist()
    assert bt.find_errors()["job_id"].tolist() == flaky == [4, 5, 6, 10, 11, 12]
    kept = bt.get_job_table(bt.find_done())[["job_id", "done", "job_hash"]]
    fixed = _design({"tree": DecisionTreeClassifier(random_state=0), "flaky": Flaky(broken=False)})

    before = snapshot(reg.file_dir)
    with pytest.raises(ValueError, match=r"learner 'flaky' is already in this registry with other settings .*"
                                         r"pass replace=True to replace its jobs"):
        bt.batchmark(fixed, scoring="accuracy")
    assert snapshot(reg.file_dir) == before

    with caplog.at_level(logging.WARNING, logger="batchtools"):
        ids = bt.batchmark(fixed, scoring="accuracy", replace=True)
    assert ids["job_id"].tolist() == flaky  # the same jobs, to run again
    assert "learner 'flaky' has other settings (replace=True): its 6 jobs will run again; 0 results and 6 errors " \
           "discarded" in caplog.text
    assert bt.find_not_submitted()["job_id"].tolist() == flaky and len(bt.find_errors()) == 0
    pd.testing.assert_frame_equal(bt.get_job_table(kept["job_id"])[["job_id", "done", "job_hash"]], kept)  # kept
    assert bt.submit_jobs()["job_id"].tolist() == flaky
    res = bt.reduce_results_batchmark()
    assert len(res.scores) == 12 and res.scores["accuracy"].notna().all()
    # the same fixed design again: nothing to add, nothing replaced, nothing to submit, nothing written
    before = {k: v for k, v in snapshot(reg.file_dir).items() if k != "lease.json"}
    assert len(bt.batchmark(fixed, scoring="accuracy", replace=True)) == 0
    assert len(bt.submit_jobs()) == 0
    assert {k: v for k, v in snapshot(reg.file_dir).items() if k != "lease.json"} == before


def test_replace_counts_discarded_results_and_keeps_unchanged_tasks(tmp_path, caplog):
    reg = ereg(tmp_path)
    bt.batchmark(_design({"tree": DecisionTreeClassifier(random_state=0)}), scoring="accuracy")
    bt.submit_jobs()
    deeper = _design({"tree": DecisionTreeClassifier(random_state=0, max_depth=1)})
    with caplog.at_level(logging.WARNING, logger="batchtools"):
        assert bt.batchmark(deeper, scoring="accuracy", replace=True)["job_id"].tolist() == [1, 2, 3, 4, 5, 6]
    assert "6 results and 0 errors discarded" in caplog.text
    assert not any(reg.store.exists(i) for i in range(1, 7))
    bt.submit_jobs()
    assert bt.reduce_results_batchmark().scores["params"].map(lambda p: p["max_depth"]).tolist() == [1] * 6
    # scoring is part of a learner's settings too
    with pytest.raises(ValueError, match="pass replace=True"):
        bt.batchmark(deeper, scoring="balanced_accuracy")


def test_replace_a_task_with_other_data_or_other_folds(tmp_path, caplog):
    reg = ereg(tmp_path)
    learners = {"dummy": DummyClassifier(), "tree": DecisionTreeClassifier(random_state=0)}
    bt.batchmark(_design(learners), scoring="accuracy")
    bt.submit_jobs()
    with pytest.raises(ValueError, match="task 'iris' is already in this registry with other data; pass replace=True"):
        bt.batchmark(_design(learners, {"iris": (IRIS[0][:120], IRIS[1][:120])}), scoring="accuracy")
    # the iris jobs run again on the new data, wine's are kept
    wine_done = bt.get_job_table(bt.find_experiments(task="wine"))[["job_id", "done"]]
    with caplog.at_level(logging.WARNING, logger="batchtools"):
        ids = bt.batchmark(_design(learners, {"iris": (IRIS[0][:120], IRIS[1][:120])}), scoring="accuracy",
                           replace=True)
    assert ids["job_id"].tolist() == bt.find_experiments(task="iris")["job_id"].tolist() == [1, 2, 3, 4, 5, 6]
    assert "task 'iris' has other data (replace=True): its 6 jobs will run again; 6 results" in caplog.text
    pd.testing.assert_frame_equal(bt.get_job_table(wine_done["job_id"])[["job_id", "done"]], wine_done)
    bt.submit_jobs()
    assert (bt.reduce_results_batchmark().scores.query("task == 'iris'")["n_test"] == 40).all()

    # other folds under the same resampling name: 5 instead of 3, then 2
    with pytest.raises(ValueError, match="'cv3' of task 'wine' is already in this registry with other folds; "
                                         "pass replace=True"):
        bt.batchmark(_design(learners, {"wine": WINE}, {"cv3": 5}), scoring="accuracy")
    ids = bt.batchmark(_design(learners, {"wine": WINE}, {"cv3": 5}), scoring="accuracy", replace=True)
    assert len(ids) == 10 and bt.summarize_experiments(by=["task", "learner"])["count"].tolist() == [3, 3, 5, 5]
    bt.submit_jobs()
    before = set(bt.find_experiments(task="wine")["job_id"])
    with caplog.at_level(logging.WARNING, logger="batchtools"):
        ids = bt.batchmark(_design(learners, {"wine": WINE}, {"cv3": 2}), scoring="accuracy", replace=True)
    assert "6 removed (folds it no longer has)" in caplog.text
    after = set(bt.find_experiments(task="wine")["job_id"])
    assert after < before and len(after) == 4 and set(ids["job_id"]) == after
    bt.submit_jobs()
    s = bt.reduce_results_batchmark().scores
    assert s.groupby(["task", "learner"]).size().tolist() == [3, 3, 2, 2]
    assert len(reg.store.ids()) == 10  # the removed jobs' results went with them


def test_replace_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    reg = ereg(tmp_path)
    learners = {"dummy": DummyClassifier(), "tree": DecisionTreeClassifier(random_state=0)}
    bt.batchmark(_design(learners, {"iris": IRIS}, {"cv3": 3, "holdout": KFold(2, shuffle=True)}), scoring="accuracy")
    bt.submit_jobs(bt.find_experiments(learner="tree"))
    before = snapshot(reg.file_dir)
    # a replaced task must be split again for every resampling it has jobs of
    with pytest.raises(ValueError, match=r"task 'iris' has other data, and it has jobs of the resampling\(s\) "
                                         r"\['holdout'\] that this design does not split again"):
        bt.batchmark(_design(learners, {"iris": (IRIS[0][:99], IRIS[1][:99])}), scoring="accuracy", replace=True)
    assert snapshot(reg.file_dir) == before
    # a failure half-way (after the learner was stored) leaves files and memory as they were
    import batchtools.api.benchmark as benchmark

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(benchmark, "add_experiments", fail)
    status = reg.status.copy()
    with pytest.raises(OSError, match="disk full"):
        bt.batchmark(_design({"dummy": DummyClassifier(strategy="uniform"), "new": GaussianNB()}, {"iris": IRIS}),
                     scoring="accuracy", replace=True)
    assert snapshot(reg.file_dir) == before
    pd.testing.assert_frame_equal(reg.status, status)
    assert reg.algorithms == ["dummy", "tree"]
    monkeypatch.undo()
    # jobs to replace that are queued or running: refused, naming them
    reg.cluster_functions = held_backend()
    bt.submit_jobs(bt.find_experiments(learner="dummy"))
    before = snapshot(reg.file_dir)
    with pytest.raises(ValueError, match=r"replace: 5 job\(s\) to replace are queued or running, e.g. \[1, 2, 3, 4, 5\]; "
                                         r"wait_for_jobs\(\) or kill_jobs\(\) them first"):
        bt.batchmark(_design({"dummy": DummyClassifier(strategy="uniform")}, {"iris": IRIS}), scoring="accuracy",
                     replace=True)
    assert snapshot(reg.file_dir) == before


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


# ------------------------------------------------------------------------------------ the aggregate
SCORERS = ["accuracy", "balanced_accuracy", "f1_macro", "precision_macro"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """4 tasks x 3 learners x 3 folds, 4 scorers, run in this process."""
    reg = bt.make_experiment_registry(tmp_path_factory.mktemp("agg") / "reg", seed=1, conf_file=None,
                                      make_default=False)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    tasks = {"iris": IRIS, "wine": WINE, "cancer": CANCER, "iris_half": (IRIS[0][::2], IRIS[1][::2])}
    learners = {"featureless": DummyClassifier(), "tree": DecisionTreeClassifier(random_state=0),
                "bayes": GaussianNB()}
    bt.batchmark(bt.benchmark_grid(tasks, learners, 3), scoring=SCORERS, reg=reg)
    bt.submit_jobs(reg=reg)
    return bt.reduce_results_batchmark(reg=reg)


def test_aggregate_has_every_score_first_and_times_only_on_request(study):
    agg = study.aggregate()
    means = [c for s in SCORERS for c in (f"{s}_mean", f"{s}_sd")]
    assert agg.columns.tolist() == ["task", "learner", "resampling"] + means + ["n"]
    timed = study.aggregate(times=True)
    assert timed.columns.tolist() == agg.columns.tolist() + ["fit_time_mean", "fit_time_sd", "score_time_mean",
                                                             "score_time_sd"]
    pd.testing.assert_frame_equal(pd.DataFrame(timed[agg.columns]), pd.DataFrame(agg))
    with pytest.raises(TypeError, match="times: must be True or False"):
        study.aggregate(times="yes")
    assert type(agg[["task", "accuracy_mean"]]) is pd.DataFrame  # what is made from it is a plain DataFrame


@pytest.mark.parametrize("terminal", [False, True])
def test_printed_aggregate_shows_every_scorer_at_80_columns(study, monkeypatch, terminal):
    import shutil

    monkeypatch.setattr(sys.stdout, "isatty", lambda: terminal, raising=False)
    monkeypatch.setattr(shutil, "get_terminal_size", lambda fallback=(80, 24): os.terminal_size((80, 24)))
    with pd.option_context("display.max_columns", 0 if terminal else 20, "display.width", 80):
        text = str(study.aggregate())
    assert "..." not in text
    assert max(map(len, text.splitlines())) <= 80
    for s in SCORERS:
        assert f"{s}_mean" in text and f"{s}_sd" in text
    first = text.splitlines()[0].split()
    assert first[:4] == ["task", "learner", "resampling", "accuracy_mean"]  # the scores come first
    assert "fit_time" not in text
    assert f"{study.aggregate()['accuracy_mean'].iloc[0]:.6f}" in text


# ------------------------------------------------------------------------------------ the figures
def test_critical_difference_follows_demsar(study):
    from batchtools.api.benchmark_plots import critical_difference

    cd = critical_difference(study.scores, "accuracy")
    k, n = 3, 4
    means = study.scores.groupby(["task", "learner"])["accuracy"].mean().unstack()
    ranks = means.rank(axis=1, ascending=False).mean()
    pd.testing.assert_series_equal(cd.mean_ranks.sort_index(), ranks.sort_index(), check_names=False)
    assert cd.n_blocks == n and cd.left_out == []
    # Friedman's statistic by its formula (no ties here) and the Nemenyi CD with Demsar's q_0.05 = 2.343 (k = 3)
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(ranks.to_numpy() ** 2) - k * (k + 1) ** 2 / 4)
    assert cd.statistic == pytest.approx(chi2)
    from scipy.stats import chi2 as chi2_dist

    assert cd.p_value == pytest.approx(chi2_dist.sf(chi2, k - 1))
    assert cd.cd == pytest.approx(2.343 * np.sqrt(k * (k + 1) / (6 * n)), abs=1e-3)
    assert cd.mean_ranks.index[-1] == "featureless"
    five = critical_difference(pd.concat([study.scores.assign(learner=study.scores["learner"] + s)
                                          for s in ("", "2")]), "accuracy", alpha=0.1)
    q = five.cd / np.sqrt(6 * 7 / (6 * 4))
    assert q == pytest.approx(2.589, abs=1e-3)  # Demsar's table: q_0.10 for k = 6
    # groups: runs of learners within cd of each other, every such pair in one, none inside another
    for res in (cd, five):
        r = res.mean_ranks
        for g in res.groups:
            assert len(g) >= 2 and r[g[-1]] - r[g[0]] < res.cd
            assert list(r.index).index(g[-1]) - list(r.index).index(g[0]) == len(g) - 1  # a run
            assert not any(set(g) < set(h) for h in res.groups)
        for i, a in enumerate(r.index):
            for b in r.index[i + 1:]:
                assert (r[b] - r[a] < res.cd) == any({a, b} <= set(g) for g in res.groups)
    assert five.groups  # the duplicated learners (equal ranks) are joined


def test_critical_difference_is_refused_without_enough_learners_or_tasks(study, caplog):
    from batchtools.api.benchmark_result import BenchmarkResult

    s = study.scores
    two = BenchmarkResult(s[s["learner"] != "bayes"], study.scorers, study.info)
    with pytest.raises(ValueError, match="compares 3 or more learners"):
        two.plot(kind="cd")
    gaps = s[~((s["learner"] == "tree") & (s["task"] != "iris"))]
    with pytest.raises(ValueError, match=r"needs scores of every learner on 2 or more tasks; 1 task\(s\) have them "
                                         r"\(3 left out"):
        BenchmarkResult(gaps, study.scorers, study.info).plot(kind="cd")
    one_gap = s[~((s["learner"] == "tree") & (s["task"] == "iris"))]
    pytest.importorskip("matplotlib")
    with caplog.at_level(logging.WARNING, logger="batchtools"):
        fig = BenchmarkResult(one_gap, study.scorers, study.info).plot(kind="cd")
    assert "task(s) ['iris'] left out" in caplog.text
    assert "mean rank over 3 tasks" in fig.axes[0].get_title(loc="left")
    with pytest.raises(ValueError, match="kind: one of"):
        study.plot(kind="violin")
    with pytest.raises(ValueError, match="by: the critical-difference diagram ranks learners per task"):
        study.plot(kind="cd", by="fold")


def test_cd_diagram_and_box_plot(study, tmp_path):
    pytest.importorskip("matplotlib")
    from batchtools.api.benchmark_plots import critical_difference

    fig = study.plot(kind="cd", score="balanced_accuracy")
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    cd = critical_difference(study.scores, "balanced_accuracy")
    assert f"CD = {cd.cd:.2f}" in texts
    for learner, rank in cd.mean_ranks.items():
        assert f"{learner} ({rank:.2f})" in texts
    title = ax.get_title(loc="left")
    assert f"Friedman \u03c7\u00b2 = {cd.statistic:.2f}, p = {cd.p_value:.3g}" in title
    assert "mean rank over 4 tasks (1 = best)" in title
    fig.savefig(tmp_path / "cd.pdf")
    worse = study.plot(kind="cd", score="balanced_accuracy", greater_is_better=False)
    assert f"featureless ({4 - cd.mean_ranks['featureless']:.2f})" in [t.get_text() for t in worse.axes[0].texts]

    box = study.plot(kind="box")
    assert [a.get_title(loc="left") for a in box.axes] == ["task iris", "task wine", "task cancer", "task iris_half"]
    assert [t.get_text() for t in box.axes[0].get_yticklabels()] == ["featureless", "tree", "bayes"]
    assert "accuracy per fold" in box.axes[-1].get_xlabel()
    # each panel has one box per learner: the median line lies at the learner's median score
    iris = study.scores.query("task == 'iris'")
    medians = [line.get_xdata()[0] for line in box.axes[0].lines if len(line.get_xdata()) == 2
               and line.get_color() == "black" and line.get_linewidth() == 1.5]
    assert sorted(medians) == pytest.approx(sorted(iris.groupby("learner")["accuracy"].median()))
    box.savefig(tmp_path / "box.png")


# ------------------------------------------------------------------------------------ the study, run twice
STUDY = '''
import numpy as np
from sklearn import datasets, dummy, naive_bayes
from sklearn.base import BaseEstimator, ClassifierMixin

import batchtools as bt

class Nearest(BaseEstimator, ClassifierMixin):
    """Nearest centroid."""
    def __init__(self, shrink=0.0):
        self.shrink = shrink
    def fit(self, X, y):
        FIT_BODY
        self.classes_ = np.unique(y)
        self.centroids_ = np.array([X[y == c].mean(axis=0) for c in self.classes_]) * (1 - self.shrink)
        return self
    def predict(self, X):
        d = ((X[:, None, :] - self.centroids_[None]) ** 2).sum(axis=2)
        return self.classes_[d.argmin(axis=1)]

reg = bt.make_experiment_registry("study", seed=1, conf_file=None, exist_ok=True)
reg.cluster_functions = bt.make_cluster_functions_multicore(2)
tasks = {"iris": datasets.load_iris(return_X_y=True), "wine": datasets.load_wine(return_X_y=True),
         "cancer": datasets.load_breast_cancer(return_X_y=True), "digits": datasets.load_digits(return_X_y=True)}
learners = {"featureless": dummy.DummyClassifier(), "bayes": naive_bayes.GaussianNB(),
            "nearest": Nearest(shrink=0.1)}
design = bt.benchmark_grid(tasks, learners, 3)
ids = bt.batchmark(design, scoring=["accuracy", "balanced_accuracy", "f1_macro"], replace=True)
print("to run:", len(ids))
workers = bt.submit_workers(2, idle_timeout=0)  # the jobs not submitted yet; none, saying so, if there are none
print("queued for the pool:", len(workers))
bt.wait_for_jobs()
print(bt.get_status())
res = bt.reduce_results_batchmark()
print(res.aggregate())
'''


def test_the_study_script_run_again_fixes_a_learner_and_then_adds_nothing(tmp_path):
    script = tmp_path / "study.py"

    def run(fit_body: str) -> tuple[str, str]:  # all it printed, and its stdout
        script.write_text(textwrap.dedent(STUDY).replace("FIT_BODY", fit_body))
        env = dict(os.environ, BATCHTOOLS_PROGRESS="0", COLUMNS="80")
        out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout + out.stderr, out.stdout

    first, _ = run("raise RuntimeError('a bug in Nearest.fit')")
    assert "to run: 36" in first and "queued for the pool: 36" in first
    assert "Error   : 12" in first  # nearest, on 4 tasks x 3 folds
    reg = bt.load_registry(tmp_path / "study")
    assert bt.find_errors(reg=reg)["job_id"].tolist() == bt.find_experiments(learner="nearest", reg=reg)["job_id"].tolist()
    done = bt.get_job_table(bt.find_done(reg=reg), reg=reg)[["job_id", "started", "done", "job_hash"]]

    second, _ = run("pass")  # the bug fixed (same parameters, other code): replace=True replaces its jobs
    assert "learner 'nearest' has other settings (replace=True): its 12 jobs will run again; 0 results and 12 errors" \
        in second
    assert "to run: 12" in second and "queued for the pool: 12" in second and "Done    : 36" in second
    reg = bt.load_registry(tmp_path / "study")
    pd.testing.assert_frame_equal(bt.get_job_table(done["job_id"], reg=reg)[done.columns], done)  # kept, not rerun
    table = bt.get_job_table(reg=reg)[["job_id", "started", "done", "job_hash"]]

    third, stdout = run("pass")  # the same script again: adds and submits nothing, and says so
    assert "to run: 0" in third and "queued for the pool: 0" in third and "Done    : 36" in third
    assert "no job to claim (every job was submitted already" in third and "no worker was submitted" in third
    assert "replace=True" not in third
    reg = bt.load_registry(tmp_path / "study")
    pd.testing.assert_frame_equal(bt.get_job_table(reg=reg)[table.columns], table)
    # the printed aggregate (80 columns, not a terminal) shows every scorer's mean and sd
    printed = stdout[stdout.index("task"):]
    for scorer in ("accuracy", "balanced_accuracy", "f1_macro"):
        assert f"{scorer}_mean" in printed and f"{scorer}_sd" in printed
    assert "..." not in printed and max(map(len, printed.splitlines())) <= 80
    res = bt.reduce_results_batchmark(reg=reg)
    assert len(res.scores) == 36 and res.scores[["accuracy", "balanced_accuracy", "f1_macro"]].notna().all().all()
    assert set(res.scores.query("learner == 'nearest'")["params"].map(lambda p: p["shrink"])) == {0.1}


# ------------------------------------------------------------------------------------ README
README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_blocks() -> list[str]:
    text = README.read_text()
    return [b.split("\n", 1)[1] for b in text.split("```")[1::2]]


def test_readme_starts_with_the_two_setup_commands():
    first = _readme_blocks()[0].strip().splitlines()
    assert [line.split("#")[0].strip() for line in first] == ["make demo", "make test"]


def test_readme_benchmark_run_twice_adds_and_submits_nothing_the_second_time(tmp_path):
    code = next(b for b in _readme_blocks() if "batchmark(" in b)
    assert "exist_ok=True" in code
    script = tmp_path / "benchmark.py"
    script.write_text(code)
    env = dict(os.environ, BATCHTOOLS_PROGRESS="0")

    def run() -> str:
        out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    first = run()
    reg = bt.load_registry(tmp_path / "benchmark")
    table = bt.get_job_table(reg=reg)[["job_id", "submitted", "started", "done", "job_hash"]]
    assert len(table) == 60 and table["done"].notna().all()
    second = run()
    reg = bt.load_registry(tmp_path / "benchmark")
    pd.testing.assert_frame_equal(bt.get_job_table(reg=reg)[table.columns], table)  # nothing added or run again
    assert second == first  # the same aggregate, every scorer shown
    for scorer in ("accuracy", "balanced_accuracy"):
        assert f"{scorer}_mean" in second and f"{scorer}_sd" in second


def test_the_guides_study_script_run_twice_submits_nothing_the_second_time(tmp_path):
    """docs/ml-benchmarks.md's study as one script: run again, it adds nothing and submit_workers
    submits no worker, saying so (no check of pending jobs needed in the script)."""
    guide = (Path(__file__).resolve().parent.parent / "docs" / "ml-benchmarks.md").read_text()
    part = guide[guide.index("## The whole study as one script"):]
    code = part.split("```python\n", 1)[1].split("```", 1)[0]
    assert "submit_workers(2)" in code and "find_not_submitted" not in code
    script = tmp_path / "study.py"
    script.write_text(code)
    env = dict(os.environ, BATCHTOOLS_PROGRESS="0", MPLBACKEND="Agg")

    def run() -> str:
        out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        return out

    first = run()
    reg = bt.load_registry(tmp_path / "study")
    table = bt.get_job_table(reg=reg)[["job_id", "submitted", "started", "done", "job_hash"]]
    assert len(table) == 36 and table["done"].notna().all() and len(bt.get_workers(reg=reg)) == 2
    second = run()
    assert "no job to claim (every job was submitted already" in second.stderr
    assert "no worker was submitted" in second.stderr
    reg = bt.load_registry(tmp_path / "study")
    pd.testing.assert_frame_equal(bt.get_job_table(reg=reg)[table.columns], table)  # nothing added or run again
    assert len(bt.get_workers(reg=reg)) == 2
    assert second.stdout == first.stdout  # the same aggregate
