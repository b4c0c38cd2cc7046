"""R idioms that a script ported from R batchtools 0.9.16 uses, run in Python (issue 14).

Each test states the R code it ports and checks the behaviour R shows for it (the expected
values were taken from running the R snippet with R batchtools 0.9.16), or the difference that
is kept on purpose (listed in docs/migrating-from-r.md).
"""

import gzip
import logging
import random

import numpy as np
import pandas as pd
import pytest

import batchtools as bt
from conftest import snapshot


# --------------------------------------------------------------- gap 1: extra columns of an ids frame
def test_ids_frame_from_job_pars_with_chunks(reg):
    """R: ids = unwrap(getJobPars()); ids$chunk = c(1, 1, 2, 2, 3); submitJobs(ids)"""
    bt.batch_map(lambda x, y: x * y, x=[1, 2, 3, 4, 5], y=[10, 20, 30, 40, 50])
    ids = bt.unwrap(bt.get_job_pars())
    ids["chunk"] = [1, 1, 2, 2, 3]
    out = bt.submit_jobs(ids)
    assert out["chunk"].tolist() == [1, 1, 2, 2, 3]
    assert bt.reduce_results_list() == [10, 40, 90, 160, 250]
    # the job parameters x and y are not resources
    assert bt.get_job_resources()["resources"].tolist() == [{}] * 5
    assert bt.get_job_status()["job_hash"].nunique() == 3


def test_submit_the_job_table(reg):
    """R: submitJobs(getJobTable()) -- every column but chunk and the per-job resources is ignored."""
    bt.batch_map(lambda x: x + 1, x=[1, 2, 3])
    bt.add_job_tags([1], "first")
    out = bt.submit_jobs(bt.get_job_table())
    assert out["job_id"].tolist() == [1, 2, 3]
    assert bt.reduce_results_list() == [2, 3, 4]


def test_per_job_resources_of_an_ids_frame(reg):
    """R: ids = findJobs(); ids$walltime = c(60, 120, NA); ids$foo = 1; submitJobs(ids)"""
    bt.batch_map(lambda x: x, x=[1, 2, 3])
    ids = bt.find_jobs()
    ids["walltime"] = [60, 120, np.nan]  # a missing value: not set for that job
    ids["memory"] = [512.0, 512.0, 1024.0]  # whole floats (as a column with NaN holds them) are ints
    ids["foo"] = 1  # not a per-job resource: ignored
    bt.submit_jobs(ids, resources={"ncpus": 1})
    res = bt.get_job_resources()["resources"].tolist()
    assert res == [{"ncpus": 1, "walltime": 60, "memory": 512}, {"ncpus": 1, "walltime": 120, "memory": 512},
                   {"ncpus": 1, "memory": 1024}]


def test_ids_frame_bad_input_changes_nothing(reg):
    bt.batch_map(lambda x: x, x=[1, 2, 3])
    before = snapshot(reg.file_dir)
    ids = bt.find_jobs()
    ids["chunk"] = [1, np.nan, 2]
    with pytest.raises(ValueError, match="'chunk' column has missing values"):
        bt.submit_jobs(ids)
    ids["chunk"] = ["a", "b", "c"]
    with pytest.raises(TypeError, match="chunk"):
        bt.submit_jobs(ids)
    dup = pd.DataFrame({"job_id": [1, 1], "chunk": [1, 2]})
    with pytest.raises(ValueError, match="duplicated job id"):
        bt.submit_jobs(dup)
    assert snapshot(reg.file_dir) == before


# --------------------------------------------------------------------------------- gap 2: reduce
@pytest.fixture
def done_reg(reg):
    bt.batch_map(lambda x: x * x, x=[1, 2, 3, 4, 5])
    bt.submit_jobs()
    return reg


def test_reduce_results_list_keeps_the_order_of_ids(done_reg):
    """R: unlist(reduceResultsList(ids = c(3, 1, 2))) gives 9 1 4"""
    assert bt.reduce_results_list(ids=[3, 1, 2]) == [9, 1, 4]
    assert bt.reduce_results_list(ids=pd.DataFrame({"job_id": [5, 2]})) == [25, 4]


def test_reduce_functions_take_the_job_and_extra_arguments(done_reg):
    """R: reduceResults(function(aggr, res, job) c(aggr, job$id), ids = c(3, 1, 2), init = c()) gives 3 1 2;
    reduceResults(function(aggr, res, k) aggr + k * res, ids = c(3, 1, 2), init = 0, k = 10) gives 140;
    reduceResultsList(ids = c(3, 1), fun = function(res, job, k) res + job$id * k, k = 100) gives 309 101"""
    assert bt.reduce_results(lambda aggr, res, job: aggr + [job.id], ids=[3, 1, 2], init=[]) == [3, 1, 2]
    assert bt.reduce_results(lambda aggr, res, k: aggr + k * res, ids=[3, 1, 2], init=0, k=10) == 140
    assert bt.reduce_results_list(ids=[3, 1], fun=lambda res, job, k: res + job.id * k, k=100) == [309, 101]
    # without init the first result starts the fold, and the job of every later one is passed
    assert bt.reduce_results(lambda aggr, res, job: aggr + res * job.id, ids=[2, 3]) == 4 + 27
    # the job is the one make_job gives (seed, parameters, the resources it ran with)
    jobs = bt.reduce_results_list(ids=[2], fun=lambda res, job: job)
    assert jobs[0].seed == bt.make_job(2).seed and jobs[0].pars == {"x": 2} and jobs[0].resources == {}
    df = bt.reduce_results_dataframe(ids=[3, 1], fun=lambda res, job, k: {"v": res * k, "id": job.id}, k=2)
    assert df["job_id"].tolist() == [1, 3] and df["v"].tolist() == [2, 18]  # sorted, as R's DataTable


def test_reduce_without_jobs(done_reg):
    """R: reduceResults(function(a, b) a + b, ids = integer(0)) is NULL"""
    assert bt.reduce_results(lambda a, b: a + b, ids=[]) is None
    assert bt.reduce_results(lambda a, b: a + b, ids=[], init=0) == 0
    assert bt.reduce_results_list(ids=[]) == []


def test_reduce_of_experiments_gets_experiment_jobs(tmp_path):
    reg = bt.make_experiment_registry(file_dir=tmp_path / "e", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.add_problem("p", data=[1, 2, 3])
    bt.add_algorithm("a", fun=lambda instance, k: sum(instance) * k)
    bt.add_experiments(algo_designs={"a": pd.DataFrame({"k": [1, 2]})})
    bt.submit_jobs()
    out = bt.reduce_results_list(fun=lambda res, job: (job.problem, job.algo_pars["k"], res))
    assert out == [("p", 1, 6), ("p", 2, 12)]


def test_reduce_bad_input(done_reg):
    bt.reset_jobs([5])
    with pytest.raises(ValueError, match="have no result"):
        bt.reduce_results(lambda a, b: a + b, ids=[4, 5])
    with pytest.raises(TypeError, match="fun: must be callable"):
        bt.reduce_results_list(fun="sum")
    with pytest.raises(ValueError, match="duplicated"):
        bt.reduce_results_list(ids=[1, 1])
    with pytest.raises(TypeError, match="missing_value"):  # a misspelt argument with no fun to take it
        bt.reduce_results_list(missing_value=0)


# ---------------------------------------------------------------------------- gap 3: experiments
def _exp_reg(tmp_path):
    reg = bt.make_experiment_registry(file_dir=tmp_path / "e", seed=1, conf_file=None)
    bt.add_problem("p1", data=1)
    bt.add_problem("p2", data=2)
    bt.add_algorithm("a", fun=lambda job, data, instance, k: k)
    return reg


def test_repls_per_problem_and_removed_replications_come_back(tmp_path):
    """R (output of R batchtools 0.9.16 for the same calls):
    addExperiments(algo.designs = list(a = data.frame(k = 1:2)), repls = c(2, 1))  -> jobs 1..6
    removeExperiments(findExperiments(repls = 1, prob.name = "p1"))                 -> removes 1, 3
    addExperiments(..., repls = c(2, 1))                                            -> re-adds 7, 8 (repl 1)
    addExperiments(..., repls = 3)                                                  -> adds 9..14"""
    _exp_reg(tmp_path)
    design = {"a": pd.DataFrame({"k": [1, 2]})}
    assert bt.add_experiments(algo_designs=design, repls=[2, 1])["job_id"].tolist() == [1, 2, 3, 4, 5, 6]
    tab = bt.get_job_table()
    assert tab["problem"].tolist() == ["p1"] * 4 + ["p2"] * 2 and tab["repl"].tolist() == [1, 2, 1, 2, 1, 1]
    assert bt.remove_experiments(bt.find_experiments(repls=1, prob_name="p1"))["job_id"].tolist() == [1, 3]
    assert bt.add_experiments(algo_designs=design, repls=[2, 1])["job_id"].tolist() == [7, 8]
    assert bt.add_experiments(algo_designs=design, repls=3)["job_id"].tolist() == list(range(9, 15))
    tab = bt.unwrap(bt.get_job_table())
    assert tab[["job_id", "problem", "repl", "k"]].values.tolist() == [
        [2, "p1", 2, 1], [4, "p1", 2, 2], [5, "p2", 1, 1], [6, "p2", 1, 2], [7, "p1", 1, 1], [8, "p1", 1, 2],
        [9, "p1", 3, 1], [10, "p1", 3, 2], [11, "p2", 2, 1], [12, "p2", 3, 1], [13, "p2", 2, 2], [14, "p2", 3, 2]]
    assert bt.add_experiments(algo_designs=design, repls=3).empty  # all there


def test_repls_bad_input_changes_nothing(tmp_path):
    reg = _exp_reg(tmp_path)
    before = snapshot(reg.file_dir)
    for bad in ([2, 1, 1], [2, 0], 0, 1.5, [True, 1]):
        with pytest.raises(ValueError, match="repls"):
            bt.add_experiments(algo_designs={"a": pd.DataFrame({"k": [1]})}, repls=bad)
    assert snapshot(reg.file_dir) == before


# ------------------------------------------------------------------------ gap 4: unwrap, flatten
def test_unwrap_expands_vectors_and_one_row_frames():
    """R: unwrap(data.table(job.id = 1:4, result = list(c(3, 30), list(a = 1, b = "x"),
    data.frame(a = 2, b = "y"), NULL)), cols = "result") gives columns result.1 result.2 a b"""
    x = pd.DataFrame({"job_id": [1, 2, 3, 4],
                      "result": [[3, 30], {"a": 1, "b": "x"}, pd.DataFrame({"a": [2], "b": ["y"]}), None]})
    out = bt.unwrap(x, cols="result")
    assert out.columns.tolist() == ["job_id", "result.1", "result.2", "a", "b"]
    assert out["result.2"].tolist()[0] == 30 and out["a"].tolist()[1:3] == [1, 2]
    assert out["b"].tolist()[1:3] == ["x", "y"] and out.iloc[3, 1:].isna().all()
    assert bt.unwrap(x).columns.tolist() == out.columns.tolist()  # found without naming it
    # R: scalars become result.1; vectors of different lengths are filled up
    assert bt.unwrap(pd.DataFrame({"job_id": [1, 2], "result": [5, 6]}), cols="result")["result.1"].tolist() == [5, 6]
    ragged = bt.unwrap(pd.DataFrame({"job_id": [1, 2], "result": [np.array([1, 2]), (1, 2, 3)]}))
    assert ragged.columns.tolist() == ["job_id", "result.1", "result.2", "result.3"]
    # a Series is R's named vector; a value that is itself a vector stays in its cell
    named = bt.unwrap(pd.DataFrame({"job_id": [1, 2], "r": [pd.Series({"a": 1, "b": 2}), {"a": [1, 2, 3], "b": 2}]}))
    assert named.columns.tolist() == ["job_id", "a", "b"] and named["a"].tolist()[1] == [1, 2, 3]
    # with sep every new column carries the column's name
    assert bt.unwrap(x, cols="result", sep="_").columns.tolist() == [
        "job_id", "result_1", "result_2", "result_a", "result_b"]


def test_unwrap_refuses_frames_of_several_rows_and_flatten_is_unwrap():
    """R: 'Some rows are unsuitable for unnesting'; flatten is R's alias of unwrap."""
    x = pd.DataFrame({"job_id": [1], "result": [pd.DataFrame({"a": [1, 2]})]})
    with pytest.raises(ValueError, match="several rows"):
        bt.unwrap(x)
    assert bt.flatten is bt.unwrap
    # plain value and string columns are left alone
    y = pd.DataFrame({"job_id": [1], "s": ["abc"], "job_pars": [{"n": 1}]})
    assert bt.flatten(y).columns.tolist() == ["job_id", "s", "n"]


# ------------------------------------------------------------------------------- gap 5: waiting
def test_wait_for_unsubmitted_jobs_warns_and_waits_for_the_others(reg, caplog):
    """R: submitJobs(1); waitForJobs(c(1, 2, 3)) warns 'Cannot wait for unsubmitted jobs' and is TRUE"""
    bt.batch_map(lambda x: x, x=[1, 2, 3])
    bt.submit_jobs(1)
    with caplog.at_level(logging.WARNING, logger="batchtools"):
        assert bt.wait_for_jobs([1, 2, 3]) is True
    assert "cannot wait for 2 unsubmitted job(s)" in caplog.text
    assert bt.wait_for_jobs([2, 3]) is True  # nothing left to wait for


# ------------------------------------------------------------------------ gap 6: configuration
def test_conf_file_keys(tmp_path, monkeypatch):
    """R's batchtools.conf.R keys sleep, expire.after, temp.dir, compress as batchtools.conf.py"""
    calls = []
    monkeypatch.setattr(bt, "_calls", calls, raising=False)
    (tmp_path / "batchtools.conf.py").write_text(
        "cluster_functions = bt.make_cluster_functions_interactive()\n"
        "sleep = lambda i: bt._calls.append(i) or 0.01\n"
        "expire_after = 2\n"
        f"temp_dir = {str(tmp_path / 'scratch')!r}\n"
        "compress = 'gzip'\n"
    )
    reg = bt.make_registry(file_dir=None, seed=1)
    assert reg.file_dir.parent == tmp_path / "scratch"  # temp_dir, created when missing
    assert reg.expire_after == 2 and reg.compress == "gzip" and callable(reg.sleep)
    bt.batch_map(lambda x: {"x": x}, x=[1, 2])
    bt.submit_jobs()
    data = reg.store.raw(1)
    assert data[:2] == b"\x1f\x8b" and bt.load_result(1) == {"x": 1}  # results are gzip files
    # expire_after: a job the backend lost expires after two polls, with one sleep between them
    bt.reset_jobs([2])
    reg.cluster_functions = bt.make_cluster_functions("Lost", lambda r, jc: bt.make_submit_job_result(0, "lost"),
                                                      list_jobs_queued=lambda r: [])
    bt.submit_jobs([2])
    assert bt.wait_for_jobs([2]) is False
    assert calls == [0] and bt.find_expired()["job_id"].tolist() == [2]


def test_conf_file_compress_variants_are_readable(tmp_path):
    for value, magic in (("bzip2", b"BZh"), ("xz", b"\xfd7zXZ"), (True, b"\x1f\x8b"), (None, b"\x80")):
        conf = tmp_path / f"conf-{value}.py"
        conf.write_text(f"cluster_functions = bt.make_cluster_functions_interactive()\ncompress = {value!r}\n")
        reg = bt.make_registry(file_dir=tmp_path / f"r-{value}", conf_file=str(conf))
        bt.batch_map(lambda x: list(range(x)), x=[5])
        bt.submit_jobs()
        assert reg.store.raw(1).startswith(magic)
        assert bt.load_result(1) == [0, 1, 2, 3, 4]
    # a registry whose results were written with another setting still reads them all
    reg = bt.load_registry(tmp_path / "r-xz", conf_file=None)
    assert reg.compress is None and bt.load_result(1, reg=reg) == [0, 1, 2, 3, 4]
    assert gzip.decompress(gzip.compress(b"x")) == b"x"


def test_conf_file_unknown_key_warns_naming_file_and_key(tmp_path, caplog):
    conf = tmp_path / "batchtools.conf.py"
    conf.write_text(
        "import os\n"
        "from math import floor\n"
        "_helper = 3\n"
        "default_resource = {'walltime': 60}\n"  # a typo of default_resources
        "cluster_functions = bt.make_cluster_functions_interactive()\n"
    )
    with caplog.at_level(logging.WARNING, logger="batchtools"):
        reg = bt.make_registry(file_dir=tmp_path / "r")
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and str(conf) in msgs[0] and "'default_resource'" in msgs[0]
    assert reg.default_resources == {}


def test_conf_file_bad_values_name_file_and_key(tmp_path):
    conf = tmp_path / "batchtools.conf.py"
    for line, err in (("expire_after = 0", ValueError), ("sleep = 'slow'", ValueError),
                      ("compress = 'zip'", ValueError), ("cluster_functions = 'slurm'", TypeError),
                      ("max_concurrent_jobs = -1", ValueError), ("temp_dir = 3", TypeError)):
        conf.write_text(line + "\n")
        key = line.split(" =")[0]
        with pytest.raises(err, match=f"{conf}: {key}: "):
            bt.make_registry(file_dir=tmp_path / "r")
        assert not (tmp_path / "r").exists()
    conf.write_text("packages = 'numpy'\n")  # one module given as a string
    assert bt.make_registry(file_dir=tmp_path / "r").packages == ("numpy",)


def test_conf_key_table_matches_registry_defaults(tmp_path):
    from batchtools.core.config import KEYS

    reg = bt.make_registry(file_dir=tmp_path / "r", conf_file=None)
    for name, key in KEYS.items():
        if name not in ("cluster_functions", "work_dir"):  # documented as text: set by make_registry
            assert getattr(reg, name) == key.default, name


# ------------------------------------------------------------------------ gap 7: smaller ones
def test_estimate_runtimes_returns_r_runtime_estimate(reg):
    """R: est = estimateRuntimes(tab); print(est, n = 2); est$runtimes; est$model"""
    import time

    bt.batch_map(lambda n: time.sleep(n / 100), n=[1, 2, 3, 4, 20, 21, 22, 23])
    bt.submit_jobs([1, 2, 5, 6])
    est = bt.estimate_runtimes(bt.unwrap(bt.get_job_pars()))
    assert isinstance(est, pd.DataFrame) and isinstance(est, bt.RuntimeEstimate)
    assert est["type"].tolist() == ["observed", "observed", "estimated", "estimated"] * 2  # usable as before
    assert type(est.runtimes) is pd.DataFrame and est.runtimes.columns.tolist() == ["job_id", "type", "runtime"]
    assert est.model.predict(pd.DataFrame({"n": [22.0]})).shape == (1,)
    text = est.summary(n=2).splitlines()
    assert text[0] == "Runtime Estimate for 8 jobs with 2 CPUs"
    assert [t.split(":")[0].strip() for t in text[1:]] == ["Done", "Remaining", "Parallel", "Total"]
    assert repr(est).startswith("Runtime Estimate for 8 jobs with 1 CPUs") and "Parallel" not in repr(est)
    assert type(est[est["type"] == "estimated"]) is pd.DataFrame
    with pytest.raises(ValueError, match="duplicated"):
        bt.estimate_runtimes(pd.concat([bt.unwrap(bt.get_job_pars())] * 2))


def test_runtime_estimate_print_format_matches_r():
    """R's print of a RuntimeEstimate with these run times (taken from R 0.9.16)."""
    est = bt.RuntimeEstimate({"job_id": range(1, 9),
                              "type": ["observed", "observed", "estimated", "estimated",
                                       "observed", "observed", "estimated", "estimated"],
                              "runtime": [0.01, 0.02, 0.035, 0.04, 3600.2, 0.21, 90000.22, 0.23]})
    assert est.summary(2) == ("Runtime Estimate for 8 jobs with 2 CPUs\n"
                              "  Done     : 0d 01h 00m 0.4s\n"
                              "  Remaining: 1d 01h 00m 0.5s\n"
                              "  Parallel : 1d 01h 00m 0.2s\n"
                              "  Total    : 1d 02h 00m 1.0s")


def test_btmapply_names_and_simplify():
    """R: btmapply(function(a, b) a + b, a = c(x = 1, y = 2), b = 3:4) is list(x = 4, y = 6);
    btmapply(function(a, b) paste(a, b), c("u", "v"), 3:4) is list(u = "u 3", v = "v 4");
    btmapply(function(a, b) a + b, 1:2, 3:4, simplify = TRUE) is c(4, 6)"""
    named = bt.btmapply(lambda a, b: a + b, a=pd.Series([1, 2], index=["x", "y"]), b=[3, 4])
    assert isinstance(named, pd.Series) and named.to_dict() == {"x": 4, "y": 6}
    assert bt.btmapply(lambda a, b: f"{a} {b}", ["u", "v"], [3, 4]).to_dict() == {"u": "u 3", "v": "v 4"}
    simple = bt.btmapply(lambda a, b: a + b, [1, 2], [3, 4], simplify=True)
    assert isinstance(simple, np.ndarray) and simple.tolist() == [4, 6]
    assert bt.btmapply(lambda a, b: a + b, ["u", "v"], ["1", "2"], use_names=False) == ["u1", "v2"]
    matrix = bt.btmapply(lambda a, b: [a, b], pd.Series([1, 2], index=["x", "y"]), [3, 4], simplify=True)
    assert matrix.loc["y"].tolist() == [2, 4]  # one row per job (R: one column per job)
    assert bt.btmapply(lambda a: {"a": a}, [1, 2], simplify=True) == [{"a": 1}, {"a": 2}]  # as is
    with pytest.raises(TypeError, match="simplify"):
        bt.btmapply(lambda a: a, [1], simplify="yes")


def test_set_default_registry_none(reg):
    """R: setDefaultRegistry(NULL) unsets the default registry."""
    assert bt.get_default_registry() is reg
    assert bt.set_default_registry(None) is None
    with pytest.raises(ValueError, match="no default registry"):
        bt.get_default_registry()
    bt.set_default_registry(reg)
    assert bt.get_default_registry() is reg


def test_joins_by_mapping():
    """R: ijoin(x, y, by = c("job.id" = "id")) and the other joins with differently named keys."""
    x = pd.DataFrame({"job_id": [1, 2, 3, 4], "a": list("abcd")})
    y = pd.DataFrame({"id": [2, 3, 5], "b": list("BCE")})
    by = {"job_id": "id"}
    assert bt.ijoin(x, y, by=by).values.tolist() == [[2, "b", "B"], [3, "c", "C"]]
    assert bt.ljoin(x, y, by=by)["b"].tolist()[1:3] == ["B", "C"]
    assert bt.rjoin(x, y, by=by)["job_id"].tolist() == [2, 3, 5]  # keys named as in x, as R
    assert bt.ojoin(x, y, by=by)["job_id"].tolist() == [1, 2, 3, 4, 5]
    assert bt.sjoin(x, y, by=by)["job_id"].tolist() == [2, 3]
    assert bt.ajoin(x, y, by=by)["job_id"].tolist() == [1, 4]
    up = bt.ujoin(x, y.assign(a=["bb", "cc", "ee"]), by=by)
    assert up.values.tolist() == [[1, "a"], [2, "bb"], [3, "cc"], [4, "d"]]
    up_all = bt.ujoin(x, y.assign(a=["bb", "cc", "ee"]), all_y=True, by=by)
    assert up_all.columns.tolist() == ["job_id", "a", "b"] and up_all["b"].tolist()[1:3] == ["B", "C"]
    # R's guess by=NULL: the columns both have
    assert bt.ijoin(x, pd.DataFrame({"job_id": [4], "c": [1]}), by=None)["c"].tolist() == [1]
    with pytest.raises(ValueError, match="no column in common"):
        bt.ijoin(x, y, by=None)
    with pytest.raises(ValueError, match="no column"):
        bt.ijoin(x, y, by={"job_id": "nope"})


def test_pre_and_post_submit_job_hooks(reg):
    """R: hooks = list(pre.submit.job = ..., post.submit.job = ...): around every submitJob call
    (pre before every attempt, so a temporary error runs it again)."""
    seen, tries = [], []

    def submit(r, jc):
        tries.append(jc.job_hash)
        if len(tries) == 1:
            return bt.make_submit_job_result(1, msg="busy")  # temporary: retried
        bt.do_job_collection(jc, output=jc.log_file)
        return bt.make_submit_job_result(0, "local")

    reg.cluster_functions = bt.make_cluster_functions(
        "Mine", submit, hooks={name: (lambda r, n=name: seen.append(n)) for name in
                               ("pre_submit", "post_submit", "pre_submit_job", "post_submit_job")})
    bt.batch_map(lambda x: x, x=[1, 2])
    bt.submit_jobs(sleep=0)
    assert seen == ["pre_submit", "pre_submit_job", "pre_submit_job", "post_submit_job",
                    "pre_submit_job", "post_submit_job", "post_submit"]
    assert bt.wait_for_jobs() and bt.reduce_results_list() == [1, 2]


def test_failing_post_submit_job_hook_keeps_the_accepted_job(reg):
    """The backend accepted the chunk: it is recorded even though the hook raised afterwards."""
    def boom(r):
        raise RuntimeError("hook failed")

    reg.cluster_functions = bt.make_cluster_functions(
        "Mine", lambda r, jc: bt.make_submit_job_result(0, "b1"), hooks={"post_submit_job": boom})
    bt.batch_map(lambda x: x, x=[1, 2])
    with pytest.raises(RuntimeError, match="hook failed"):
        bt.submit_jobs()
    assert bt.find_submitted()["job_id"].tolist() == [1]


def test_run_os_command_stdin_is_a_file(tmp_path):
    """R: runOSCommand("cat", stdin = "input.txt")"""
    f = tmp_path / "input.txt"
    f.write_text("line 1\nline 2\n")
    out = bt.run_os_command("cat", stdin=str(f))
    assert out["output"] == ["line 1", "line 2"] and out["exit_code"] == 0
    assert out["sys_cmd"] == "cat" and out["sys_args"] == []
    assert bt.run_os_command("cat")["output"] == []  # no stdin: nothing fed (and nothing inherited)
    assert bt.run_os_command("no-such-command-xyz")["exit_code"] == 127
    with pytest.raises(FileNotFoundError, match="stdin"):
        bt.run_os_command("cat", stdin="this is text, not a file")


def test_fs_latency_on_every_backend():
    """R: fs.latency on every constructor; the defaults R has, except Socket (see the guide)."""
    assert bt.make_cluster_functions_interactive(fs_latency=2).fs_latency == 2
    assert bt.make_cluster_functions_interactive().fs_latency == 0
    cf = bt.make_cluster_functions_multicore(1, fs_latency=3)
    try:
        assert cf.fs_latency == 3 and cf.spec["kwargs"]["fs_latency"] == 3  # saved with the registry
    finally:
        cf.close()
    cf = bt.make_cluster_functions_socket(1)
    try:
        assert cf.fs_latency == 0
    finally:
        cf.close()
    import inspect

    assert inspect.signature(bt.make_cluster_functions_ssh).parameters["fs_latency"].default == 65
    assert inspect.signature(bt.make_cluster_functions_socket).parameters["fs_latency"].default == 0


@pytest.mark.parametrize("call", [
    lambda: bt.find_done([1, 1]), lambda: bt.get_job_table([2, 2]), lambda: bt.get_status([2, 2]),
    lambda: bt.reset_jobs([1, 1]), lambda: bt.submit_jobs([1, 1]), lambda: bt.add_job_tags([1, 1], "t"),
    lambda: bt.reduce_results_list([1, 1]), lambda: bt.wait_for_jobs([1, 1]), lambda: bt.get_job_pars([1, 1]),
    lambda: bt.get_error_messages([1, 1]), lambda: bt.set_job_names([1, 1], ["a", "b"]),
])
def test_duplicated_ids_are_refused(reg, call):
    """R: every function taking ids stops with 'Duplicated ids provided'."""
    bt.batch_map(lambda x: x, x=[1, 2])
    bt.submit_jobs(1)
    before = snapshot(reg.file_dir)
    with pytest.raises(ValueError, match="duplicated job id"):
        call()
    assert snapshot(reg.file_dir) == before


def test_long_error_messages_are_truncated(reg):
    """R: stri_trunc(msg, 500L, " [truncated]") -- the whole message is in the log."""
    def fail(n):
        raise ValueError("x" * n + "END")

    bt.batch_map(fail, n=[10, 1000])
    bt.submit_jobs()
    msgs = bt.get_error_messages()["message"].tolist()
    assert msgs[0] == "ValueError: " + "x" * 10 + "END"
    assert len(msgs[1]) == 500 and msgs[1].endswith(" [truncated]")
    assert any("x" * 1000 + "END" in line for line in bt.get_log(2))


def test_tags_follow_r_pattern(reg):
    """R: tags must match ^[[:alnum:]_.]+$"""
    bt.batch_map(lambda x: x, x=[1])
    before = snapshot(reg.file_dir)
    for bad in ("a b", "a-b", "", "a,b"):
        with pytest.raises(ValueError, match="letters, digits"):
            bt.add_job_tags(1, bad)
    assert snapshot(reg.file_dir) == before
    bt.add_job_tags(1, ["a.b_c", "1abc", "größe"])
    assert bt.get_used_job_tags() == ["1abc", "a.b_c", "größe"]


def test_test_job_and_exec_job_restore_the_callers_rng(reg):
    """R: set.seed(42); testJob(1); runif(1) gives what set.seed(42); runif(1) gives."""
    bt.batch_map(lambda x: (random.random(), np.random.random()), x=[1])
    random.seed(42)
    np.random.seed(42)
    expected = (random.random(), np.random.random())
    for run in (lambda: bt.test_job(1), lambda: bt.exec_job(bt.make_job(1))):
        random.seed(42)
        np.random.seed(42)
        inside = run()
        assert (random.random(), np.random.random()) == expected
        assert inside != expected  # the job ran with its own seed
    assert bt.test_job(1) == bt.exec_job(bt.make_job(1))  # and the same one each time


def test_assert_registry_sync_and_running_ok(reg):
    """R: assertRegistry(reg, writeable = TRUE, sync = TRUE, running.ok = FALSE)"""
    reg.cluster_functions = bt.make_cluster_functions(
        "Hold", lambda r, jc: bt.make_submit_job_result(0, "held"), list_jobs_running=lambda r: ["held"])
    bt.batch_map(lambda x: x, x=[1])
    assert bt.assert_registry(reg, writeable=True, sync=True) is reg
    bt.submit_jobs()
    with pytest.raises(ValueError, match="on the system"):
        bt.assert_registry(reg, running_ok=False)


# ------------------------------------------------------------------------------------- the guide
GUIDE = __import__("pathlib").Path(__file__).resolve().parent.parent / "docs" / "migrating-from-r.md"
# getNamespaceExports("batchtools") of R batchtools 0.9.16
R_EXPORTS = """
Worker addAlgorithm addExperiments addJobTags addProblem ajoin assertRegistry batchExport batchMap batchMapResults
batchReduce binpack btlapply btmapply cfBrewTemplate cfHandleUnknownSubmitError cfKillJob cfReadBrewTemplate chunk
clearRegistry doJobCollection estimateRuntimes execJob findConfFile findDone findErrors findExperiments findExpired
findJobs findNotDone findNotStarted findNotSubmitted findOnSystem findQueued findRunning findStarted findSubmitted
findTagged findTemplateFile flatten getDefaultRegistry getErrorMessages getJobNames getJobPars getJobResources
getJobStatus getJobTable getJobTags getLog getStatus getUsedJobTags grepLogs ijoin killJobs ljoin loadRegistry
loadResult lpt makeClusterFunctions makeClusterFunctionsDocker makeClusterFunctionsInteractive makeClusterFunctionsLSF
makeClusterFunctionsMulticore makeClusterFunctionsOpenLava makeClusterFunctionsSGE makeClusterFunctionsSSH
makeClusterFunctionsSlurm makeClusterFunctionsSocket makeClusterFunctionsTORQUE makeExperimentRegistry makeJob
makeJobCollection makeRegistry makeSubmitJobResult ojoin reduceResults reduceResultsDataTable reduceResultsList
removeAlgorithms removeExperiments removeJobTags removeProblems removeRegistry resetJobs rjoin runHook runOSCommand
saveRegistry setDefaultRegistry setJobNames showLog sjoin submitJobs summarizeExperiments sweepRegistry syncRegistry
testJob ujoin unwrap waitForJobs
""".split()


def test_guide_lists_every_r_export_with_an_existing_python_name():
    import re

    assert len(R_EXPORTS) == 100
    rows = {}
    for line in GUIDE.read_text().splitlines():
        m = re.match(r"^\| `(\w+)\(.*?\)` \| `(\w+)\(", line)
        if m:
            rows[m.group(1)] = m.group(2)
    assert sorted(rows) == sorted(R_EXPORTS)
    missing = [py for py in rows.values() if not hasattr(bt, py)]
    assert not missing, missing


def test_guide_python_examples_run(tmp_path, monkeypatch, capsys):
    """Every ```python block runs, in order, in one namespace, in a fresh folder (a block after
    ``<!-- no-run -->`` would only be compiled; the guide has none)."""
    import re

    monkeypatch.chdir(tmp_path)
    lines = GUIDE.read_text().splitlines()
    namespace = {"__name__": "__main__"}
    ran = 0
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```python":
            i += 1
            continue
        j = lines.index("```", i + 1)
        code = "\n".join(lines[i + 1:j])
        prev = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        compiled = compile(code, f"{GUIDE.name}:{i + 2}", "exec")
        if not re.match(r"<!--\s*no-run\s*-->", prev):
            exec(compiled, namespace)
            ran += 1
        i = j + 1
    assert ran >= 10
    out = capsys.readouterr().out
    assert "[12, 24, 36]" in out and "[9, 1, 4]" in out and "[7, 8]" in out and "scratch-tmp" in out
