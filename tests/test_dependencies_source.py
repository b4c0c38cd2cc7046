"""batch_map_results jobs wait for their source jobs in the source registry (issue 29)."""

import os

import pytest

import batchtools as bt
from batchtools.core.dependencies import DEPENDENCY, SOURCE
from conftest import snapshot


def tenfold(x, gate="", flag=""):
    """x * 10, once the file ``gate`` exists; fails while the file ``flag`` exists."""
    import time

    while gate and not os.path.exists(gate):
        time.sleep(0.02)
    if flag and os.path.exists(flag):
        raise RuntimeError("flagged")
    return x * 10


def plus_one(r):
    return r + 1


def master_files(snap):
    """The files only the registry's master writes (its tables and settings)."""
    return {k: v for k, v in snap.items() if os.sep not in k and k.endswith(".pkl")}


@pytest.fixture
def pair(tmp_path):
    src = bt.make_registry(file_dir=tmp_path / "src", seed=1, conf_file=None, make_default=False)
    tgt = bt.make_registry(file_dir=tmp_path / "tgt", seed=1, conf_file=None, make_default=False)
    return src, tgt


def test_target_waits_for_its_source_multicore(pair, tmp_path):
    src, tgt = pair
    gate = tmp_path / "gate"
    src.cluster_functions = bt.make_cluster_functions_multicore(2)
    tgt.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(tenfold, x=[1, 2], more_args={"gate": str(gate)}, reg=src)  # two gated jobs fill Multicore(2)
    bt.batch_map_results(plus_one, ids=[1, 2], target=tgt, reg=src)
    bt.submit_jobs(reg=src)
    assert bt.submit_jobs(reg=tgt)["job_id"].tolist() == [1, 2]  # both at once
    assert bt.find_held(reg=tgt)["job_id"].tolist() == [1, 2]
    st = bt.get_status(reg=tgt)
    assert (st.held, st.expired, st.error, st.submitted) == (2, 0, 0, 2)
    before = master_files(snapshot(src.file_dir))
    gate.write_text("")
    assert bt.wait_for_jobs(reg=tgt, timeout=120)  # releases them once the source jobs are done
    assert bt.reduce_results_list(reg=tgt) == [11, 21]
    assert bt.find_held(reg=tgt).empty
    # the target's waits read the source (its nodes' files included), never write it
    assert master_files(snapshot(src.file_dir)) == before
    assert bt.wait_for_jobs(reg=src, timeout=60)
    src.cluster_functions.close()
    tgt.cluster_functions.close()


def test_released_one_by_one(pair, tmp_path):
    src, tgt = pair
    src.cluster_functions = bt.make_cluster_functions_interactive()
    tgt.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(tenfold, x=[1, 2], reg=src)
    bt.batch_map_results(plus_one, ids=[1, 2], target=tgt, reg=src)
    bt.submit_jobs(reg=tgt)
    assert bt.find_held(reg=tgt)["job_id"].tolist() == [1, 2]
    tab = bt.get_job_table(reg=tgt)
    assert tab["reason"].tolist() == [DEPENDENCY] * 2  # never submitted in the source: said at once
    bt.submit_jobs(2, reg=src)
    bt.sync_registry(reg=tgt)
    assert bt.find_held(reg=tgt)["job_id"].tolist() == [1]
    assert bt.load_result(2, reg=tgt) == 21
    bt.submit_jobs(1, reg=src)
    assert bt.wait_for_jobs(reg=tgt, timeout=60)
    assert bt.reduce_results_list(reg=tgt) == [11, 21]


def test_failed_source_holds_and_fix_releases(pair, tmp_path):
    src, tgt = pair
    flag = tmp_path / "fail"
    flag.write_text("")
    src.cluster_functions = bt.make_cluster_functions_interactive()
    tgt.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(tenfold, x=[1, 2], more_args={"flag": str(flag)}, reg=src)
    bt.batch_map_results(plus_one, ids=[1, 2], target=tgt, reg=src)
    bt.submit_jobs(reg=src)
    assert bt.find_errors(reg=src)["job_id"].tolist() == [1, 2]
    before = snapshot(src.file_dir)
    bt.submit_jobs(reg=tgt)
    assert not bt.wait_for_jobs(reg=tgt, timeout=60)  # ends: nothing can go on
    bt.sync_registry(reg=tgt)
    tab = bt.get_job_table(reg=tgt)
    assert tab["reason"].tolist() == [DEPENDENCY] * 2 and tab["error"].isna().all()
    st = bt.get_status(reg=tgt)
    assert (st.held, st.expired, st.error) == (2, 0, 0)
    assert snapshot(src.file_dir) == before  # not a byte of the source written
    # a later session of the target still waits for the source
    path = tgt.file_dir
    del tgt
    tgt = bt.load_registry(path, writeable=True, make_default=False, conf_file=None)
    assert bt.find_held(reg=tgt)["job_id"].tolist() == [1, 2]
    assert tgt.extra[SOURCE] == str(src.file_dir)
    flag.unlink()
    bt.submit_jobs(bt.find_errors(reg=src), reg=src)
    assert bt.wait_for_jobs(reg=tgt, timeout=60)
    assert bt.reduce_results_list(reg=tgt) == [11, 21]
    assert bt.get_job_table(reg=tgt)["reason"].isna().all()


def test_source_done_runs_at_once_and_plain_map_stores_nothing(pair):
    src, tgt = pair
    src.cluster_functions = bt.make_cluster_functions_interactive()
    tgt.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(tenfold, x=[1, 2], reg=src)
    bt.submit_jobs(reg=src)
    assert SOURCE not in src.extra
    bt.batch_map_results(plus_one, target=tgt, reg=src)
    bt.submit_jobs(reg=tgt)
    assert bt.find_held(reg=tgt).empty
    assert bt.reduce_results_list(reg=tgt) == [11, 21]
    bt.clear_registry(reg=tgt)
    assert SOURCE not in tgt.extra


def test_removed_source_folder_holds(pair, tmp_path, caplog):
    src, tgt = pair
    tgt.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(tenfold, x=[1], reg=src)
    bt.batch_map_results(plus_one, ids=[1], target=tgt, reg=src)
    os.rename(src.file_dir, tmp_path / "moved")
    bt.submit_jobs(reg=tgt)
    assert bt.find_held(reg=tgt)["job_id"].tolist() == [1]
    assert bt.get_job_table(reg=tgt)["reason"].tolist() == [DEPENDENCY]
    assert "cannot be read" in caplog.text


def test_pool_target_waits_for_its_source(pair, tmp_path):
    src, tgt = pair
    gate = tmp_path / "gate"
    src.cluster_functions = bt.make_cluster_functions_multicore(2)
    tgt.cluster_functions = bt.make_cluster_functions_multicore(1)
    bt.batch_map(tenfold, x=[1, 2], more_args={"gate": str(gate)}, reg=src)
    bt.batch_map_results(plus_one, ids=[1, 2], target=tgt, reg=src)
    bt.submit_jobs(reg=src)
    bt.submit_workers(1, reg=tgt)
    assert bt.find_held(reg=tgt)["job_id"].tolist() == [1, 2]  # in no queue of the pool: no worker claims them
    gate.write_text("")
    assert bt.wait_for_jobs(reg=tgt, timeout=120)
    assert bt.reduce_results_list(reg=tgt) == [11, 21]
    assert bt.wait_for_jobs(reg=src, timeout=60)
    src.cluster_functions.close()
    tgt.cluster_functions.close()
