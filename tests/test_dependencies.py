"""Dependencies between jobs (issue 29): submit_jobs(after=), held jobs, their release."""

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap

import pandas as pd
import psutil
import pytest

import batchtools as bt
from batchtools.core.dependencies import DEPENDENCY
from conftest import snapshot


def step(kind, x, job, flag="", gate=""):
    """``map``: x squared (fails while the file ``flag`` exists; starts once the file ``gate``
    exists); ``reduce``: the sum of the results of jobs 1..x, read from the registry the job runs in."""
    if kind == "map":
        while gate and not os.path.exists(gate):
            import time

            time.sleep(0.02)
        if flag and os.path.exists(flag):
            raise RuntimeError("flagged")
        return x * x
    import batchtools as bt

    store = bt.load_registry(job.file_dir, make_default=False, conf_file=None).store
    return sum(store.get(i) for i in range(1, x + 1))


def chain(reg, n=4, flag="", gate=""):
    """n map jobs and one reduce job (id n + 1) over them."""
    bt.batch_map(step, kind=["map"] * n + ["reduce"], x=[*range(1, n + 1), n], more_args={"flag": flag, "gate": gate},
                 reg=reg)
    return list(range(1, n + 1)), [n + 1]


def tables(reg):
    return {k: v.copy() for k, v in reg.tables.items()}


def same_tables(a, b):
    assert a.keys() == b.keys()
    for k in a:
        pd.testing.assert_frame_equal(a[k], b[k])


# ------------------------------------------------------------------ chains
def test_chain_multicore(mreg, tmp_path):
    gate = tmp_path / "gate"  # Multicore(2): two gated jobs fill it
    maps, red = chain(mreg, 2, gate=str(gate))
    bt.submit_jobs(maps, reg=mreg)
    out = bt.submit_jobs(red, after=maps, reg=mreg)
    assert out["job_id"].tolist() == red
    assert bt.find_held(reg=mreg)["job_id"].tolist() == red
    st = bt.get_status(reg=mreg)
    assert (st.held, st.expired, st.error, st.submitted) == (1, 0, 0, 3)
    gate.write_text("")
    assert bt.wait_for_jobs(reg=mreg, timeout=120)
    assert bt.load_result(3, reg=mreg) == 1 + 4
    assert bt.find_held(reg=mreg).empty
    tab = bt.get_job_table(reg=mreg)
    assert tab["after"].tolist() == [None] * 2 + [maps]
    assert tab["held"].isna().all()  # released
    mreg.cluster_functions.close()


def test_chain_pool(mreg, tmp_path):
    gate = tmp_path / "gate"
    maps, red = chain(mreg, 2, gate=str(gate))
    bt.submit_workers(2, ids=maps, reg=mreg)
    bt.submit_workers(1, ids=red, after=maps, reg=mreg)
    assert bt.find_held(reg=mreg)["job_id"].tolist() == red
    # no worker can claim it: it is in no queue of the pool
    queued = set()
    for q in (mreg.file_dir / "pool" / "queue").glob("*.pkl"):
        queued |= {spec["job_id"] for spec in pd.read_pickle(q).jobs}
    assert queued == set(maps)
    gate.write_text("")
    assert bt.wait_for_jobs(reg=mreg, timeout=120)
    assert bt.load_result(3, reg=mreg) == 5
    assert bt.get_job_table(3, reg=mreg)["job_hash"].iloc[0].startswith("pool")  # run by a pool worker
    mreg.cluster_functions.close()


def test_chain_of_three_in_one_wait(mreg, tmp_path):
    gate = tmp_path / "gate"
    bt.batch_map(step, kind=["map", "map", "reduce", "reduce"], x=[1, 2, 2, 3], more_args={"gate": str(gate)},
                 reg=mreg)
    bt.submit_jobs([1, 2], reg=mreg)
    bt.submit_jobs(3, after=[1, 2], reg=mreg)
    bt.submit_jobs(4, after=3, reg=mreg)
    assert bt.find_held(reg=mreg)["job_id"].tolist() == [3, 4]
    gate.write_text("")
    assert bt.wait_for_jobs(reg=mreg, timeout=120)
    assert bt.reduce_results_list(reg=mreg) == [1, 4, 5, 1 + 4 + 5]
    mreg.cluster_functions.close()


def test_ready_dependencies_submit_at_once(reg):
    maps, red = chain(reg, 2)
    bt.submit_jobs(maps, reg=reg)  # Interactive: done
    bt.submit_jobs(red, after=maps, reg=reg)
    assert bt.find_held(reg=reg).empty
    assert bt.load_result(3, reg=reg) == 5


def test_chunk_and_resources_kept(reg):
    chain(reg, 2)
    ids = pd.DataFrame({"job_id": [2, 3], "chunk": [7, 7]})
    bt.submit_jobs(ids, after=1, resources={"walltime": 60, "mine": "x"}, retry=bt.RetryPolicy(max_attempts=5),
                   reg=reg)
    assert bt.find_held(reg=reg)["job_id"].tolist() == [2, 3]
    held = bt.get_job_resources([2, 3], reg=reg)["resources"]
    assert [(r["mine"], r["retry"]["max_attempts"]) for r in held] == [("x", 5), ("x", 5)]
    bt.submit_jobs(1, reg=reg)
    bt.sync_registry(reg=reg)  # job 1 is done: the chunk goes as one
    tab = bt.get_job_table([2, 3], reg=reg)
    assert tab["job_hash"].nunique() == 1 and tab["done"].notna().all()
    assert [(r["mine"], r["retry"]["max_attempts"]) for r in tab["resources"]] == [("x", 5), ("x", 5)]


# ------------------------------------------------------------------ failed dependency
def test_failed_dependency_holds_and_fix_releases(reg, tmp_path):
    flag = tmp_path / "fail"
    flag.write_text("")
    maps, red = chain(reg, 3, flag=str(flag))
    bt.submit_jobs(maps, reg=reg)
    assert bt.find_errors(reg=reg)["job_id"].tolist() == maps
    bt.submit_jobs(red, after=maps, reg=reg)
    assert bt.find_held(reg=reg)["job_id"].tolist() == red
    assert not bt.wait_for_jobs(reg=reg, timeout=60)  # ends: nothing can go on, not all done
    tab = bt.get_job_table(red, reg=reg)
    assert tab["reason"].tolist() == [DEPENDENCY] and tab["error"].isna().all()
    st = bt.get_status(reg=reg)
    assert (st.held, st.error, st.expired) == (1, 3, 0)
    assert bt.find_expired(reg=reg).empty and 4 not in bt.find_errors(reg=reg)["job_id"].tolist()
    # the reload sees the same
    again = bt.load_registry(reg.file_dir, make_default=False, conf_file=None)
    assert bt.find_held(reg=again)["job_id"].tolist() == red
    assert bt.get_job_table(red, reg=again)["reason"].tolist() == [DEPENDENCY]
    # a fix: resubmit the failed jobs; once they are done the reduce goes
    flag.unlink()
    bt.submit_jobs(maps[:2], reg=reg)
    bt.sync_registry(reg=reg)
    assert bt.find_held(reg=reg)["job_id"].tolist() == red  # job 3 failed still
    bt.submit_jobs(maps[2:], reg=reg)
    assert bt.get_job_table(red, reg=reg)["reason"].tolist() == [DEPENDENCY]
    assert bt.wait_for_jobs(reg=reg, timeout=60)
    assert bt.load_result(4, reg=reg) == 14
    assert bt.get_job_table(red, reg=reg)["reason"].isna().all()


def test_dependency_never_submitted_is_a_dependency_reason(reg):
    maps, red = chain(reg, 2)
    bt.submit_jobs(red, after=maps, reg=reg)
    assert not bt.wait_for_jobs(reg=reg, timeout=30)
    assert bt.get_job_table(red, reg=reg)["reason"].tolist() == [DEPENDENCY]
    bt.submit_jobs(maps, reg=reg)
    assert bt.wait_for_jobs(reg=reg, timeout=30)
    assert bt.load_result(3, reg=reg) == 5


def test_resubmitting_held_jobs_keeps_their_dependencies(reg, tmp_path):
    flag = tmp_path / "fail"
    flag.write_text("")
    maps, red = chain(reg, 2, flag=str(flag))
    bt.submit_jobs(red, after=maps, reg=reg)
    bt.submit_jobs(red, reg=reg)  # after=None: the stored dependencies still count
    assert bt.find_held(reg=reg)["job_id"].tolist() == red
    bt.submit_jobs(red, after=(), reg=reg)  # cleared: it runs (and fails: no results yet)
    assert bt.find_held(reg=reg).empty
    assert bt.find_errors(reg=reg)["job_id"].tolist() == red
    assert bt.get_job_table(red, reg=reg)["after"].tolist() == [None]


# ------------------------------------------------------------------ a killed master
def test_killed_master_between_map_and_reduce(tmp_path):
    path = tmp_path / "reg"
    code = f"""
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_dependencies import chain
        reg = bt.make_registry(file_dir={str(path)!r}, seed=1, conf_file=None)
        reg.cluster_functions = bt.make_cluster_functions_multicore(2)
        maps, red = chain(reg, 2, gate={str(tmp_path / "gate")!r})
        bt.submit_jobs(maps)
        bt.submit_jobs(red, after=maps)
        assert bt.find_held()["job_id"].tolist() == red
        open({str(tmp_path / "gate")!r}, "w").close()
        import time
        while len(bt.find_done()) < len(maps):
            time.sleep(0.05)
        print("loaded", flush=True)
        time.sleep(600)
    """
    proc = subprocess.Popen([sys.executable, "-c", "import sys, batchtools as bt\n" + textwrap.dedent(code)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout.readline().strip() == "loaded"
        family = psutil.Process(proc.pid).children(recursive=True)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        psutil.wait_procs(family, timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reg = bt.load_registry(path, writeable=True, make_default=False, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    assert bt.find_held(reg=reg)["job_id"].tolist() == [3]
    assert bt.find_done(reg=reg)["job_id"].tolist() == [1, 2]
    assert bt.find_expired(reg=reg).empty
    assert bt.wait_for_jobs(reg=reg, timeout=120)
    assert bt.load_result(3, reg=reg) == 5
    reg.cluster_functions.close()
    reg.lease.release()


# ------------------------------------------------------------------ refusals
def refused(reg, call, match):
    before_files, before_tables = snapshot(reg.file_dir), tables(reg)
    with pytest.raises(ValueError, match=match):
        call()
    same_tables(before_tables, tables(reg))
    assert snapshot(reg.file_dir) == before_files


def test_refusals_change_nothing(reg):
    chain(reg, 3)
    bt.submit_jobs(4, after=3, reg=reg)
    bt.submit_jobs(3, after=2, reg=reg)
    refused(reg, lambda: bt.submit_jobs(3, after=4, reg=reg), r"after: would make a cycle: job 3 would wait for job 4")
    refused(reg, lambda: bt.submit_jobs(2, after=4, reg=reg), r"cycle: job 2 would wait for job 4.*4 waits for 3 waits for 2")
    refused(reg, lambda: bt.submit_jobs([1, 2], after=[2], reg=reg), r"after: job\(s\) 2 would wait for themselves")
    refused(reg, lambda: bt.submit_jobs(1, after=[99], reg=reg), r"after: job id\(s\) 99 do not exist .*removed")
    refused(reg, lambda: bt.submit_workers(1, ids=[2], after=[4], reg=reg), r"after: would make a cycle")
    with pytest.raises(TypeError, match="after"):
        bt.submit_jobs(1, after="x", reg=reg)


def three_experiments(tmp_path):
    """An experiment registry (Interactive) with three jobs."""
    reg = bt.make_experiment_registry(file_dir=tmp_path / "ereg", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.add_problem("p", data=1, reg=reg)
    bt.add_algorithm("a", fun=lambda data, job, instance, k: k, reg=reg)
    bt.add_experiments(algo_designs={"a": pd.DataFrame({"k": [1, 2, 3]})}, reg=reg)
    return reg


def test_removed_dependency_refused(tmp_path):
    reg = three_experiments(tmp_path)
    bt.remove_experiments([2], reg=reg)
    refused(reg, lambda: bt.submit_jobs(3, after=[2], reg=reg), r"after: job id\(s\) 2 do not exist .*removed")


def test_refused_by_the_backend_stores_nothing(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "reg", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    chain(reg, 2)
    bt.submit_jobs([1, 2], reg=reg)
    reg.cluster_functions = bt.make_cluster_functions(
        "refusing", submit_job=lambda reg, jc: bt.make_submit_job_result(101, None, msg="no"))
    before_files, before_tables = snapshot(reg.file_dir), tables(reg)
    with pytest.raises(Exception, match="no"):
        bt.submit_jobs(3, after=[1, 2], reg=reg)  # ready: handed over, refused
    same_tables(before_tables, tables(reg))
    assert snapshot(reg.file_dir) == before_files
    again = bt.load_registry(reg.file_dir, make_default=False, conf_file=None)
    assert bt.get_job_table(3, reg=again)["after"].tolist() == [None]


# ------------------------------------------------------------------ storage
def test_dependencies_reload_and_stay_lean(reg):
    maps, red = chain(reg, 3)
    assert "after" not in bt.get_job_table(reg=reg).columns or bt.get_job_table(reg=reg)["after"].isna().all()
    from batchtools.core.persistence.tables import is_empty_view

    assert is_empty_view(reg.status["after"].to_numpy())  # unused: no per-job column
    bt.submit_jobs(red, after=maps, reg=reg)
    again = bt.load_registry(reg.file_dir, make_default=False, conf_file=None)
    tab = bt.get_job_table(reg=again)
    assert tab["after"].tolist() == [None, None, None, [1, 2, 3]]
    assert tab["held"].notna().tolist() == [False, False, False, True]
    assert bt.find_held(reg=again)["job_id"].tolist() == red
    assert bt.find_held([1, 4], reg=again)["job_id"].tolist() == red
    assert again.find_held()["job_id"].tolist() == red




# ------------------------------------------------------------------ a scheduler that enforces dependencies
def enforcing(cf):
    """A test double of a scheduler that enforces dependencies: Multicore ``cf``, except that a
    collection with ``after`` is kept pending (listed as queued, never run) until killed. Returns
    it, the collections it was handed and the pending ones."""
    handed, pending = [], {}

    def submit_job(reg, jc):
        handed.append(jc)
        if jc.after:
            bid = f"pending{len(handed)}"
            pending[bid] = jc
            return bt.make_submit_job_result(0, bid)
        return cf.submit_job(reg, jc)

    def list_jobs(reg):
        q, r = cf.list_jobs(reg)
        return set(q) | set(pending), set(r)

    def kill_job(reg, bid):
        if pending.pop(bid, None) is None:
            cf.kill_job(reg, bid)

    caps = dataclasses.replace(cf.capabilities, dependencies=True)
    return dataclasses.replace(cf, submit_job=submit_job, list_jobs=list_jobs, kill_job=kill_job,
                               capabilities=caps), handed, pending


def test_scheduler_holds_and_master_rescues(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "reg", seed=1, conf_file=None)
    multicore = bt.make_cluster_functions_multicore(3)
    reg.cluster_functions, handed, pending = enforcing(multicore)
    gate, flag = tmp_path / "gate", tmp_path / "fail"
    flag.write_text("")
    maps, red = chain(reg, 2, flag=str(flag), gate=str(gate))
    bt.submit_jobs(maps, reg=reg)
    batch = bt.get_job_table(maps, reg=reg)["batch_id"].tolist()
    bt.submit_jobs(red, after=maps, reg=reg)
    # handed over at once, waiting on the scheduler for the batch ids of its dependencies
    assert [j["job_id"] for j in handed[-1].jobs] == red and sorted(handed[-1].after) == sorted(batch)
    assert bt.find_held(reg=reg).empty and bt.find_queued(reg=reg)["job_id"].tolist() == red
    gate.write_text("")  # both maps run: they fail
    assert not bt.wait_for_jobs(reg=reg, timeout=120)
    # the dependant was killed on the scheduler and is held by the master
    assert not pending
    assert bt.find_held(reg=reg)["job_id"].tolist() == red
    assert bt.get_job_table(red, reg=reg)["reason"].tolist() == [DEPENDENCY]
    assert bt.find_expired(reg=reg).empty
    flag.unlink()
    bt.submit_jobs(maps, reg=reg)
    assert bt.wait_for_jobs(reg=reg, timeout=120)
    assert bt.load_result(3, reg=reg) == 5
    assert handed[-1].after == ()  # released with every dependency done: nothing to wait for
    multicore.close()


def test_scheduler_gets_no_after_for_held_dependencies(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "reg", seed=1, conf_file=None)
    multicore = bt.make_cluster_functions_multicore(3)
    reg.cluster_functions, handed, pending = enforcing(multicore)
    chain(reg, 3)
    bt.submit_jobs(1, reg=reg)
    bt.submit_jobs(2, after=[3], reg=reg)  # 3 never submitted: held
    bt.submit_jobs(4, after=[1, 2], reg=reg)  # 2 is held, not on the scheduler: held too
    assert bt.find_held(reg=reg)["job_id"].tolist() == [2, 4]
    assert not pending
    multicore.close()


# ------------------------------------------------------------------ defined before the inputs are done
def test_batch_map_results_defined_before_its_inputs(tmp_path):
    src = bt.make_registry(file_dir=tmp_path / "src", seed=1, conf_file=None, make_default=False)
    src.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(lambda x: x * 10, x=[1, 2], reg=src)
    target = bt.make_registry(file_dir=tmp_path / "target", seed=1, conf_file=None, make_default=False)
    target.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map_results(lambda r, k: r * k, [1, 2], k=[2, 3], target=target, reg=src)  # nothing read yet
    bt.submit_jobs(reg=src)
    bt.submit_jobs(reg=target)
    assert bt.reduce_results_list(reg=target) == [20, 60]


def test_batch_reduce_submitted_before_its_inputs(reg):
    bt.batch_reduce(lambda a, b: a + b, [1, 2, 3, 4], init=0, chunks=[1, 1, 2, 2], reg=reg)
    bt.submit_jobs(2, after=1, reg=reg)  # nothing is read when it is defined or held
    assert bt.find_held(reg=reg)["job_id"].tolist() == [2]
    bt.submit_jobs(1, reg=reg)
    assert bt.wait_for_jobs(reg=reg, timeout=60)
    assert bt.reduce_results_list(reg=reg) == [3, 7]


def test_removing_jobs_others_wait_for_is_refused(tmp_path):
    reg = three_experiments(tmp_path)
    bt.submit_jobs(3, after=[2], reg=reg)
    refused(reg, lambda: bt.remove_experiments([2], reg=reg), r"ids: jobs 3 wait for some of them")
    bt.remove_experiments([2, 3], reg=reg)  # with its dependant: fine
    assert bt.find_jobs(reg=reg)["job_id"].tolist() == [1]


def test_report_and_command_line_show_held_jobs(reg, tmp_path):
    maps, red = chain(reg, 2)
    bt.submit_jobs(red, after=maps, reg=reg)
    bt.report(path=tmp_path / "report.html", reg=reg)
    html = (tmp_path / "report.html").read_text()
    assert 'aria-label="held 1, not submitted 2"' in html and ".s-held" in html
    out = subprocess.run([sys.executable, "-m", "batchtools.cli", "status", str(reg.file_dir)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Held" in out.stdout
