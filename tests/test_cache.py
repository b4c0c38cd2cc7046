"""The shared cache of results (issue 29): job keys (core/cache_key.py), the cache store and
explaining a miss (core/cache.py)."""

import collections
import json
import multiprocessing
import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import pandas as pd
import pytest

import batchtools as bt
from batchtools.core import cache_key
from batchtools.core.cache import CacheWarning, ResultCache, explain
from batchtools.core.cache_key import JobKey, job_keys, token
from conftest import wait_until

SCALE = 3


def helper(x):
    return x * SCALE


def job_fun(x, y=1):
    return helper(x) + y


def other_helper(x):
    return x * SCALE + 1


def make_map(path, seed=1, xs=(1, 2), **kw):
    reg = bt.make_registry(file_dir=path, seed=seed, conf_file=None, **kw)
    bt.batch_map(job_fun, list(xs), more_args={"y": 2}, reg=reg)
    return reg


def key_of(reg, job_id=1):
    return job_keys(reg, [job_id])[0]


def differing(a: JobKey, b: JobKey) -> set:
    da, db = a.as_dict(), b.as_dict()
    return {p for p in da.keys() | db.keys() if da.get(p) != db.get(p)}


def explained(key, reference, tmp_path):
    """explain() of ``key`` against a cache holding only ``reference``."""
    cache = ResultCache(tmp_path / f"c-{reference.digest[:8]}-{key.digest[:8]}")
    cache.put(reference, "cached", origin={"registry": "ref", "job_id": 1})
    return explain(key, cache)


# --------------------------------------------------------------------------- keys
def test_equal_jobs_in_two_registries_have_equal_keys(tmp_path):
    a, b = make_map(tmp_path / "a"), make_map(tmp_path / "b")
    ka, kb = job_keys(a, [1, 2]), job_keys(b, [1, 2])
    assert ka == kb
    assert ka[0] != ka[1]
    parts = ka[0].as_dict()
    assert {"function", "par:x", "more_args:y", "seed", "python"} <= set(parts)
    assert "package:cloudpickle" not in parts  # the serialiser computes nothing


def test_key_sensitivity_each_part_named_by_explain(tmp_path, monkeypatch):
    base = key_of(make_map(tmp_path / "base"))
    # x=1 as job 2: another seed (registry seed + job id)
    assert differing(key_of(make_map(tmp_path / "xs", xs=(5, 1)), 2), base) == {"seed"}
    # a parameter
    same_x = make_map(tmp_path / "x2", xs=(2, 9))
    assert differing(key_of(same_x), base) == {"par:x"}
    exp = explained(key_of(same_x), base, tmp_path)
    assert not exp.hit and list(exp.differences.values()) == ["parameter `x` changed"]
    # the seed
    seeded = key_of(make_map(tmp_path / "seed", seed=2))
    assert differing(seeded, base) == {"seed"}
    assert "the seed changed" in str(explained(seeded, base, tmp_path))
    # a global the job's helper uses (redun's content addressing misses it: insitro/redun#99)
    monkeypatch.setattr(sys.modules[__name__], "SCALE", 30)
    glob = key_of(make_map(tmp_path / "glob"))
    assert differing(glob, base) == {"function"}
    assert "the function changed" in str(explained(glob, base, tmp_path))
    monkeypatch.setattr(sys.modules[__name__], "SCALE", 3)
    assert key_of(make_map(tmp_path / "back")) == base
    # the helper function the job calls
    monkeypatch.setattr(sys.modules[__name__], "helper", other_helper)
    helped = key_of(make_map(tmp_path / "helper"))
    assert differing(helped, base) == {"function"}
    monkeypatch.undo()
    # a package version (the registry names numpy)
    with_np = make_map(tmp_path / "np", packages=["numpy"])
    k1 = key_of(with_np)
    assert k1.as_dict()["package:numpy"] == cache_key.package_version("numpy")
    real = cache_key.package_version
    monkeypatch.setattr(cache_key, "package_version", lambda name: "0.0.1" if name == "numpy" else real(name))
    k2 = key_of(with_np)
    assert differing(k2, k1) == {"package:numpy"}
    msg = explained(k2, k1, tmp_path).differences["package:numpy"]
    assert msg == f"package numpy version changed ({real('numpy')} -> 0.0.1)"


def test_more_args_and_exports_are_parts(tmp_path):
    a = bt.make_registry(file_dir=tmp_path / "a", seed=1, conf_file=None)
    bt.batch_map(job_fun, [1], more_args={"y": 2}, reg=a)
    b = bt.make_registry(file_dir=tmp_path / "b", seed=1, conf_file=None)
    bt.batch_map(job_fun, [1], more_args={"y": 3}, reg=b)
    assert differing(key_of(b), key_of(a)) == {"more_args:y"}
    before = key_of(a)
    bt.batch_export({"table": {"k": [1, 2]}}, reg=a)
    after = key_of(a)
    assert differing(after, before) == {"export:table"}
    assert explained(before, after, tmp_path).differences["export:table"] == \
        "export `table` is gone (the cached job had it)"


def test_batch_map_results_keys_hold_the_source_result(tmp_path):
    def chain(name, factor):
        src = bt.make_registry(file_dir=tmp_path / f"{name}-src", seed=1, conf_file=None)
        src.cluster_functions = bt.make_cluster_functions_interactive()
        bt.batch_map(lambda x: x * factor, [1, 2], reg=src)
        bt.submit_jobs(reg=src)
        target = bt.make_registry(file_dir=tmp_path / f"{name}-target", seed=1, conf_file=None)
        bt.batch_map_results(lambda r: r + 1, target=target, reg=src)
        return src, target

    src, target = chain("a", 10)
    keys = job_keys(target, [1, 2])
    assert None not in keys and keys[0] != keys[1]
    assert job_keys(chain("b", 10)[1], [1, 2]) == keys  # where the source is kept is no part
    other = job_keys(chain("c", 20)[1], [1])[0]
    assert differing(other, keys[0]) == {"source_result:0"}
    bt.reset_jobs([2], reg=src)  # no source result: no key (the job cannot be looked up or cached)
    assert job_keys(target, [1, 2]) == [keys[0], None]


def test_experiment_keys(tmp_path):
    def make(path, shift=0):
        reg = bt.make_experiment_registry(file_dir=path, seed=1, conf_file=None)
        bt.add_problem("p", data=list(range(10)), fun=lambda data, job, k: data[:k], seed=3, reg=reg)
        bt.add_algorithm("a", fun=lambda instance, s: sum(instance) * s + shift, reg=reg)
        bt.add_experiments({"p": pd.DataFrame({"k": [1, 2]})}, {"a": pd.DataFrame({"s": [1, 2]})}, repls=2, reg=reg)
        return reg

    a, b = make(tmp_path / "a"), make(tmp_path / "b")
    ka, kb = job_keys(a, range(1, 9)), job_keys(b, range(1, 9))
    assert ka == kb  # each problem has its own version id: not part of the key
    assert len({k.digest for k in ka}) == 8
    parts = ka[0].as_dict()
    assert {"problem", "algorithm", "prob_par:k", "algo_par:s", "repl", "seed"} <= set(parts)
    changed = job_keys(make(tmp_path / "c", shift=1), [1])[0]  # a closure value of the algorithm
    assert differing(changed, ka[0]) == {"algorithm"}


def test_benchmark_keys_an_added_learner_leaves_the_others(tmp_path):
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris
    from sklearn.dummy import DummyClassifier
    from sklearn.tree import DecisionTreeClassifier

    iris = load_iris(return_X_y=True)

    def make(path, learners):
        reg = bt.make_experiment_registry(file_dir=path, seed=7, conf_file=None)
        bt.batchmark(bt.benchmark_grid({"iris": iris}, learners, 3), scoring="accuracy", reg=reg)
        return reg

    a = make(tmp_path / "a", {"dummy": DummyClassifier()})
    b = make(tmp_path / "b", {"dummy": DummyClassifier()})
    bt.batchmark(bt.benchmark_grid({"iris": iris}, {"tree": DecisionTreeClassifier()}, 3), scoring="accuracy", reg=b)
    ka, kb = job_keys(a, [1, 2, 3]), job_keys(b, range(1, 7))
    assert ka == kb[:3]
    assert {"task", "learner", "prob_par:fold", "package:sklearn"} <= set(ka[0].as_dict())
    other = make(tmp_path / "c", {"dummy": DummyClassifier(strategy="uniform")})
    assert differing(job_keys(other, [1])[0], ka[0]) == {"learner"}
    assert explained(job_keys(other, [1])[0], ka[0], tmp_path).differences == \
        {"learner": "the learner changed (its settings or code)"}


KEY_SCRIPT = textwrap.dedent("""
    import json, sys
    import batchtools as bt
    from batchtools.core.cache_key import job_keys
    path = sys.argv[1]
    if sys.argv[3] == "make":  # loading needs no user module: the registry holds its code by value
        sys.path.insert(0, sys.argv[2])
        import usercode
        reg = bt.make_registry(file_dir=path, seed=1, conf_file=None)
        bt.batch_map(usercode.run, [1, 2, 3], more_args={"opts": {"alpha", "beta", "gamma"}}, reg=reg)
        # an instance of the class the function uses: read back, it is one class with the
        # function's (cloudpickle tracks it), whose strings are other objects than a loader's
        bt.batch_export({"thing": usercode.Thing(3)}, reg=reg)
    else:
        reg = bt.load_registry(path, writeable=False, conf_file=None)
    print(json.dumps([k.digest for k in job_keys(reg, [1, 2, 3])]))
""")

USERCODE = textwrap.dedent("""
    NAMES = {"a", "b", "c", "d"}
    class Thing:
        def __init__(self, k): self.k = k
    def helper(x): return sorted(NAMES)[x % 4]
    def run(x, opts): return helper(x), Thing(x).k, sorted(opts)
""")


def test_keys_stable_across_processes_and_hash_seeds(tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "usercode.py").write_text(USERCODE)
    script = tmp_path / "keys.py"
    script.write_text(KEY_SCRIPT)

    def run(seed, path, what):
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        out = subprocess.run([sys.executable, str(script), str(path), str(tmp_path / "code"), what],
                             env=env, capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    made = run(1, tmp_path / "r1", "make")
    assert len(set(made)) == 3
    assert run(2, tmp_path / "r1", "load") == made  # another process, another hash seed
    assert run(3, tmp_path / "r2", "make") == made  # another registry defined the same way
    # the user module's global changes: every key does
    (tmp_path / "code" / "usercode.py").write_text(USERCODE.replace('"d"}', '"e"}'))
    changed = run(4, tmp_path / "r3", "make")
    assert not set(changed) & set(made)


def test_token_of_sets_ignores_hash_order():
    assert token({"x", "y", "z"}) == token({"z", "y", "x"})
    assert token(frozenset({1, 2})) != token(frozenset({1, 3}))


# --------------------------------------------------------------------------- the store
def test_put_get_origin_and_first_writer_wins(tmp_path):
    cache = ResultCache(tmp_path / "c")
    key = JobKey.of({"function": "f", "par:x": token(1)})
    assert cache.get(key) is None
    assert cache.put(key, {"v": 1}, origin={"registry": "/r", "job_id": 3})
    assert not cache.put(key, {"v": 2})
    hit = cache.get(key)
    assert hit.value == {"v": 1} and hit.origin == {"registry": "/r", "job_id": 3}
    compressed = ResultCache(tmp_path / "c", compress="xz")
    key2 = JobKey.of({"function": "f", "par:x": token(2)})
    compressed.put(key2, list(range(1000)))
    assert cache.get(key2).value == list(range(1000))
    [entry] = [e for e in cache.entries() if e.digest == key.digest]
    assert entry.parts == key.as_dict()


def _writer(cache_dir, worker, n, queue, named):
    from batchtools.core import cache as module

    if named:  # as on NFS: no unnamed files, a named temporary file linked into place
        module.write_unnamed = lambda directory, data: None
    cache = ResultCache(cache_dir)
    added = 0
    for i in range(n):
        shared = JobKey.of({"par:i": str(i)})
        added += cache.put(shared, ("shared", i, "x" * (i * 50)), origin={"job_id": i})
        own = JobKey.of({"par:i": str(i), "worker": str(worker)})
        added += cache.put(own, ("own", worker, i))
        hit = cache.get(shared)
        assert hit is not None and hit.value == ("shared", i, "x" * (i * 50))
    queue.put(added)


@pytest.mark.parametrize("named", [False, True], ids=["unnamed", "named"])
def test_concurrent_writers_lose_nothing(tmp_path, named):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    n, workers = 60, 4
    procs = [ctx.Process(target=_writer, args=(str(tmp_path / "c"), w, n, queue, named)) for w in range(workers)]
    for p in procs:
        p.start()
    added = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sum(added) == n + n * workers  # each shared key added once, each own key once
    cache = ResultCache(tmp_path / "c")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i in range(n):
            assert cache.get(JobKey.of({"par:i": str(i)})).value == ("shared", i, "x" * (i * 50))
            for w in range(workers):
                assert cache.get(JobKey.of({"par:i": str(i), "worker": str(w)})).value == ("own", w, i)
    leftovers = [f for _, _, fs in os.walk(tmp_path / "c") for f in fs if not f.endswith(".res")]
    assert leftovers == []


KILLED_WRITER = textwrap.dedent("""
    import sys
    from batchtools.core import cache as module
    from batchtools.core.cache import ResultCache
    from batchtools.core.cache_key import JobKey
    if sys.argv[2] == "named":
        module.write_unnamed = lambda directory, data: None
    cache = ResultCache(sys.argv[1])
    i = 0
    while True:  # large entries, so that the kill lands inside a write
        cache.put(JobKey.of({"par:i": str(i)}), bytes([i % 256]) * (8 << 20))
        i += 1
""")


@pytest.mark.parametrize("named", [False, True], ids=["unnamed", "named"])
def test_writer_killed_mid_write_publishes_nothing_partial(tmp_path, named):
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER)
    cache = ResultCache(tmp_path / "c")
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "c"), "named" if named else "unnamed"])
    try:
        wait_until(lambda: sum(1 for _ in cache.entries()) >= 3, timeout=120, what="three entries")
    finally:
        proc.kill()
        proc.wait()
    n = sum(1 for _ in cache.entries())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for i in range(n + 1):
            hit = cache.get(JobKey.of({"par:i": str(i)}))
            assert (hit is None) if i == n else hit.value == bytes([i % 256]) * (8 << 20)
    leftovers = [f for _, _, fs in os.walk(tmp_path / "c") for f in fs if not f.endswith(".res")]
    assert len(leftovers) <= (1 if named else 0)  # at most the killed writer's temporary file
    for name in leftovers:
        [path] = [os.path.join(d, name) for d, _, fs in os.walk(tmp_path / "c") if name in fs]
        os.utime(path, (1, 1))  # once stale, prune removes it
    assert cache.prune().kept == n
    assert [f for _, _, fs in os.walk(tmp_path / "c") for f in fs if not f.endswith(".res")] == []


@pytest.mark.parametrize("damage", ["flip data", "flip header", "truncate", "empty", "other key"])
def test_damaged_entry_is_a_miss_with_warning(tmp_path, damage):
    cache = ResultCache(tmp_path / "c")
    key = JobKey.of({"par:x": "1"})
    cache.put(key, {"result": list(range(100))})
    path = cache.path(key.digest)
    data = bytearray(open(path, "rb").read())
    if damage == "flip data":
        data[-5] ^= 0xFF
    elif damage == "flip header":
        data[10] ^= 0xFF
    elif damage == "truncate":
        data = data[:-7]
    elif damage == "empty":
        data = b""
    else:  # an intact entry of another key under this key's name
        other = JobKey.of({"par:x": "2"})
        cache.put(other, "not this job's result")
        data = open(cache.path(other.digest), "rb").read()
    with open(path, "wb") as fh:
        fh.write(data)
    with pytest.warns(CacheWarning, match=str(path).replace("\\", "\\\\")):
        assert cache.get(key) is None
    assert not os.path.exists(path)
    assert cache.put(key, "again")  # the damaged entry no longer blocks the key
    assert cache.get(key).value == "again"


def test_intact_entry_unreadable_here_is_a_miss_and_kept(tmp_path):
    cache = ResultCache(tmp_path / "c")
    key = JobKey.of({"par:x": "1"})
    blob = pickle.dumps(collections.OrderedDict, protocol=2).replace(b"collections", b"no_such_module")
    cache.put_raw(key, blob)  # as if the result's class came from a module this process lacks
    with pytest.warns(CacheWarning, match="cannot be read here"):
        assert cache.get(key) is None
    assert key in cache


def test_lru_bound_and_prune(tmp_path):
    blob = "x" * 10_000
    cache = ResultCache(tmp_path / "c")
    keys = [JobKey.of({"par:i": str(i)}) for i in range(4)]
    for k in keys[:3]:
        cache.put(k, blob)
    one = os.path.getsize(cache.path(keys[0].digest))
    assert cache.size() == 3 * one
    for i, k in enumerate(keys[:3]):  # put in order 0, 1, 2; then 0 is used again
        os.utime(cache.path(k.digest), (1000 + i, 1000 + i))
    assert cache.get(keys[0]) is not None  # records its use now
    bounded = ResultCache(tmp_path / "c", max_size=3 * one)
    bounded.put(keys[3], blob)  # past the bound: the least recently used (1) goes
    assert [k in bounded for k in keys] == [True, False, True, True]
    assert bounded.size() <= 3 * one
    stale = tmp_path / "c" / "entries" / keys[0].digest[:2] / ".tmp-dead-1-0"
    stale.write_bytes(b"partial")
    os.utime(stale, (1, 1))
    os.utime(cache.path(keys[0].digest), (1500, 1500))
    os.utime(cache.path(keys[3].digest), (2000, 2000))
    done = bounded.prune(max_size=one)
    assert (done.removed, done.kept, done.size) == (2, 1, one)
    assert [k in bounded for k in keys] == [False, False, False, True]
    assert not stale.exists()
    assert bounded.prune(max_size=0).kept == 0
    with pytest.raises(ValueError, match="max_size"):
        ResultCache(tmp_path / "c", max_size=-1)


def test_explain_empty_hit_and_nearest(tmp_path):
    cache = ResultCache(tmp_path / "c")
    key = JobKey.of({"function": "f", "par:x": "1", "par:y": "1", "seed": "2"})
    assert str(explain(key, cache)) == "miss: the cache is empty"
    cache.put(JobKey.of({"function": "g", "par:x": "9", "par:y": "1", "seed": "2"}), 1)
    cache.put(JobKey.of({"function": "f", "par:x": "1", "par:y": "3", "seed": "2"}), 2,
              origin={"registry": "/old", "job_id": 7})
    exp = explain(key, cache)
    assert exp.differences == {"par:y": "parameter `y` changed"}
    assert "job 7 of /old" in str(exp) and exp.entries == 2
    cache.put(key, 3)
    assert explain(key, cache).hit
