"""ML benchmarks: benchmark_grid -> batchmark -> submit -> reduce_results_batchmark, on every local
backend and the worker pool; user code from the user's own modules; bad input; warm Multicore."""

import os
import sys

import numpy as np
import pandas as pd
import pytest

import batchtools as bt
from conftest import snapshot

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_iris, load_wine  # noqa: E402
from sklearn.dummy import DummyClassifier  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.model_selection import GroupKFold, KFold  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.tree import DecisionTreeClassifier  # noqa: E402

IRIS = load_iris(return_X_y=True)
WINE = load_wine(return_X_y=True)


def ereg(tmp_path, name="ereg", cf=None):
    r = bt.make_experiment_registry(file_dir=tmp_path / name, seed=7, conf_file=None)
    r.cluster_functions = cf or bt.make_cluster_functions_interactive()
    return r


def grid(**kw):
    learners = kw.pop("learners", {"dummy": DummyClassifier(), "forest": RandomForestClassifier(n_estimators=5)})
    return bt.benchmark_grid(kw.pop("tasks", {"iris": IRIS, "wine": WINE}), learners, kw.pop("resamplings", 3))


def run_all(reg, submit=None):
    (submit or (lambda: bt.submit_jobs(reg=reg)))()
    assert bt.wait_for_jobs(reg=reg, timeout=300), bt.get_error_messages(reg=reg).to_string()
    return bt.reduce_results_batchmark(reg=reg)


def score_table(res):
    return res.scores[["task", "learner", "resampling", "fold", "accuracy"]].reset_index(drop=True)


# ------------------------------------------------------------------------------------ the grid
def test_grid_has_a_row_per_task_learner_resampling():
    design = bt.benchmark_grid({"iris": IRIS, "wine": WINE}, {"dummy": DummyClassifier()},
                               {"cv3": 3, "groups": GroupKFold(2)})
    assert design[["task", "learner", "resampling"]].values.tolist() == [
        ["iris", "dummy", "cv3"], ["iris", "dummy", "groups"], ["wine", "dummy", "cv3"], ["wine", "dummy", "groups"]]
    assert repr(design["task_data"][0]) == "<Task iris: 150 rows x 4 features>"
    assert bt.benchmark_grid({"iris": IRIS}, {"d": DummyClassifier()}, KFold(4))["resampling"].tolist() == ["KFold"]


# ------------------------------------------------------------------------------------ running
def test_batchmark_on_multicore_scores_aggregate_and_same_folds(tmp_path):
    reg = ereg(tmp_path, cf=bt.make_cluster_functions_multicore(2))
    ids = bt.batchmark(grid(), scoring=["accuracy", "balanced_accuracy"], store_predictions=True)
    assert ids["job_id"].tolist() == list(range(1, 13))
    assert bt.summarize_experiments()["count"].tolist() == [3, 3, 3, 3]
    res = run_all(reg)
    s = res.scores
    assert len(s) == 12 and res.scorers == ["accuracy", "balanced_accuracy"]
    assert list(s.columns[:4]) == ["task", "learner", "resampling", "fold"]
    assert {"fit_time", "score_time", "n_train", "n_test", "job_id", "params"} <= set(s.columns)
    assert s.loc[s["learner"] == "forest", "params"].iloc[0]["n_estimators"] == 5
    assert s["accuracy"].between(0, 1).all()
    agg = res.aggregate()
    expect = s.groupby(["task", "learner"], sort=False)["accuracy"].agg(["mean", "std"]).reset_index()
    assert np.allclose(agg["accuracy_mean"], expect["mean"]) and np.allclose(agg["accuracy_sd"], expect["std"])
    assert agg["n"].tolist() == [3, 3, 3, 3]
    # every learner saw the same folds, and the test folds of a task cover each row once
    pred = res.predictions
    for task, n in (("iris", 150), ("wine", 178)):
        rows = {lr: pred[(pred["task"] == task) & (pred["learner"] == lr)].sort_values(["fold", "row_id"])
                for lr in ("dummy", "forest")}
        assert rows["dummy"][["fold", "row_id"]].values.tolist() == rows["forest"][["fold", "row_id"]].values.tolist()
        assert sorted(rows["dummy"]["row_id"]) == list(range(n))
    dummy_iris = pred[(pred["task"] == "iris") & (pred["learner"] == "dummy")]
    assert (dummy_iris["truth"] == IRIS[1][dummy_iris["row_id"]]).all()


def test_same_seed_same_scores_on_every_local_backend_and_the_pool(tmp_path):
    """forest has random_state=None: its randomness comes from the job seed, so equal everywhere."""
    design = grid()
    tables = {}
    backends = {
        "interactive": (None, None),
        "multicore": (bt.make_cluster_functions_multicore(2), None),
        "multicore_chunks": (bt.make_cluster_functions_multicore(2),
                             lambda r: bt.submit_jobs(bt.find_jobs(reg=r).assign(chunk=[1, 2] * 6), reg=r)),
        "socket": (bt.make_cluster_functions_socket(2), None),
        "pool": (bt.make_cluster_functions_multicore(2), lambda r: bt.submit_workers(2, idle_timeout=0, reg=r)),
    }
    for name, (cf, submit) in backends.items():
        r = ereg(tmp_path, name, cf)
        bt.batchmark(design, scoring="accuracy", reg=r)
        tables[name] = score_table(run_all(r, submit and (lambda r=r, s=submit: s(r))))
    external = bt.test_job(4, external=True, reg=r)  # a fresh interpreter, same seed
    for name, tab in tables.items():
        pd.testing.assert_frame_equal(tab, tables["interactive"], obj=name)
    assert external["scores"]["accuracy"] == tables["interactive"]["accuracy"][3]


def test_same_design_again_adds_nothing_and_new_learners_get_the_same_folds(tmp_path):
    reg = ereg(tmp_path)
    design = grid(learners={"dummy": DummyClassifier()})
    assert len(bt.batchmark(design, scoring="accuracy")) == 6
    before = snapshot(reg.file_dir)
    assert len(bt.batchmark(design, scoring="accuracy")) == 0
    assert bt.get_status().submitted == 0 and len(bt.find_jobs()) == 6
    assert set(snapshot(reg.file_dir)) == set(before)
    more = grid(learners={"dummy": DummyClassifier(), "tree": DecisionTreeClassifier(random_state=0)})
    assert bt.batchmark(more, scoring="accuracy")["job_id"].tolist() == list(range(7, 13))
    with pytest.raises(ValueError, match="learner 'dummy' is already in this registry with other settings"):
        bt.batchmark(grid(learners={"dummy": DummyClassifier(strategy="uniform")}), scoring="accuracy")
    res = run_all(reg)
    assert len(res.scores) == 12
    pars = bt.unwrap(bt.get_job_pars())
    assert (pars.groupby(["problem", "algorithm"]).size() == 3).all()


def test_concatenated_and_filtered_grids(tmp_path):
    ereg(tmp_path)
    tasks = {"iris": IRIS, "wine": (WINE[0].tolist(), WINE[1].tolist())}  # lists: equal, not identical arrays
    a = bt.benchmark_grid(tasks, {"dummy": DummyClassifier()}, 3)
    b = bt.benchmark_grid(tasks, {"tree": DecisionTreeClassifier()}, {"cv5": 5})
    design = pd.concat([a, b], ignore_index=True)
    design = design[~((design["task"] == "wine") & (design["learner"] == "tree"))]
    assert len(bt.batchmark(design)) == 3 + 3 + 5
    summary = bt.summarize_experiments()
    assert dict(zip(zip(summary["problem"], summary["algorithm"]), summary["count"])) == {
        ("iris", "dummy"): 3, ("wine", "dummy"): 3, ("iris", "tree"): 5}
    clash = pd.concat([a, bt.benchmark_grid({"iris": WINE}, {"dummy": DummyClassifier()}, 3)])
    with pytest.raises(ValueError, match="task name 'iris' stands for two different objects"):
        bt.batchmark(clash)


def test_task_forms_dataframe_groups_loader_and_bunch(tmp_path):
    reg = ereg(tmp_path)
    df = pd.DataFrame(IRIS[0], columns=list("abcd")).assign(species=IRIS[1], site=np.arange(150) % 5)
    calls = tmp_path / "loads.txt"

    def load_wine_data():
        with open(calls, "a") as fh:
            fh.write("x\n")
        return WINE[0], WINE[1], np.arange(178) % 5

    tasks = {"frame": (df, "species", "site"), "arrays": (IRIS[0], IRIS[1], np.arange(150) % 5),
             "loaded": load_wine_data, "bunch": load_iris()}
    design = bt.benchmark_grid(tasks, {"tree": DecisionTreeClassifier(random_state=0)}, {"by_site": GroupKFold(5)})
    assert repr(design["task_data"][2]).startswith("<Task loaded: loaded on the node by load_wine_data")
    design = design[design["task"] != "bunch"]  # bunches have no groups: GroupKFold refuses them
    bt.batchmark(design, scoring="accuracy")
    assert calls.read_text().count("x") == 1  # split once on the master
    res = run_all(reg)
    s = res.scores
    assert calls.read_text().count("x") == 2  # and loaded once in this (Interactive) process
    frame, arrays = s[s["task"] == "frame"], s[s["task"] == "arrays"]
    assert frame["accuracy"].tolist() == arrays["accuracy"].tolist()  # the group column is not a feature
    assert (s.loc[s["task"] != "loaded", "n_test"] == 30).all() and len(s) == 15  # one site per test fold
    bunch = bt.benchmark_grid({"bunch": load_iris()}, {"tree": DecisionTreeClassifier(random_state=0)}, 3)
    assert bt.batchmark(bunch, scoring="accuracy")["job_id"].tolist() == [16, 17, 18]


def test_scoring_forms(tmp_path):
    reg = ereg(tmp_path)

    def errors(estimator, X, y):
        return float((estimator.predict(X) != y).sum())

    def two(estimator, X, y):
        return {"hits": float((estimator.predict(X) == y).sum()), "misses": errors(estimator, X, y)}

    design = grid(tasks={"iris": IRIS}, learners={"tree": DecisionTreeClassifier(random_state=0)})
    bt.batchmark(design)
    assert run_all(reg).scorers == ["score"]  # the estimator's own score: accuracy
    r2 = ereg(tmp_path, "r2")
    bt.batchmark(design, scoring={"acc": "accuracy", "errors": errors}, reg=r2)
    s = run_all(r2).scores
    assert np.allclose(s["errors"], (1 - s["acc"]) * s["n_test"])
    r3 = ereg(tmp_path, "r3")
    bt.batchmark(design, scoring=two, reg=r3)
    res = run_all(r3)
    assert res.scorers[-2:] == ["hits", "misses"] and (res.scores["hits"] + res.scores["misses"] == 50).all()


def test_models_predictions_and_plot(tmp_path):
    reg = ereg(tmp_path)
    bt.batchmark(grid(), scoring="accuracy", store_models=True)
    res = run_all(reg)
    models = res.models
    assert len(models) == 12 and hasattr(models["model"][0], "predict")
    with pytest.raises(ValueError, match="store_predictions=True"):
        _ = res.predictions
    pytest.importorskip("matplotlib")
    fig = res.plot()
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["task iris", "task wine"]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["dummy", "forest"]
    with pytest.raises(ValueError, match="not a scorer"):
        res.plot("f1")
    agg = res.aggregate(by="learner")
    assert agg["learner"].tolist() == ["dummy", "forest"] and agg["n"].tolist() == [6, 6]


def test_pool_runs_longest_first_from_estimate_runtimes(tmp_path):
    reg = ereg(tmp_path, cf=bt.make_cluster_functions_multicore(2))
    design = grid(learners={"dummy": DummyClassifier(), "forest": RandomForestClassifier(n_estimators=60)})
    bt.batchmark(design, scoring="accuracy")
    first = bt.find_experiments(prob_pars="fold == 1")
    bt.submit_jobs(first)
    assert bt.wait_for_jobs()
    est = bt.estimate_runtimes(bt.unwrap(bt.get_job_pars()).drop(columns=["repl"]))
    todo = est[est["type"] == "estimated"].sort_values("runtime", ascending=False)
    assert bt.get_job_pars(todo["job_id"].iloc[:4])["algorithm"].tolist() == ["forest"] * 4
    order = bt.submit_workers(2, ids=todo["job_id"], idle_timeout=0)
    assert order.sort_values("order")["job_id"].tolist() == todo["job_id"].tolist()
    res = run_all(reg, submit=lambda: None)
    assert len(res.scores) == 12 and res.scores["accuracy"].notna().all()


# ------------------------------------------------------------------------------------ user code
def test_user_module_learner_splitter_scorer_loader_run_everywhere(tmp_path, usermod):
    design = bt.benchmark_grid({"wine": usermod.load, "iris": IRIS},
                               {"majority": usermod.Majority(), "centroid": usermod.Centroid(0.0),
                                "scaled": make_pipeline(StandardScaler(), usermod.Centroid(0.1))},
                               {"halves": usermod.HalfSplit()})
    tables = {}
    for name, cf, submit in (("interactive", None, None), ("multicore", bt.make_cluster_functions_multicore(2), None),
                             ("pool", bt.make_cluster_functions_multicore(2),
                              lambda r: bt.submit_workers(2, idle_timeout=0, reg=r))):
        r = ereg(tmp_path, name, cf)
        bt.batchmark(design, scoring={"hits": usermod.hit_rate}, reg=r)
        if name == "interactive":
            out = bt.test_job(1, external=True, reg=r)  # ModuleNotFoundError if pickled by reference
            assert 0 < out["scores"]["hits"] < 1
        res = run_all(r, submit and (lambda r=r, s=submit: s(r)))
        tables[name] = res.scores[["task", "learner", "fold", "half", "hits"]]
    assert tables["interactive"]["half"].tolist()[:2] == ["first", "second"]
    for name, tab in tables.items():
        pd.testing.assert_frame_equal(tab, tables["interactive"], obj=name)


def test_user_classes_nested_in_installed_objects_are_pickled_by_value(tmp_path, usermod):
    """A user's class inside a Pipeline (whose own module is scikit-learn's) still travels by value."""
    import subprocess

    from batchtools.core.persistence.pickling import pickle_by_value

    pickled = pickle_by_value({"model": make_pipeline(StandardScaler(), usermod.Centroid(0.5))})
    assert pickled.files == {"bt_usermod": usermod.__file__}
    assert {"sklearn.pipeline", "sklearn.preprocessing._data"} <= pickled.modules  # what a warm process imports
    code = "import pickle, sys; print(pickle.loads(sys.stdin.buffer.read())['model'][-1].shrink)"
    out = subprocess.run([sys.executable, "-c", code], input=pickled.payload, capture_output=True, cwd="/")
    assert out.stdout.decode().strip() == "0.5", out.stderr.decode()[-500:]


def test_problem_and_algorithm_functions_from_a_user_module_run_externally(tmp_path, usermod):
    """The issue's case: add_problem(fun=mymod.f) failed with ModuleNotFoundError elsewhere."""
    reg = ereg(tmp_path, cf=bt.make_cluster_functions_multicore(2))
    bt.add_problem("p", fun=usermod.instance)
    bt.add_algorithm("a", fun=usermod.total)
    bt.add_experiments({"p": pd.DataFrame({"n": [4]})}, {"a": pd.DataFrame({"k": [2, 3]})})
    assert bt.test_job(1, external=True) == 12
    bt.submit_jobs()
    assert bt.wait_for_jobs() and bt.reduce_results_list() == [12, 18]
    assert reg.extra["code_files"]["bt_usermod"].endswith("bt_usermod.py")


# ------------------------------------------------------------------------------------ bad input
def _bad_designs():
    class NoFit:
        def predict(self, X):
            return X

    class NoFolds:
        def split(self, X, y=None, groups=None):
            return iter(())

    ok = grid(tasks={"iris": IRIS}, learners={"tree": DecisionTreeClassifier()})
    no_fit = ok.copy()
    no_fit["estimator"] = [NoFit()] * len(ok)
    not_data = ok.copy()
    not_data["task_data"] = ["iris.csv"] * len(ok)
    return {
        "learner without fit": (lambda: bt.batchmark(no_fit), TypeError, "learner 'tree' .* has no fit"),
        "task that is not data": (lambda: bt.batchmark(not_data), TypeError, "task 'iris' was not made by"),
        "unknown scorer": (lambda: bt.batchmark(ok, scoring=["accuracy", "acuracy"]), ValueError,
                           r"unknown scorer 'acuracy'; did you mean \['accuracy'"),
        "scorer of a metric's shape": (lambda: bt.batchmark(ok, scoring=lambda y, p: 0), TypeError, "make_scorer"),
        "splitter yielding no folds": (lambda: bt.batchmark(grid(tasks={"iris": IRIS}, resamplings={"none": NoFolds()})),
                                       ValueError, "'none' yields no folds for task 'iris'"),
        "group splitter without groups": (lambda: bt.batchmark(grid(tasks={"iris": IRIS}, resamplings=GroupKFold(3))),
                                          ValueError, r"cannot split task 'iris'.*give the task groups"),
        "loader returning mismatched X/y": (lambda: bt.batchmark(grid(tasks={"bad": lambda: (IRIS[0], IRIS[1][:-1])})),
                                           ValueError, "task 'bad': X has 150 rows but y has 149"),
        "loader that fails": (lambda: bt.batchmark(grid(tasks={"bad": lambda: 1 / 0})), ValueError,
                              "the loader of task 'bad' failed"),
        "not a design": (lambda: bt.batchmark(pd.DataFrame({"task": ["iris"]})), TypeError, "benchmark_grid"),
        "flag": (lambda: bt.batchmark(ok, store_models="yes"), TypeError, "store_models: must be True or False"),
    }


@pytest.mark.parametrize("case", list(_bad_designs()))
def test_bad_input_is_refused_before_anything_is_written(tmp_path, case):
    reg = ereg(tmp_path)
    bt.batchmark(grid(tasks={"wine": WINE}, learners={"dummy": DummyClassifier()}))  # some state to keep intact
    before = snapshot(reg.file_dir)
    call, error, message = _bad_designs()[case]
    with pytest.raises(error, match=message):
        call()
    assert snapshot(reg.file_dir) == before


@pytest.mark.parametrize("tasks, learners, resamplings, error, message", [
    ({"iris": "iris.csv"}, {"d": DummyClassifier()}, 3, TypeError, "task 'iris' is not data"),
    ({"iris": (IRIS[0], IRIS[1][:100])}, {"d": DummyClassifier()}, 3, ValueError,
     "task 'iris': X has 150 rows but y has 100; give one label per row"),
    ({"iris": (IRIS[0], IRIS[1], np.arange(10))}, {"d": DummyClassifier()}, 3, ValueError,
     "task 'iris': X has 150 rows but groups has 10; give one group per row"),
    ({"iris": (pd.DataFrame(IRIS[0]), "species")}, {"d": DummyClassifier()}, 3, ValueError,
     "task 'iris' has no target column 'species'"),
    ({"iris": IRIS}, {"d": "DummyClassifier"}, 3, TypeError, "learner 'd' .* has no fit"),
    ({"iris": IRIS}, {"d": DummyClassifier}, 3, TypeError, r"write DummyClassifier\(\)"),
    ({"iris": IRIS}, {"bad name": DummyClassifier()}, 3, ValueError, "name 'bad name'"),
    ({"iris": IRIS}, {"d": DummyClassifier()}, 1, ValueError, "needs at least 2"),
    ({"iris": IRIS}, {"d": DummyClassifier()}, "cv", TypeError, "is not a splitter"),
    ({}, {"d": DummyClassifier()}, 3, TypeError, "tasks: a non-empty dict"),
])
def test_benchmark_grid_refuses_bad_input_naming_it(tasks, learners, resamplings, error, message):
    with pytest.raises(error, match=message):
        bt.benchmark_grid(tasks, learners, resamplings)


def test_batchmark_needs_an_experiment_registry(tmp_path):
    r = bt.make_registry(file_dir=tmp_path / "plain", conf_file=None)
    before = snapshot(r.file_dir)
    with pytest.raises(TypeError, match="make_experiment_registry"):
        bt.batchmark(grid())
    assert snapshot(r.file_dir) == before


def test_reduce_results_batchmark_refuses_other_jobs(tmp_path):
    ereg(tmp_path)
    bt.add_problem("p", data=1)
    bt.add_algorithm("a")
    bt.add_experiments()
    bt.batchmark(grid(tasks={"iris": IRIS}, learners={"dummy": DummyClassifier()}), scoring="accuracy")
    empty = bt.reduce_results_batchmark()  # nothing ran yet
    assert len(empty) == 0 and empty.scorers == ["accuracy"] and "accuracy_mean" in empty.aggregate().columns
    bt.submit_jobs()
    assert len(bt.reduce_results_batchmark().scores) == 3  # by default: the benchmark's jobs
    with pytest.raises(ValueError, match=r"job\(s\) \[1\] were not added by batchmark"):
        bt.reduce_results_batchmark(ids=[1, 2])
    assert "3 jobs, 1 tasks x 1 learners" in repr(bt.reduce_results_batchmark())


# ------------------------------------------------------------------------------------ warm Multicore
def _probe(k):
    """Which modules a job finds already imported, its process, and its BLAS thread setting."""
    import importlib
    import os
    import sys

    had = {m: m in sys.modules for m in ("sklearn.tree", "xml.dom.minidom")}
    import sklearn.tree  # noqa: F401  (named in the function: preloaded before the first job)

    importlib.import_module("xml.dom.minidom")  # not named anywhere: imported by the first job
    return had, os.getpid(), os.environ.get("OPENBLAS_NUM_THREADS")


def test_multicore_preloads_learns_and_reuses_processes(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("BATCHTOOLS_WARM", raising=False)
    r = bt.make_registry(file_dir=tmp_path / "warm", seed=1, conf_file=None)
    r.cluster_functions = bt.make_cluster_functions_multicore(1)
    bt.batch_map(_probe, k=range(6))
    assert "sklearn.tree" in r.extra["preload"]
    bt.submit_jobs()
    assert bt.wait_for_jobs()
    res = bt.reduce_results_list()
    assert all(had["sklearn.tree"] for had, _, _ in res)
    assert not res[0][0]["xml.dom.minidom"] and res[-1][0]["xml.dom.minidom"]  # kept by the reused process
    assert len({pid for _, pid, _ in res}) == 1  # one process ran all collections, one after another
    assert bt.get_status().done == 6 and len(set(bt.get_job_table()["job_hash"])) == 6  # still one per job
    assert res[0][2] == str(max(1, (os.cpu_count() or 1) // 1))


def test_fork_server_imports_installed_modules_only_and_children_report_theirs(usermod, monkeypatch):
    from batchtools.node import forkserver
    from batchtools.node.forkserver import Preloader, _new_modules

    monkeypatch.setattr(forkserver, "WARM", True)  # whatever BATCHTOOLS_WARM says here

    before = set(sys.modules)
    import xml.dom.minidom  # noqa: F401

    reported = [line.split()[1] for line in _new_modules(before - {"xml.dom.minidom", "email.mime.text"})]
    assert "xml.dom.minidom" in reported and "bt_usermod" not in reported
    sys.modules.pop("email.mime.text", None)
    pre = Preloader()
    pre.want(["email.mime.text", "bt_usermod", "mpi4py", "no_such_module_xyz"])
    sys.modules.pop("bt_usermod", None)
    pre.run()
    assert "email.mime.text" in sys.modules  # installed (the standard library): imported
    assert "bt_usermod" not in sys.modules  # the user's own code: never imported into the server
    assert not pre.allowed("mpi4py") and pre.wanted == set()


def _thread_counts(k):
    import sklearn.tree  # noqa: F401  (loads scikit-learn's OpenMP runtime)
    from threadpoolctl import threadpool_info

    return {i["user_api"]: i["num_threads"] for i in threadpool_info()}


def test_multicore_jobs_get_a_share_of_the_cpus_unless_resources_say_otherwise(tmp_path, monkeypatch):
    pytest.importorskip("threadpoolctl")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    r = bt.make_registry(file_dir=tmp_path / "threads", seed=1, conf_file=None)
    r.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(_thread_counts, k=[1, 2])
    bt.submit_jobs([1])
    bt.submit_jobs([2], resources={"blas_threads": 3, "omp_threads": 3})
    assert bt.wait_for_jobs()
    default, asked = bt.reduce_results_list()
    share = max(1, (os.cpu_count() or 1) // 2)
    assert set(default.values()) == {share}  # BLAS and OpenMP, though loaded before the job ran
    assert set(asked.values()) == {3}
