import pandas as pd
import pytest

import batchtools as bt
from conftest import snapshot


@pytest.fixture
def ereg(tmp_path):
    r = bt.make_experiment_registry(file_dir=tmp_path / "ereg", seed=1, conf_file=None)
    r.cluster_functions = bt.make_cluster_functions_interactive()
    return r


def subsample(data, job, ratio):
    idx = job.rng.permutation(len(data))
    k = int(len(data) * ratio)
    return {"train": sorted(idx[:k].tolist()), "test": sorted(idx[k:].tolist())}


def setup(ereg, seed=42, cache=False):
    bt.add_problem("p", data=list(range(20)), fun=subsample, seed=seed, cache=cache)
    bt.add_algorithm("mean", fun=lambda data, job, instance, shift=0: (instance["train"], shift, job.seed))
    bt.add_algorithm("count", fun=lambda instance, scale: len(instance["test"]) * scale)


def test_add_and_run_experiments(ereg):
    setup(ereg)
    ids = bt.add_experiments({"p": pd.DataFrame({"ratio": [0.5, 0.75]})},
                             {"mean": pd.DataFrame({"shift": [0, 1]}), "count": [{"scale": 2}]}, repls=3)
    assert ids["job_id"].tolist() == list(range(1, 19))
    assert bt.summarize_experiments()["count"].tolist() == [12, 6]
    by_ratio = bt.summarize_experiments(by=["algorithm", "ratio"])
    assert by_ratio["count"].tolist() == [6, 6, 3, 3]
    pars = bt.get_job_pars()
    assert pars.columns.tolist() == ["job_id", "problem", "prob_pars", "algorithm", "algo_pars", "repl"]
    assert pars.iloc[0]["prob_pars"] == {"ratio": 0.5} and pars.iloc[0]["algo_pars"] == {"shift": 0}
    wide = bt.unwrap(pars)
    assert {"ratio", "shift", "scale"} <= set(wide.columns)
    bt.submit_jobs()
    assert bt.wait_for_jobs()
    res = bt.reduce_results_list()
    assert res[12] == 10 * 2  # count with ratio 0.5: 10 test points


def test_problem_seed_gives_same_instance_per_replication(ereg):
    setup(ereg)
    bt.add_experiments({"p": pd.DataFrame({"ratio": [0.5]})}, {"mean": pd.DataFrame({"shift": [0, 1]})}, repls=2)
    bt.submit_jobs()
    tab = bt.ijoin(bt.get_job_pars(), bt.reduce_results_dataframe())
    train = {(r.repl, r.algo_pars["shift"]): r.result[0] for r in tab.itertuples()}
    assert train[(1, 0)] == train[(1, 1)]  # same replication: same instance for every algorithm
    assert train[(1, 0)] != train[(2, 0)]  # other replication: other instance
    assert [r.result[2] for r in tab.itertuples()] == [2, 3, 4, 5]  # algorithm seed = reg.seed + job id
    # the same instance whatever the job order or chunking
    bt.submit_jobs(pd.DataFrame({"job_id": [4, 3, 2, 1], "chunk": [1, 1, 1, 1]}))
    again = bt.reduce_results_list()
    assert [r[0] for r in again] == [train[(1, 0)], train[(2, 0)], train[(1, 1)], train[(2, 1)]]


def test_instance_cache(ereg):
    setup(ereg, cache=True)
    bt.add_experiments({"p": pd.DataFrame({"ratio": [0.5]})}, {"mean": pd.DataFrame({"shift": [0, 1]})})
    bt.submit_jobs()
    cache_dir = ereg.layout.dir("external") / "cache" / "p"
    assert len(list(cache_dir.iterdir())) == 1
    r1, r2 = bt.reduce_results_list()
    assert r1[0] == r2[0]
    with pytest.raises(ValueError, match="seed"):
        bt.add_problem("q", fun=subsample, cache=True)


def test_no_duplicates_and_more_repls(ereg):
    setup(ereg)
    pdes, ades = {"p": pd.DataFrame({"ratio": [0.5]})}, {"mean": pd.DataFrame({"shift": [0, 1]})}
    assert len(bt.add_experiments(pdes, ades, repls=2)) == 4
    assert len(bt.add_experiments(pdes, ades, repls=2)) == 0
    new = bt.add_experiments(pdes, ades, repls=3)
    assert new["job_id"].tolist() == [5, 6]
    assert bt.get_job_status(new)["repl"].tolist() == [3, 3]
    assert bt.find_experiments(repls=3)["job_id"].tolist() == [5, 6]


def test_combine_bind_and_parameterless(ereg):
    bt.add_problem("p", data=[1, 2, 3])
    bt.add_algorithm("id")
    bt.add_algorithm("two", fun=lambda instance, a, b: (a, b))
    assert len(bt.add_experiments({"p": pd.DataFrame()}, {"id": pd.DataFrame()})) == 1
    ids = bt.add_experiments({"p": None}, {"two": pd.DataFrame({"a": [1, 2], "b": [3, 4]})}, combine="bind")
    assert len(ids) == 2
    bt.submit_jobs()
    assert bt.reduce_results_list() == [[1, 2, 3], (1, 3), (2, 4)]


def test_find_experiments(ereg):
    setup(ereg)
    bt.add_problem("other", fun=lambda data, job, ratio: ratio)
    bt.add_experiments({"p": pd.DataFrame({"ratio": [0.5, 0.75]}), "other": pd.DataFrame({"ratio": [0.9]})},
                       {"mean": pd.DataFrame({"shift": [0, 1]}), "count": pd.DataFrame({"scale": [1]})})
    fe = bt.find_experiments
    assert fe(prob_name="other")["job_id"].tolist() == [7, 8, 9]
    assert fe(prob_pattern="^o")["job_id"].tolist() == [7, 8, 9]
    # numbering as in batchtools: problem by problem, then algorithm by algorithm
    assert fe(algo_name="count")["job_id"].tolist() == [5, 6, 9]
    assert fe(algo_pattern="ea")["job_id"].tolist() == [1, 2, 3, 4, 7, 8]
    assert fe(prob_pars="ratio > 0.6", algo_pars="shift == 1")["job_id"].tolist() == [4, 8]
    assert fe(algo_pars=lambda p: p.get("scale") == 1)["job_id"].tolist() == [5, 6, 9]
    assert fe(ids=[1, 2, 5], algo_name="mean")["job_id"].tolist() == [1, 2]
    assert bt.find_jobs("ratio > 0.6 and algorithm == 'count'")["job_id"].tolist() == [6, 9]
    with pytest.raises(ValueError, match="prob_pars"):
        fe(prob_pars="nope > 1")
    with pytest.raises(ValueError, match="regular expression"):
        fe(prob_pattern="(")


def test_test_job_messages(ereg, capsys):
    setup(ereg)
    bt.add_experiments({"p": pd.DataFrame({"ratio": [0.5]})}, {"count": pd.DataFrame({"scale": [3]})})
    assert bt.test_job(1) == 30
    out = capsys.readouterr().out
    assert "Generating problem instance for problem 'p' ..." in out
    assert "Applying algorithm 'count' on problem 'p' for job 1 (seed = 2) ..." in out
    job = bt.make_job(1)
    assert (job.problem, job.algorithm, job.prob_pars, job.algo_pars, job.repl) == ("p", "count", {"ratio": 0.5},
                                                                                    {"scale": 3}, 1)
    assert len(job.instance["test"]) == 10


def test_remove(ereg):
    setup(ereg)
    bt.add_experiments({"p": pd.DataFrame({"ratio": [0.5]})},
                       {"mean": pd.DataFrame({"shift": [0]}), "count": pd.DataFrame({"scale": [1]})}, repls=2)
    bt.submit_jobs()
    assert bt.remove_experiments([1])["job_id"].tolist() == [1]
    assert not ereg.layout.result(1).exists()
    assert bt.find_jobs()["job_id"].tolist() == [2, 3, 4]
    assert bt.remove_algorithms("count")["job_id"].tolist() == [3, 4]
    assert ereg.algorithms == ["mean"]
    bt.remove_problems("p")
    assert ereg.problems == [] and len(bt.find_jobs()) == 0
    with pytest.raises(ValueError, match="unknown problem"):
        bt.remove_problems("p")


def test_overwrite_problem_says_so(ereg, caplog):
    bt.add_problem("p", data=1)
    with caplog.at_level("WARNING", logger="batchtools"):
        bt.add_problem("p", data=2)
    assert "Overwriting problem 'p'" in caplog.text
    assert ereg.problems == ["p"]


def test_bad_input_leaves_registry_unchanged(ereg, tmp_path):
    setup(ereg)
    bt.add_experiments({"p": pd.DataFrame({"ratio": [0.5]})}, {"count": pd.DataFrame({"scale": [1]})})
    before = snapshot(ereg.file_dir)
    cases = [
        (ValueError, "unknown problem", lambda: bt.add_experiments({"nope": pd.DataFrame()}, {})),
        (ValueError, "unknown algorithm", lambda: bt.add_experiments({}, {"nope": pd.DataFrame()})),
        (ValueError, "does not accept", lambda: bt.add_experiments(
            {"p": pd.DataFrame({"ratio": [0.5], "bogus": [1]})}, {"count": pd.DataFrame({"scale": [1]})})),
        (ValueError, "required parameter", lambda: bt.add_experiments({"p": pd.DataFrame()}, {"count": None})),
        (TypeError, "must be a DataFrame", lambda: bt.add_experiments({"p": {"ratio": 0.5}}, {})),
        (ValueError, "repls", lambda: bt.add_experiments(repls=0)),
        (ValueError, "combine", lambda: bt.add_experiments(combine="zip")),
        (ValueError, "name", lambda: bt.add_problem("bad name")),
        (TypeError, "fun", lambda: bt.add_algorithm("a", fun=3)),
        (ValueError, "unknown algorithm", lambda: bt.remove_algorithms("zzz")),
        (ValueError, "do not exist", lambda: bt.remove_experiments([99])),
    ]
    for exc, msg, call in cases:
        with pytest.raises(exc, match=msg):
            call()
        assert snapshot(ereg.file_dir) == before, msg
    plain = bt.make_registry(file_dir=tmp_path / "plain", conf_file=None)
    with pytest.raises(TypeError, match="experiment registry"):
        bt.add_problem("p", reg=plain)
    with pytest.raises(TypeError, match="batch_map needs a plain registry"):
        bt.batch_map(abs, [1], reg=ereg)


def test_experiment_registry_reload(ereg):
    setup(ereg)
    bt.add_experiments({"p": pd.DataFrame({"ratio": [0.5]})}, {"count": pd.DataFrame({"scale": [2]})})
    bt.submit_jobs()
    again = bt.load_registry(ereg.file_dir, conf_file=None)
    assert again.kind == "experiment" and again.problems == ["p"]
    assert bt.reduce_results_list(reg=again) == [20]
    assert bt.find_experiments(prob_pars="ratio == 0.5", reg=again)["job_id"].tolist() == [1]
