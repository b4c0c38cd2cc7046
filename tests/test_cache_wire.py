"""The shared cache of results wired in (issue 29): ``cache_dir`` of a registry, ``submit_jobs``
taking jobs from the cache, finished jobs adding their results, ``explain_cache``, ``prune_cache``;
the ML study's acceptance (a benchmark rerun with one more learner in a new registry computes only
that learner's folds)."""

import dataclasses
import os
import sys
import warnings

import numpy as np
import pytest

import batchtools as bt
from batchtools.core import cache_key
from batchtools.core.cache import CacheWarning, ResultCache
from conftest import snapshot

SCALE = 3


def helper(x):
    return x * SCALE


def other_helper(x):
    return x * SCALE + 1


def job_fun(x, y=1):
    return helper(x) + y


BACKENDS = {"interactive": bt.make_cluster_functions_interactive,
            "multicore": lambda: bt.make_cluster_functions_multicore(ncpus=2)}


def counting(reg, backend="interactive"):
    """Give ``reg`` the backend, counting the jobs handed to it (``reg.handed``: their ids)."""
    cf = BACKENDS[backend]()
    handed = []

    def submit_job(r, jc):
        handed.extend(j["job_id"] for j in jc.jobs)
        return cf.submit_job(r, jc)

    reg.cluster_functions = dataclasses.replace(cf, submit_job=submit_job)
    reg.handed = handed
    return reg


def make_map(path, cache, seed=1, xs=(1, 2, 3), backend="interactive", **kw):
    reg = bt.make_registry(file_dir=path, seed=seed, conf_file=None, cache_dir=cache, **kw)
    counting(reg, backend)
    bt.batch_map(job_fun, list(xs), more_args={"y": 2}, reg=reg)
    return reg


def run(reg, ids=None):
    bt.submit_jobs(ids, reg=reg)
    assert bt.wait_for_jobs(reg=reg, timeout=120)
    return bt.reduce_results_list(reg=reg)


# --------------------------------------------------------------------------- settings
def test_cache_dir_is_saved_with_the_registry_and_checked_before_anything_is_written(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", conf_file=None, cache_dir=tmp_path / "cache",
                           cache_max_size="1M")
    assert reg.cache_dir == str(tmp_path / "cache") and reg.cache_max_size == 2**20
    again = bt.load_registry(tmp_path / "r", conf_file=None)
    assert (again.cache_dir, again.cache_max_size) == (str(tmp_path / "cache"), 2**20)
    (tmp_path / "file").write_text("x")
    for kw, error, words in [({"cache_dir": tmp_path / "file" / "c"}, NotADirectoryError, "is a file"),
                             ({"cache_dir": 3}, TypeError, "must be a path"),
                             ({"cache_max_size": -1}, ValueError, "positive number of bytes"),
                             ({"cache_max_size": "lots"}, ValueError, "'500M'")]:
        with pytest.raises(error, match=words) as info:
            bt.make_registry(file_dir=tmp_path / "bad", conf_file=None, **kw)
        assert str(info.value).startswith(next(iter(kw)))  # names the argument
        assert not (tmp_path / "bad").exists()
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(PermissionError, match="not writable"):
            bt.make_registry(file_dir=tmp_path / "bad", conf_file=None, cache_dir=locked / "c")
    # set later: checked, saved at once
    with pytest.raises(NotADirectoryError):
        reg.cache_dir = tmp_path / "file"
    assert reg.cache_dir == str(tmp_path / "cache")
    reg.cache_dir = None
    assert bt.load_registry(tmp_path / "r", conf_file=None).cache_dir is None
    # a script that runs again: exist_ok opens the registry, and a cache_dir given is set
    reg.lease.release()
    again = bt.make_registry(file_dir=tmp_path / "r", conf_file=None, exist_ok=True, cache_dir=tmp_path / "c2")
    assert bt.load_registry(again.file_dir, conf_file=None).cache_dir == str(tmp_path / "c2")


def test_configuration_key_cache_dir(tmp_path, caplog):
    conf = tmp_path / "conf.py"
    conf.write_text(f"cache_dir = {str(tmp_path / 'c1')!r}\ncache_max_size = '2G'\n")
    reg = bt.make_registry(file_dir=tmp_path / "r", conf_file=str(conf))
    assert reg.cache_dir == str(tmp_path / "c1") and reg.cache_max_size == 2 * 2**30
    # the argument wins over the configuration file
    assert bt.make_registry(file_dir=tmp_path / "r2", conf_file=str(conf),
                            cache_dir=tmp_path / "c2").cache_dir == str(tmp_path / "c2")
    # a configuration file that sets another cache than the one saved says so
    bt.load_registry(tmp_path / "r2", conf_file=None)
    with caplog.at_level("WARNING", logger="batchtools"):
        assert bt.load_registry(tmp_path / "r2", conf_file=str(conf)).cache_dir == str(tmp_path / "c1")
    assert "overriding" in caplog.text
    conf.write_text("cache_max_size = 0\n")
    with pytest.raises(ValueError, match="cache_max_size"):
        bt.make_registry(file_dir=tmp_path / "r3", conf_file=str(conf))


# --------------------------------------------------------------------------- submit_jobs
@pytest.mark.parametrize("backend", ["interactive", "multicore"])
def test_a_second_registry_takes_cached_jobs_and_runs_only_the_new_ones(tmp_path, backend):
    cache = tmp_path / "cache"
    a = make_map(tmp_path / "a", cache, backend=backend)
    assert run(a) == [5, 8, 11] and sorted(a.handed) == [1, 2, 3]
    assert len(ResultCache(cache)) == 3  # the finished jobs added their results
    b = make_map(tmp_path / "b", cache, xs=(1, 2, 3, 4), backend=backend)
    out = bt.submit_jobs(reg=b)
    assert out["job_id"].tolist() == [1, 2, 3, 4]  # what the call planned, taken from the cache too
    assert b.handed == [4]  # the backend got only the new job
    assert bt.wait_for_jobs(reg=b, timeout=120)
    assert bt.reduce_results_list(reg=b) == [5, 8, 11, 14]
    status = bt.get_status(reg=b)
    assert (status.done, status.cached) == (4, 3) and "Cached" in str(status)
    table = bt.get_job_table(reg=b)
    assert table["cached_from"].tolist()[:3] == [f"{a.file_dir}:{i}" for i in (1, 2, 3)]
    assert table["cached_from"].isna().tolist()[3]
    log = bt.get_log(2, reg=b)
    assert any(f"the result of job 2 of registry {a.file_dir}" in line for line in log)
    assert "[batchtools job.id=2]" in log[-1] and not any("job.id=1]" in line for line in log)
    assert len(ResultCache(cache)) == 4  # job 4 added, those taken from the cache not again
    origins = {e.origin["registry"] for e in ResultCache(cache).entries()}
    assert origins == {str(a.file_dir), str(b.file_dir)}
    # a later session sees the same
    again = bt.load_registry(b.file_dir, conf_file=None)
    assert bt.reduce_results_list(reg=again) == [5, 8, 11, 14] and bt.get_status(reg=again).cached == 3
    # reset and resubmitted: from the cache again
    bt.reset_jobs([2], reg=b)
    assert bt.get_job_table(reg=b)["cached_from"].isna().tolist()[1]
    b.handed.clear()
    bt.submit_jobs([2], reg=b)
    assert b.handed == [] and bt.load_result(2, reg=b) == 8


def test_everything_from_the_cache_hands_nothing_to_the_backend(tmp_path):
    cache = tmp_path / "cache"
    run(make_map(tmp_path / "a", cache))
    b = make_map(tmp_path / "b", cache)
    bt.submit_jobs(reg=b)
    assert b.handed == [] and bt.reduce_results_list(reg=b) == [5, 8, 11]
    assert bt.find_done(reg=b)["job_id"].tolist() == [1, 2, 3] and bt.find_on_system(reg=b).empty
    assert bt.submit_jobs(reg=b).empty  # nothing left to submit


def test_done_jobs_are_not_affected_and_errors_may_come_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    run(make_map(tmp_path / "a", cache))
    b = bt.make_registry(file_dir=tmp_path / "b", seed=1, conf_file=None)  # no cache yet
    counting(b)
    bt.batch_map(job_fun, [1, 2, 3], more_args={"y": 2}, reg=b)
    run(b, [1])
    b.cache_dir = cache
    b.handed.clear()
    bt.submit_jobs([1, 2], reg=b)  # job 1 is done: resubmitted, it runs again
    assert b.handed == [1]
    assert bt.get_job_table(reg=b)["cached_from"].isna().tolist() == [True, False, True]


def test_same_seed_same_key_another_seed_a_miss_named_by_explain(tmp_path):
    cache = tmp_path / "cache"
    run(make_map(tmp_path / "a", cache))
    other = make_map(tmp_path / "b", cache, seed=2)
    run(other)
    assert sorted(other.handed) == [1, 2, 3]
    exp = bt.explain_cache(1, reg=other)
    assert exp.hit  # it ran and added its result
    c = make_map(tmp_path / "c", cache, seed=5)
    text = str(bt.explain_cache(1, reg=c))
    assert text.startswith("job 1: miss") and "the seed changed" in text
    assert list(bt.explain_cache(1, reg=c).differences) == ["seed"]


def test_explain_cache_names_each_changed_part(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    a = make_map(tmp_path / "a", cache, packages=["numpy"])
    run(a)
    b = make_map(tmp_path / "b", cache, packages=["numpy"])
    bt.submit_jobs(reg=b)
    hit = str(bt.explain_cache(1, reg=b))
    assert hit.startswith(f"job 1: done from the cache (the result of {a.file_dir}:1); hit")
    # a parameter
    p = make_map(tmp_path / "p", cache, xs=(7, 2, 3), packages=["numpy"])
    assert bt.explain_cache(1, reg=p).differences == {"par:x": "parameter `x` changed"}
    assert bt.explain_cache(2, reg=p).hit
    # the helper function the job calls
    monkeypatch.setattr(sys.modules[__name__], "helper", other_helper)
    h = make_map(tmp_path / "h", cache, packages=["numpy"])
    assert "the function changed" in str(bt.explain_cache(1, reg=h))
    bt.submit_jobs(reg=h)
    assert sorted(h.handed) == [1, 2, 3]
    monkeypatch.undo()
    # a package version
    real = cache_key.package_version
    monkeypatch.setattr(cache_key, "package_version", lambda name: "0.0.1" if name == "numpy" else real(name))
    v = make_map(tmp_path / "v", cache, packages=["numpy"])
    assert bt.explain_cache(1, reg=v).differences == {
        "package:numpy": f"package numpy version changed ({real('numpy')} -> 0.0.1)"}
    bt.submit_jobs(reg=v)
    assert sorted(v.handed) == [1, 2, 3]
    with pytest.raises(ValueError, match="has no cache"):
        bt.explain_cache(1, reg=bt.make_registry(file_dir=None, conf_file=None))


def test_a_damaged_entry_is_a_miss_with_a_warning_never_a_wrong_result(tmp_path):
    cache = tmp_path / "cache"
    run(make_map(tmp_path / "a", cache))
    entry = next(e.path for e in ResultCache(cache).entries() if e.origin["job_id"] == 2)
    data = bytearray(open(entry, "rb").read())
    data[-3] ^= 0xFF  # the result's bytes
    open(entry, "wb").write(bytes(data))
    b = make_map(tmp_path / "b", cache)
    with pytest.warns(CacheWarning, match="damaged cache entry"):
        bt.submit_jobs(reg=b)
    assert b.handed == [2]
    assert bt.reduce_results_list(reg=b) == [5, 8, 11]
    assert bt.get_job_table(reg=b)["cached_from"].isna().tolist() == [False, True, False]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert bt.explain_cache(2, reg=b).hit  # job 2's run put a good entry back


# --------------------------------------------------------------------------- failures
def test_a_refused_submission_takes_nothing_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    run(make_map(tmp_path / "a", cache))
    b = make_map(tmp_path / "b", cache, xs=(1, 2, 3, 4))

    def refuse(reg, jc):
        return bt.make_submit_job_result(status=101, batch_id=None, msg="no such partition")

    b.cluster_functions = dataclasses.replace(b.cluster_functions, submit_job=refuse)
    before = snapshot(b.file_dir)
    with pytest.raises(bt.SubmitError, match="no such partition"):
        bt.submit_jobs(reg=b)
    assert snapshot(b.file_dir) == before
    assert bt.find_submitted(reg=b).empty and bt.get_status(reg=b).cached == 0


def test_a_failure_while_taking_from_the_cache_leaves_the_registry_as_it_was(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    run(make_map(tmp_path / "a", cache))
    b = make_map(tmp_path / "b", cache)
    before = snapshot(b.file_dir)
    real_save = type(b).save

    def failing_save(self, *args, **kwargs):
        if self.status["cached_from"].notna().any():
            raise OSError(28, "No space left on device")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(type(b), "save", failing_save)
    with pytest.raises(OSError, match="No space"):
        bt.submit_jobs(reg=b)
    monkeypatch.undo()
    after = snapshot(b.file_dir)
    assert after == before, sorted(set(after) ^ set(before))
    assert bt.find_submitted(reg=b).empty and b.status["cached_from"].isna().all()
    assert bt.load_registry(b.file_dir, conf_file=None).status["cached_from"].isna().all()
    bt.submit_jobs(reg=b)  # and then it works
    assert bt.reduce_results_list(reg=b) == [5, 8, 11] and b.handed == []


# --------------------------------------------------------------------------- bound and prune
def test_bound_and_prune_from_the_api(tmp_path):
    cache = tmp_path / "cache"
    reg = bt.make_registry(file_dir=tmp_path / "r", conf_file=None, cache_dir=cache, seed=1)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(lambda x: os.urandom(20_000), range(6), reg=reg)  # 6 results of ~20 kB, each its own
    run(reg)
    assert len(ResultCache(cache)) == 6
    bt.explain_cache(1, reg=reg)  # a use: job 1's entry is the most recently used
    os.utime(ResultCache(cache).path(bt.explain_cache(1, reg=reg).nearest.digest))
    pruned = bt.prune_cache("50K", reg=reg)
    assert (pruned.removed, pruned.kept) == (4, 2) and pruned.size <= 50 * 1024
    assert bt.explain_cache(1, reg=reg).hit
    with pytest.raises(ValueError, match="max_size"):
        bt.prune_cache(-3, reg=reg)
    # a bound: kept as results are added
    more = bt.make_registry(file_dir=tmp_path / "r2", conf_file=None, cache_dir=cache, seed=1, cache_max_size="45K")
    more.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(lambda x: os.urandom(20_000), range(4), reg=more)
    run(more)
    assert ResultCache(cache).size() <= 45 * 1024


# --------------------------------------------------------------------------- the ML study
sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_iris, load_wine  # noqa: E402
from sklearn.dummy import DummyClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer  # noqa: E402
from sklearn.tree import DecisionTreeClassifier  # noqa: E402

TASKS = {"iris": load_iris(return_X_y=True), "wine": load_wine(return_X_y=True)}


def squash(X):  # a helper function a learner calls
    return np.log1p(np.abs(X))


def squash_more(X):
    return np.log1p(np.abs(X)) * 2


def learners(helper_fn=squash, depth=3):
    return {"dummy": DummyClassifier(),
            "tree": make_pipeline(FunctionTransformer(lambda X: helper_fn(X)),
                                  DecisionTreeClassifier(max_depth=depth, random_state=0))}


def study(path, cache, seed=11, backend="multicore", **kw):
    reg = bt.make_experiment_registry(file_dir=path, seed=seed, conf_file=None, cache_dir=cache)
    counting(reg, backend)
    bt.batchmark(bt.benchmark_grid(TASKS, learners(**kw), 3), scoring="accuracy", reg=reg)
    return reg


def scores(reg):
    out = bt.reduce_results_batchmark(reg=reg).scores
    return out.sort_values(["task", "learner", "fold"]).reset_index(drop=True)


@pytest.mark.parametrize("backend", ["multicore", "interactive"])
def test_benchmark_rerun_with_one_more_learner_computes_only_that_learner(tmp_path, backend):
    cache = tmp_path / "cache"
    a = study(tmp_path / "a", cache, backend=backend)
    bt.submit_jobs(reg=a)
    assert bt.wait_for_jobs(reg=a, timeout=300)
    assert len(a.handed) == 12 and len(ResultCache(cache)) == 12
    # a new registry, the same seed and design, plus one more learner
    b = study(tmp_path / "b", cache, backend=backend)
    new = bt.batchmark(bt.benchmark_grid(TASKS, {"logreg": LogisticRegression(max_iter=500)}, 3),
                       scoring="accuracy", reg=b)
    bt.submit_jobs(reg=b)
    assert bt.wait_for_jobs(reg=b, timeout=300)
    assert sorted(b.handed) == new["job_id"].tolist() and len(b.handed) == 6  # only the new learner's folds
    sb = scores(b)
    old = sb[sb["learner"] != "logreg"].reset_index(drop=True)
    sa = scores(a)
    cols = ["task", "learner", "resampling", "fold", "accuracy"]
    assert old[cols].equals(sa[cols])  # identical scores
    assert bt.get_status(reg=b).cached == 12 and sb["learner"].eq("logreg").sum() == 6


def test_benchmark_misses_named_helper_parameter_seed_package(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    a = study(tmp_path / "a", cache, backend="interactive")
    bt.submit_jobs(reg=a)
    tree = int(bt.find_experiments(algo_name="tree", reg=a)["job_id"].iloc[0])

    def explained(reg):
        return bt.explain_cache(tree, reg=reg)

    # the same: a hit
    assert explained(study(tmp_path / "same", cache, backend="interactive")).hit
    # the helper function the learner calls changed
    helped = study(tmp_path / "helper", cache, backend="interactive", helper_fn=squash_more)
    assert explained(helped).differences == {"learner": "the learner changed (its settings or code)"}
    bt.submit_jobs(reg=helped)
    assert sorted(helped.handed) == bt.find_experiments(algo_name="tree", reg=helped)["job_id"].tolist()
    # a parameter of the learner
    deeper = study(tmp_path / "depth", cache, backend="interactive", depth=4)
    assert list(explained(deeper).differences) == ["learner"]
    # the seed (the folds are split with it too)
    seeded = study(tmp_path / "seed", cache, seed=12, backend="interactive")
    assert "seed" in explained(seeded).differences and "the seed changed" in str(explained(seeded))
    # a package version (sklearn, which the learner refers to)
    real = cache_key.package_version
    monkeypatch.setattr(cache_key, "package_version", lambda name: "0.1" if name == "sklearn" else real(name))
    versioned = study(tmp_path / "version", cache, backend="interactive")
    exp = explained(versioned)
    assert exp.differences == {"package:sklearn": f"package sklearn version changed ({real('sklearn')} -> 0.1)"}
    bt.submit_jobs(reg=versioned)
    assert len(versioned.handed) == 12


def test_jobs_run_by_pool_workers_add_their_results_too(tmp_path):
    cache = tmp_path / "cache"
    a = make_map(tmp_path / "a", cache, backend="multicore")
    bt.submit_workers(2, reg=a)
    assert bt.wait_for_jobs(reg=a, timeout=120)
    assert len(ResultCache(cache)) == 3  # keys computed at the sync that saw them done
    b = make_map(tmp_path / "b", cache)
    bt.submit_jobs(reg=b)
    assert b.handed == [] and bt.reduce_results_list(reg=b) == [5, 8, 11]


def test_a_job_seen_done_from_its_result_before_its_report_adds_its_result(tmp_path):
    """A job that left the system without a report but with its result is recorded done when its
    state is asked (adopted); its report, merged later, no longer makes it new: it is added to the
    cache all the same, under the key its submission computed (it was lost before: a race seen on a
    busy machine with Multicore)."""
    cache = tmp_path / "cache"
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None, cache_dir=cache)
    reg.cluster_functions = bt.make_cluster_functions(
        "Silent", lambda reg, jc: bt.make_submit_job_result(0, "b1"), list_jobs=lambda reg: ([], []))
    bt.batch_map(job_fun, x=[1, 2], reg=reg)
    bt.submit_jobs(reg=reg)
    reg.store.put(1, job_fun(1))
    assert bt.get_status(reg=reg).done == 1  # adopted, not from a report
    reg.sync()
    assert len(ResultCache(cache)) == 1
    # a job this session did not submit (pool workers, another session): no key held, added all the same
    reg.session.cache_keys.clear()
    reg.store.put(2, job_fun(2))
    assert bt.get_status(reg=reg).done == 2
    reg.sync()
    assert len(ResultCache(cache)) == 2
    assert bt.explain_cache(1, reg=reg).hit


def map_or_reduce(kind, x, job):
    """``map``: x squared; ``reduce``: the sum of the results of jobs 1..x of the job's registry."""
    if kind == "map":
        return x * x
    store = bt.load_registry(job.file_dir, make_default=False, conf_file=None).store
    return sum(store.get(i) for i in range(1, x + 1))


def test_a_job_that_waits_for_others_has_their_results_in_its_key(tmp_path):
    """A reduce reads the results of the jobs it waits for: the cache cannot see that, so the
    results of its dependencies are part of its key. Registry B's maps differ from A's, its reduce
    is the same call: it must run (not take A's sum); C, equal to A, takes everything."""
    cache = tmp_path / "cache"

    def chain(name, xs):
        reg = bt.make_registry(file_dir=tmp_path / name, seed=1, conf_file=None, cache_dir=cache)
        counting(reg)
        bt.batch_map(map_or_reduce, kind=["map"] * len(xs) + ["reduce"], x=[*xs, len(xs)], reg=reg)
        maps = list(range(1, len(xs) + 1))
        bt.submit_jobs(maps, reg=reg)
        bt.submit_jobs([len(xs) + 1], after=maps, reg=reg)
        assert bt.wait_for_jobs(reg=reg, timeout=120)
        return reg

    a = chain("a", [1, 2])
    assert bt.load_result(3, reg=a) == 5 and a.handed == [1, 2, 3]
    b = chain("b", [1, 3])
    assert b.handed == [2, 3]  # map 1 from the cache; map 2 differs, and so the reduce
    assert bt.load_result(3, reg=b) == 1 + 9
    c = chain("c", [1, 2])
    assert c.handed == [] and bt.load_result(3, reg=c) == 5
    assert bt.get_job_table(reg=c)["cached_from"].tolist() == [f"{a.file_dir}:{i}" for i in (1, 2, 3)]
