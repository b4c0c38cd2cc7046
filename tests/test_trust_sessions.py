"""Trust, round 2 (issue 24): sessions, engines and definitions. A forced take-over mid-submit
starts no job twice, a parameter that cannot be read back is refused before anything is written,
a read-only session judges pool workers by the file system and not by its own clock, and a
problem's cached instances go with the problem. (The Dask worker killed mid-task: test_dask.py.)"""

import os
import pickle

import batchtools as bt


# ---------------------------------------------------------- problems and their cached instances
def old_or_new(data, job):
    return data


def test_removing_and_adding_a_problem_again_drops_its_cached_instances(tmp_path):
    """R batchtools' test_addProblem_removeProblem, ported: re-adding a problem with cache=True
    after a run must not hand the new jobs the old definition's instances."""
    reg = bt.make_experiment_registry(file_dir=tmp_path / "e", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.add_problem("p", data="OLD", fun=old_or_new, seed=1, cache=True)
    bt.add_algorithm("a")
    bt.add_experiments(repls=2)
    bt.submit_jobs()
    assert bt.reduce_results_list() == ["OLD", "OLD"]
    assert list(reg.layout.problem_cache("p").rglob("*.pkl"))

    bt.remove_problems("p")
    assert not reg.layout.problem_cache("p").exists()
    bt.add_problem("p", data="NEW", fun=old_or_new, seed=1, cache=True)
    bt.add_experiments(repls=2)
    bt.submit_jobs()
    assert bt.reduce_results_list() == ["NEW", "NEW"]

    # overwritten without removing: the jobs of the new definition, old ones resubmitted too, see it
    bt.add_problem("p", data="NEWER", fun=old_or_new, seed=1, cache=True)
    bt.add_experiments(repls=3)
    bt.reset_jobs(bt.find_done())
    bt.submit_jobs()
    assert bt.reduce_results_list() == ["NEWER"] * 3


def test_an_instance_a_late_node_caches_for_an_old_definition_is_never_read(tmp_path):
    """A job of the old definition still running when the problem is overwritten writes its
    instance after the cache was cleared: it lands under the old definition's version."""
    reg = bt.make_experiment_registry(file_dir=tmp_path / "e", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    old = bt.add_problem("p", data="OLD", fun=old_or_new, seed=1, cache=True)
    bt.add_algorithm("a")
    bt.add_experiments()
    new = bt.add_problem("p", data="NEW", fun=old_or_new, seed=1, cache=True)
    assert old.version != new.version
    late = reg.layout.instance_cache("p", {}, 1, old.version)  # what the late node writes
    late.parent.mkdir(parents=True)
    late.write_bytes(pickle.dumps("OLD"))
    bt.submit_jobs()
    assert bt.reduce_results_list() == ["NEW"]
    assert reg.layout.instance_cache("p", {}, 1, new.version).exists()


def test_a_problem_reloaded_within_the_clock_granularity_is_read_again(tmp_path):
    """The node's per-process cache of problems (Interactive: the master's own process) tells a
    re-added problem of the same size apart even within the same file timestamp."""
    from batchtools.jobs.session import load_cached

    path = tmp_path / "p.pkl"
    path.write_bytes(pickle.dumps("OLD"))
    st = path.stat()
    assert load_cached(path) == "OLD"
    tmp = tmp_path / "p.tmp"
    tmp.write_bytes(pickle.dumps("NEW"))
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    tmp.replace(path)
    assert load_cached(path) == "NEW"


def test_old_registries_keep_reading_instances_cached_without_a_version(tmp_path):
    """A problem pickled before versions existed unpickles with version "" and reads its cache
    where it was written (directly in the problem's folder)."""
    from batchtools.jobs.experiment import Problem

    reg = bt.make_experiment_registry(file_dir=tmp_path / "e", seed=1, conf_file=None)
    old = Problem("p", seed=1, cache=True)
    del old.__dict__["version"]  # as an older version of batchtools pickled it
    old = pickle.loads(pickle.dumps(old))
    assert old.version == ""
    assert reg.layout.instance_cache("p", {"n": 1}, 2, old.version).parent == reg.layout.problem_cache("p")
