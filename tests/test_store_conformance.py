"""Every result store keeps the same contract: each test runs against each store (the folder of
pickles, plain and compressed, and a store that is not a folder: one SQLite database), through
the store's methods and through a registry that uses it."""

import os
import pickle
import random
import signal
import subprocess
import sys
import textwrap
import time

import cloudpickle
import numpy as np
import pytest

import batchtools as bt
from batchtools.core.errors import CorruptFileError, ResultNotFoundError
from batchtools.core.persistence.layout import Layout
from batchtools.core.results.store import FolderStore, ResultStore, UnavailableStore, store_from_spec
from batchtools.core.results.store_sqlite import SQLiteStore

STORES = {
    "folder": lambda d: FolderStore(d),
    "folder-gzip": lambda d: FolderStore(d, compress="gzip"),
    "sqlite": lambda d: SQLiteStore(d),
}
HASH = "job" + "ab12" * 8  # a collection's hash, as submissions make them
BIG = 100_000  # results larger than a packed record, also compressed: a file of their own in every store


@pytest.fixture(params=list(STORES))
def make(request):
    return STORES[request.param]


@pytest.fixture
def store(tmp_path, make) -> ResultStore:
    Layout(tmp_path).make_dirs()
    return make(tmp_path)


def _stray(tmp_path) -> list[str]:
    """Temporary files a writer left in the store's folder."""
    return [n for n in os.listdir(tmp_path / "results") if n.startswith(".tmp-")]


def test_put_get_exists_ids_delete(store):
    assert store.ids().tolist() == [] and not store.exists(1)
    store.put(3, {"a": [1, 2]})
    store.put(1, "one")
    assert store.get(3) == {"a": [1, 2]} and store.get(1) == "one"
    assert store.exists(1) and not store.exists(2)
    assert store.ids().tolist() == [1, 3] and store.ids().dtype.kind == "i"
    store.put(1, "again")  # replaces
    assert store.get(1) == "again"
    assert store.delete([1, 2]) == 1  # only what existed counts
    assert store.ids().tolist() == [3] and not store.exists(1)


def test_get_many_keeps_the_order_asked(store):
    for i in range(1, 8):
        store.put(i, i * 10)
    assert store.get_many([7, 2, 5, 2]) == [70, 20, 50, 20]
    assert store.get_many([]) == []


def test_missing_results_raise_result_not_found(store):
    store.put(1, "x")
    for read in (lambda: store.get(9), lambda: store.get_many([1, 9])):
        with pytest.raises(ResultNotFoundError, match="9"):
            read()
    assert issubclass(ResultNotFoundError, FileNotFoundError)  # callers catching the older contract still do


def test_modified_says_when_a_result_was_written(store):
    before = time.time()
    store.put(1, "x")
    after = time.time()
    assert before - 2 <= store.modified(1) <= after + 2
    assert store.modified(2) is None
    assert store.modified_many([2, 1]) == [None, store.modified(1)]


def test_a_staged_result_is_invisible_until_committed_and_a_discard_leaves_nothing(tmp_path, store):
    token = store.stage(4, "first")
    assert not store.exists(4) and store.ids().tolist() == []
    store.commit(token)
    token = store.stage(4, "second")
    assert store.get(4) == "first"  # the older result stays until the commit
    store.commit(token)
    assert store.get(4) == "second"
    store.discard(store.stage(5, "never"))
    assert not store.exists(5) and store.ids().tolist() == [4]
    assert _stray(tmp_path) == []


def test_stash_restore_drop_and_the_stash_outlives_the_store_object(tmp_path, store):
    store.put(1, "one")
    store.put(2, "two")
    assert store.stash([1, 2, 3], "jobaa") == [1, 2]  # 3 has no result: not moved
    assert store.ids().tolist() == [] and not store.exists(1)
    assert sorted(store.stashed()) == [("jobaa", 1), ("jobaa", 2)]
    again = store_from_spec(store.spec, tmp_path)  # another session: the set-aside results are on disk
    assert type(again) is type(store) and sorted(again.stashed()) == [("jobaa", 1), ("jobaa", 2)]
    again.restore([1], "jobaa")
    assert store.get(1) == "one" and store.stashed() == [("jobaa", 2)]
    store.drop([2], "jobaa")
    assert store.stashed() == [] and not store.exists(2)
    store.restore([2], "jobaa")  # nothing left to restore: a no-op
    assert store.ids().tolist() == [1]


def test_a_result_that_cannot_be_read_can_still_be_set_aside_and_put_back(tmp_path, store):
    store.put(1, "x")
    store.put_raw(2, b"garbage, not a pickle")
    assert store.stash([1, 2], "jobbb") == [1, 2]
    store.restore([1, 2], "jobbb")
    assert store.get(1) == "x" and store.raw(2) == b"garbage, not a pickle"
    with pytest.raises(OSError, match="job 2"):  # CorruptFileError: names the job and the remedy
        store.get(2)


def test_spec_and_pickle_make_the_same_store(tmp_path, store):
    store.put(1, ["value"])
    spec = store.spec
    assert spec == pickle.loads(cloudpickle.dumps(spec))  # saved with the registry as it is
    assert store_from_spec(spec, tmp_path).get(1) == ["value"]
    node = pickle.loads(pickle.dumps(store))  # as a job collection carries it to the node
    assert type(node) is type(store) and node.compress == store.compress
    node.put(2, "from the node")
    assert store.get(2) == "from the node"


def test_sweep_removes_stale_temporary_files_and_clear_removes_everything(tmp_path, store):
    store.put(1, "x")
    store.put(2, "y")
    store.stash([2], "jobcc")
    stale = tmp_path / "results" / ".tmp-dead-writer"
    stale.write_bytes(b"half a result")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    fresh = tmp_path / "results" / ".tmp-live-writer"
    fresh.write_bytes(b"being written")
    assert store.sweep(time.time() - 3600) == 1
    assert _stray(tmp_path) == [".tmp-live-writer"] and store.get(1) == "x"
    store.clear()
    assert store.ids().tolist() == [] and store.stashed() == [] and _stray(tmp_path) == []


def test_pack_hooks_hold_for_every_store(tmp_path, store):
    node = store.packed(HASH)  # a node running a collection of many jobs writes through this
    node.put(1, "small")
    node.put(2, "x" * 200_000)  # larger than a packed record
    node.close()
    store.close_packs()
    assert store.get_many([1, 2]) == ["small", "x" * 200_000]
    assert store.damaged([1, 2]) == [] and store.pack_damage() == {}
    assert store.drop_packs({HASH}) == 0 and store.get(1) == "small"  # its collection's pack counts
    assert set(store.orphans([1, 2])) <= {1, 2}
    assert len(store.packed_by([1, 2], [HASH, HASH])) == 2
    assert set(store.unpacked_ids().tolist()) <= {1, 2}


@pytest.fixture
def reg(tmp_path, make):
    reg = bt.make_registry(tmp_path / "reg", conf_file=None, make_default=False, seed=1)
    reg.store = make(reg.file_dir)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    yield reg
    if reg.lease is not None:
        reg.lease.release()


def test_a_registry_runs_reduces_resubmits_and_reopens_with_its_store(tmp_path, make, reg):
    kind = type(make(tmp_path))
    bt.batch_map(lambda x: x * 2, x=[1, 2, 3], reg=reg)
    bt.submit_jobs(reg=reg)
    assert bt.reduce_results_list(reg=reg) == [2, 4, 6]
    assert bt.reduce_results(lambda a, b: a + b, reg=reg) == 12
    bt.submit_jobs([2], reg=reg)  # a resubmission sets the earlier result aside, then drops it
    assert bt.reduce_results_list(reg=reg) == [2, 4, 6] and reg.store.stashed() == []
    reg.lease.release()
    again = bt.load_registry(reg.file_dir, conf_file=None, make_default=False, writeable=True)
    try:
        assert type(again.store) is kind and bt.load_result(3, reg=again) == 6
        bt.reset_jobs([1], reg=again)
        assert not again.store.exists(1)  # a reset job's result goes with it
        again.store.put(1, "left by a run that was never recorded")
        assert bt.sweep_registry(reg=again)["results"] == 1  # a result of a job not done, through the store
        assert again.store.ids().tolist() == [2, 3]
        bt.clear_registry(reg=again)
        assert again.store.ids().tolist() == [] and again.store.stashed() == []
        assert not [n for n in os.listdir(again.file_dir / "results") if n.endswith(".pkl")]
    finally:
        again.lease.release()


def test_nodes_in_other_processes_write_through_the_registry_s_store(reg):
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(lambda x: x + 0.5, x=list(range(12)), reg=reg)
    ids = bt.find_jobs(reg=reg)
    ids["chunk"] = [1] * 6 + [2] * 6  # two collections of many jobs: packed where the store packs
    bt.submit_jobs(ids, reg=reg)
    assert bt.wait_for_jobs(reg=reg)
    assert bt.reduce_results_list(reg=reg) == [x + 0.5 for x in range(12)]
    assert reg.store.ids().tolist() == list(range(1, 13))


def test_repair_registry_finds_a_lost_result_in_every_store(reg):
    bt.batch_map(lambda x: __import__("random").Random(x).randbytes(BIG), x=[1, 2, 3], reg=reg)
    bt.submit_jobs(reg=reg)
    assert reg.store.delete([2]) == 1  # lost behind the registry's back
    reg.lease.release()
    report = bt.repair_registry(reg.file_dir)
    assert report["missing_results"] == [2] and report["damaged_results"] == []
    again = bt.load_registry(reg.file_dir, conf_file=None, make_default=False)
    assert bt.find_errors(reg=again)["job_id"].tolist() == [2]
    assert bt.reduce_results_list([1, 3], reg=again) == [random.Random(x).randbytes(BIG) for x in (1, 3)]


def test_a_registry_refuses_a_store_once_results_exist_or_for_another_folder(tmp_path, make, reg):
    with pytest.raises(ValueError, match="reg.file_dir"):
        reg.store = make(tmp_path)
    with pytest.raises(TypeError, match="store: expected a ResultStore"):
        reg.store = "results"
    bt.batch_map(lambda x: x, x=[1], reg=reg)
    bt.submit_jobs(reg=reg)
    with pytest.raises(ValueError, match="clear_registry"):
        reg.store = SQLiteStore(reg.file_dir) if isinstance(reg.store, FolderStore) else FolderStore(reg.file_dir)
    assert bt.load_result(1, reg=reg) == 1


def test_a_registry_saved_without_a_store_spec_has_a_folder_store(tmp_path):
    reg = bt.make_registry(tmp_path / "old", conf_file=None, make_default=False)
    reg.lease.release()
    meta = pickle.loads(reg.layout.meta.read_bytes())
    assert meta["store"]["constructor"] == "batchtools.core.results.store:FolderStore"
    del meta["store"]  # as a registry of an older version was saved
    reg.layout.meta.write_bytes(cloudpickle.dumps(meta))
    assert type(bt.load_registry(reg.file_dir, conf_file=None, make_default=False).store) is FolderStore


def test_a_store_that_cannot_be_made_again_refuses_with_the_reason(tmp_path):
    Layout(tmp_path).make_dirs()
    spec = {"constructor": "no_such_module_here:Store", "kwargs": {}}
    store = store_from_spec(spec, tmp_path)
    assert isinstance(store, UnavailableStore) and store.spec == spec  # saved again as it was
    with pytest.raises(RuntimeError, match="no_such_module_here:Store.*importable"):
        store.get(1)
    reg = bt.make_registry(tmp_path / "reg", conf_file=None, make_default=False)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(lambda x: x, x=[1], reg=reg)
    bt.submit_jobs(reg=reg)
    reg.lease.release()
    meta = pickle.loads(reg.layout.meta.read_bytes())
    reg.layout.meta.write_bytes(cloudpickle.dumps({**meta, "store": spec}))
    ro = bt.load_registry(reg.file_dir, conf_file=None, make_default=False)  # never another store in its place
    assert isinstance(ro.store, UnavailableStore) and bt.get_status(reg=ro)["done"] == 1
    with pytest.raises(RuntimeError, match="no_such_module_here:Store"):
        bt.load_result(1, reg=ro)


MASTER = """
import sys, batchtools as bt
reg = bt.load_registry({path!r}, conf_file=None, writeable=True)
stash = reg.store.stash
def stash_then_stop(ids, tag):  # the master dies here: results set aside, the chunk not handed over
    moved = stash(ids, tag)
    print("stashed", moved, flush=True)
    sys.stdin.read()
    return moved
reg.store.stash = stash_then_stop
bt.submit_jobs([1], reg=reg)
"""


def test_a_master_killed_between_stash_and_drop_loses_no_result(tmp_path, make, reg):
    bt.batch_map(lambda x: __import__("random").Random(x).randbytes(BIG), x=[21, 5], reg=reg)
    bt.submit_jobs(reg=reg)
    reg.lease.release()
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(MASTER.format(path=str(reg.file_dir)))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "stashed [1]"
        seen = make(reg.file_dir)  # what is on disk while the master waits
        assert not seen.exists(1) and [i for _, i in seen.stashed()] == [1]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    again = bt.load_registry(reg.file_dir, conf_file=None, make_default=False, writeable=True)
    try:
        assert again.store.stashed() == []
        noise = [random.Random(x).randbytes(BIG) for x in (21, 5)]
        assert bt.load_result(1, reg=again) == noise[0] and bt.reduce_results_list(reg=again) == noise
        assert bt.find_done(reg=again)["job_id"].tolist() == [1, 2]
    finally:
        again.lease.release()


class DictStore(ResultStore):
    """Only the seven methods a store must have (results in a dict of this object): the defaults
    of everything else are what these tests check."""

    def __init__(self, file_dir):
        super().__init__(file_dir)
        self.data: dict[int, bytes] = {}

    def stage(self, job_id, value):
        return int(job_id), pickle.dumps(value)

    def commit(self, token):
        self.data[token[0]] = token[1]

    def discard(self, token):
        pass

    def get(self, job_id):
        if int(job_id) not in self.data:
            raise ResultNotFoundError(f"job {job_id} has no result")
        try:
            return pickle.loads(self.data[int(job_id)])
        except Exception as e:
            raise CorruptFileError(f"the result of job {job_id} cannot be read ({e})") from e

    def delete(self, job_ids):
        return sum(self.data.pop(int(i), None) is not None for i in job_ids)

    def exists(self, job_id):
        return int(job_id) in self.data

    def ids(self):
        return np.array(sorted(self.data), dtype=np.int64)


def test_the_defaults_of_a_store_with_only_the_required_methods(tmp_path, caplog):
    Layout(tmp_path).make_dirs()
    store = DictStore(tmp_path)
    store.put(1, "one")
    store.put(2, [2])
    assert store.get_many([2, 1]) == [[2], "one"] and store.modified_many([1, 3]) == [None, None]
    store.put_raw(3, store.raw(1))
    assert store.get(3) == "one"
    assert store.packed(HASH) is store and store.drop_packs(set()) == 0 and store.damaged([1]) == []
    assert store.packed_by([1], [HASH]) == [False] and store.unpacked_ids().tolist() == [1, 2, 3]
    assert store.spec == {"constructor": f"{__name__}:DictStore", "kwargs": {}}
    store.data[2] = b"damaged"
    assert store.stash([1, 2], "jobdd") == [1]  # an unreadable result cannot be kept: it goes, with a warning
    assert "job 2 cannot be read" in caplog.text and store.ids().tolist() == [3]
    assert (tmp_path / "results" / ".prev-jobdd-1.pkl").is_file()  # set aside on disk, not in the object
    store.restore([1], "jobdd")
    assert store.get(1) == "one" and store.stashed() == []
    with pytest.raises(ValueError, match="compress: DictStore does not compress"):
        ResultStore.__init__(store, tmp_path, compress="gzip")
