"""Slurm enforces a collection's dependencies (``JobCollection.after``, issue 29): the sbatch
command it builds (against captured commands, no daemon), and the real thing (a single-node Slurm,
``BATCHTOOLS_TEST_SLURM=1``): a collection submitted with ``--dependency=afterok`` waits for
chunks and array tasks, starts once they succeeded, and never starts (``DependencyNeverSatisfied``)
once one failed."""

import os
import subprocess
import sys

import pytest

import batchtools as bt
import batchtools.backends.slurm as slurm_backend
from batchtools.backends.slurm import MAX_DEPENDENCY, DependencyRefused, dependency_value, pending_on_dependencies
from batchtools.core.persistence.files import write_pickle
from conftest import require_daemon, wait_until
from test_dependencies import step  # map: x squared once a gate file exists; reduce: a sum of results


def slurm_registry(tmp_path, jobs=3):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_slurm(scheduler_latency=0, fs_latency=5)
    bt.batch_map(lambda x: x, x=range(jobs), reg=reg)
    return reg


@pytest.fixture
def commands(monkeypatch):
    """Slurm's commands captured: ``squeue`` answers ``commands.squeue`` (lines, exit code), ``sbatch``
    accepts as job 4711."""

    class Commands:
        calls: list = []
        squeue = ([], 0)

    def run(cmd, args=(), stdin="", nodename="localhost", timeout=None, env=None):
        Commands.calls.append([cmd, *map(str, args)])
        if cmd == "squeue":
            lines, code = Commands.squeue
            return {"exit_code": code, "output": list(lines)}
        if cmd == "sbatch":
            return {"exit_code": 0, "output": ["Submitted batch job 4711"]}
        raise AssertionError(f"unexpected command {cmd}")

    Commands.calls = []
    monkeypatch.setattr(slurm_backend, "run_os_command", run)
    return Commands


def submit(reg, after, ids=(1,), resources=None):
    jc = bt.make_job_collection(list(ids), resources=resources, reg=reg)
    jc.after = tuple(after)
    return reg.cluster_functions.submit_job(reg, jc), jc


def test_the_capability_is_declared_by_slurm_only():
    assert bt.make_cluster_functions_slurm().capabilities.dependencies
    for name in ("torque", "pbspro", "sge", "lsf", "multicore", "interactive"):
        assert not getattr(bt, f"make_cluster_functions_{name}")().capabilities.dependencies, name


def test_without_after_the_sbatch_command_is_as_before(tmp_path, commands):
    reg = slurm_registry(tmp_path)
    res, jc = submit(reg, ())
    assert res.status == 0 and res.batch_id == "4711"
    assert commands.calls == [["sbatch", str(reg.layout.script(jc.job_hash))]]


def test_after_becomes_afterok_on_the_sbatch_command_line(tmp_path, commands):
    reg = slurm_registry(tmp_path)
    commands.squeue = (["11|RUNNING|None", "12_1|PENDING|Resources", "12_2|PENDING|Resources",
                        "13_1|PENDING|Priority", "13_2|RUNNING|None", "14|COMPLETED|None"], 0)
    # a chunk; every task of array 12; one task of array 13; a completed job; twice 11
    res, jc = submit(reg, ["11", "12_1", "12_2", "13_1", "14", "11"])
    assert res.status == 0
    squeue, sbatch = commands.calls
    assert squeue[0] == "squeue" and "--states=all" in squeue and "-r" in squeue
    assert sbatch == ["sbatch", "--dependency=afterok:11:12_1:12_2:13_1", "--kill-on-invalid-dep=no",
                      str(reg.layout.script(jc.job_hash))]
    commands.calls.clear()
    res, jc = submit(reg, ["14"])  # nothing left to wait for: no option at all
    assert commands.calls == [["sbatch", str(reg.layout.script(jc.job_hash))]]  # the listing of a moment ago
    commands.calls.clear()
    commands.squeue = (commands.squeue[0] + ["15|PENDING|None"], 0)
    res, jc = submit(reg, ["15"])  # submitted since that listing: Slurm is asked again
    assert [c[0] for c in commands.calls] == ["squeue", "sbatch"] and "--dependency=afterok:15" in commands.calls[1]


def test_arrays_become_their_id_only_when_the_list_is_too_long_and_no_task_ended():
    """Slurm's array record keeps the highest exit code of its tasks: afterok on the whole array never
    holds once a task failed (seen here: it stays DependencyNeverSatisfied after that task is forgotten),
    so an array's id replaces its tasks only where the list would not fit, and only if none ended."""
    known = {"12_1": ("PENDING", "None"), "12_2": ("RUNNING", "None"), "12_3": ("FAILED", "None"),
             "13_1": ("PENDING", "None"), "13_2": ("RUNNING", "None"), "14_1": ("RUNNING", "None"),
             "14_2": ("COMPLETED", "None")}
    assert dependency_value(["13_1", "13_2"], known) == "afterok:13_1:13_2"  # fits: the tasks themselves
    assert dependency_value(["13_1", "13_2"], known, limit=15) == "afterok:13"
    # 12_3 failed (its job was resubmitted elsewhere), 14_2 ended: their arrays stay tasks, and do not fit
    for ids in (["12_1", "12_2"], ["14_1"]):
        with pytest.raises(DependencyRefused, match="at most 10 characters"):
            dependency_value(ids, known, limit=10)


def test_a_dependency_slurm_cannot_enforce_is_refused_and_nothing_submitted(tmp_path, commands):
    reg = slurm_registry(tmp_path)
    commands.squeue = (["11|FAILED|NonZeroExitCode", "12|RUNNING|None"], 0)
    res, _ = submit(reg, ["12", "11"])
    assert res.status == 101 and "11 (FAILED: the collection could never start)" in res.msg
    res, _ = submit(reg, ["12", "99"])  # Slurm would take a job it forgot as satisfied
    assert res.status == 101 and "99 (not known to Slurm any more" in res.msg
    assert [c[0] for c in commands.calls] == ["squeue", "squeue"]
    with pytest.raises(bt.SubmitError, match="sync the registry"):  # permanent: submit_jobs raises it
        submit_once_after(reg, ["11"])
    commands.squeue = (["slurm_load_jobs error: Unable to contact slurm controller (connect failure)"], 1)
    res, _ = submit(reg, ["16"])  # not in the listing of a moment ago: asked, and squeue fails for now
    assert res.status == 1 and "Unable to contact slurm controller" in res.msg  # tried again


def submit_once_after(reg, after):
    from batchtools.core.submission import submit_once

    jc = bt.make_job_collection([1], reg=reg)
    jc.after = tuple(after)
    return submit_once(reg, jc)


def test_the_dependency_stays_within_slurms_limit():
    many = {str(100000 + i): ("PENDING", "None") for i in range(20000)}
    with pytest.raises(DependencyRefused, match="chunks_as_arrayjobs"):
        dependency_value(list(many), many)
    assert len("afterok:" + ":".join(list(many)[:18000])) < MAX_DEPENDENCY  # what fits goes through
    assert dependency_value(list(many)[:18000], many).count(":") == 18000
    # 20,000 tasks of one array: the array's id
    tasks = {f"777_{i}": ("PENDING", "None") for i in range(1, 20001)}
    assert dependency_value(list(tasks), tasks) == "afterok:777"


def test_a_backend_without_the_capability_refuses_after_rather_than_drop_it(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_torque()
    bt.batch_map(lambda x: x, x=[1], reg=reg)
    jc = bt.make_job_collection([1], reg=reg)
    jc.after = ("123",)
    with pytest.raises(ValueError, match=r"does not declare Capabilities\(dependencies=True\)"):
        bt.cf_brew_template(reg, bt.cf_read_brew_template("torque"), jc)
    jc.after = ()
    assert os.path.exists(bt.cf_brew_template(reg, bt.cf_read_brew_template("torque"), jc))


def test_pending_on_dependencies_names_this_registrys_jobs_with_their_reason(tmp_path, commands):
    reg = slurm_registry(tmp_path)
    st = reg.status
    st.loc[st["job_id"] == 1, "batch_id"] = "21"
    st.loc[st["job_id"] == 2, "batch_id"] = "22_1"
    st.loc[st["job_id"] == 3, "batch_id"] = "23"
    commands.squeue = (["21|PENDING|Dependency", "22_1|PENDING|DependencyNeverSatisfied", "23|PENDING|Priority",
                        "24|PENDING|Dependency"], 0)  # 24: not this registry's
    assert pending_on_dependencies(reg) == {"21": "Dependency", "22_1": "DependencyNeverSatisfied"}


@pytest.mark.parametrize("under_slurm", [True, False])
def test_a_failed_job_fails_its_slurm_job(tmp_path, under_slurm):
    """afterok reads the exit code: under Slurm a collection with a failed job exits 1, elsewhere 0."""
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_slurm()

    def f(x):
        if x == 2:
            raise ValueError("two")
        return x

    bt.batch_map(f, x=[1, 2], reg=reg)
    codes = []
    for ids in ([1], [1, 2]):
        jc = bt.make_job_collection(ids, reg=reg)
        write_pickle(reg.layout.job_collection(jc.job_hash), jc)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        if under_slurm:
            env["SLURM_JOB_ID"] = "4711"
        codes.append(subprocess.run([sys.executable, "-m", "batchtools.worker", jc.uri], env=env,
                                    capture_output=True, timeout=120).returncode)
    assert codes == ([0, 1] if under_slurm else [0, 0])


# -- against the real Slurm ------------------------------------------------------------------------

def slurm_problem():
    from test_slurm import slurm_problem as problem

    return problem()


@pytest.fixture
def real(tmp_path):
    require_daemon(slurm_problem(), "BATCHTOOLS_TEST_SLURM")
    reg = bt.make_registry(file_dir=tmp_path / "sr", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_slurm(scheduler_latency=0, fs_latency=5)
    submitted = []
    yield reg, submitted
    for b in submitted:  # only what this test submitted
        subprocess.run(["scancel", b], capture_output=True)


def wait_for_file(path, fail=False):
    import os
    import time

    while not os.path.exists(path):
        time.sleep(0.1)
    if fail:
        raise RuntimeError("failed on purpose")
    return path


def hand_over(reg, submitted, ids, after=(), resources=None):
    """A collection of ``ids`` handed to the Slurm backend as submit_jobs does (its file written first)."""
    jc = bt.make_job_collection(list(ids), resources={"walltime": 300, **(resources or {})}, reg=reg)
    jc.after = tuple(after)
    write_pickle(reg.layout.job_collection(jc.job_hash), jc)
    res = reg.cluster_functions.submit_job(reg, jc)
    assert res.status == 0, res.msg
    ids = res.batch_id if isinstance(res.batch_id, list) else [res.batch_id]
    submitted.extend(ids)
    return ids


def squeue(batch_id) -> tuple[str, str, str]:
    """(state, reason, dependency) of one Slurm job as squeue shows it ("" if gone)."""
    out = subprocess.run(["squeue", "-h", "-r", "--states=all", "-j", batch_id, "-o", "%T|%r|%E"],
                         capture_output=True, text=True).stdout.split()
    return tuple(out[0].split("|")) if out else ("", "", "")


def state(batch_id) -> str:
    return squeue(batch_id)[0]


def test_real_slurm_b_waits_for_chunk_a_then_runs(real, tmp_path):
    reg, submitted = real
    go = tmp_path / "go"
    bt.batch_map(wait_for_file, path=[str(go), str(go), str(tmp_path)], reg=reg)
    (a,) = hand_over(reg, submitted, [1, 2])  # a chunk of two jobs
    (b,) = hand_over(reg, submitted, [3], after=(a,))
    assert squeue(b)[2] == f"afterok:{a}(unfulfilled)"
    wait_until(lambda: state(a) == "RUNNING", 120, "A runs")
    wait_until(lambda: squeue(b)[:2] == ("PENDING", "Dependency"), 60, "B pending on its dependency")
    assert state(a) == "RUNNING"
    queued, running = reg.cluster_functions.list_jobs(reg)
    assert b in queued and a in running  # on the system: never expired
    reg.status.loc[reg.status["job_id"] == 3, "batch_id"] = b
    assert pending_on_dependencies(reg) == {b: "Dependency"}
    go.touch()
    wait_until(lambda: state(b) == "COMPLETED", 120, "B ran")
    assert state(a) == "COMPLETED"
    reg.sync()
    assert sorted(bt.find_done(reg=reg)["job_id"]) == [1, 2, 3]


def test_real_slurm_b_waits_for_one_array_task_or_the_whole_array(real, tmp_path):
    reg, submitted = real
    files = [tmp_path / "go1", tmp_path / "go2"]  # two tasks: this Slurm's node has two CPUs
    bt.batch_map(wait_for_file, path=[*map(str, files), str(tmp_path), str(tmp_path)], reg=reg)
    tasks = hand_over(reg, submitted, [1, 2], resources={"chunks_as_arrayjobs": True})
    array = tasks[0].split("_")[0]
    assert tasks == [f"{array}_1", f"{array}_2"]  # the status table's batch ids of an array's tasks
    (one,) = hand_over(reg, submitted, [3], after=(tasks[1],))
    (whole,) = hand_over(reg, submitted, [4], after=tasks)
    assert squeue(one)[2] == f"afterok:{array}_2(unfulfilled)"
    assert squeue(whole)[2] == f"afterok:{array}_1(unfulfilled),afterok:{array}_2(unfulfilled)"
    files[1].touch()
    wait_until(lambda: state(one) == "COMPLETED", 120, "B after task 2 ran")
    assert squeue(whole)[:2] == ("PENDING", "Dependency")
    files[0].touch()
    wait_until(lambda: state(whole) == "COMPLETED", 120, "B after the whole array ran")


def test_real_slurm_a_failed_dependency_is_never_satisfied_and_b_can_be_killed(real, tmp_path):
    reg, submitted = real
    go = tmp_path / "go"
    bt.batch_map(wait_for_file, path=[str(go), str(tmp_path)], fail=[True, False], reg=reg)
    (a,) = hand_over(reg, submitted, [1])
    (b,) = hand_over(reg, submitted, [2], after=(a,))
    go.touch()
    wait_until(lambda: state(a) == "FAILED", 120, "A failed (its job raised: the node exits 1)")
    # --kill-on-invalid-dep=no: B stays, whatever the site's DependencyParameters, until the master cancels it
    wait_until(lambda: squeue(b)[:2] == ("PENDING", "DependencyNeverSatisfied"), 60, "B never satisfied")
    assert squeue(b)[2] == f"afterok:{a}(failed)"
    queued, _ = reg.cluster_functions.list_jobs(reg)
    assert b in queued  # on the system, not expired: the master decides
    # a collection handed over now, after a failed job, is refused (it could never start); a fresh backend,
    # as this one reuses its listing of a few seconds ago, where A still ran (B would wait like the first)
    jc = bt.make_job_collection([2], reg=reg)
    jc.after = (a,)
    res = bt.make_cluster_functions_slurm().submit_job(reg, jc)
    assert res.status == 101 and f"{a} (FAILED" in res.msg
    reg.cluster_functions.kill_job(reg, b)
    wait_until(lambda: state(b) in ("CANCELLED", ""), 60, "B cancelled")
    assert b not in reg.cluster_functions.list_jobs(reg)[0]


def test_real_slurm_chain_submitted_at_once_waits_in_slurm_not_in_the_master(real, tmp_path):
    """Issue 29's acceptance on the real Slurm: a map -> reduce chain submitted at once through
    ``submit_jobs(after=)``; Slurm holds the reduce (squeue shows its dependency on the map's
    scheduler jobs) and starts it once they ended, with no master polling; the chain ends done."""
    reg, submitted = real
    gate = tmp_path / "go"
    bt.batch_map(step, kind=["map", "map", "reduce"], x=[1, 2, 2], more_args={"gate": str(gate)}, reg=reg)
    bt.submit_jobs([1, 2], resources={"walltime": 300}, reg=reg)
    bt.submit_jobs([3], after=[1, 2], resources={"walltime": 300}, reg=reg)
    batch = bt.get_job_table(reg=reg)["batch_id"].tolist()
    submitted.extend(batch)
    assert bt.find_held(reg=reg).empty  # held by Slurm, not by the master
    dependency = squeue(batch[2])[2]
    assert all(f"afterok:{b}" in dependency for b in batch[:2]), dependency
    wait_until(lambda: squeue(batch[2])[:2] == ("PENDING", "Dependency"), 60, "the reduce pending on its dependency")
    gate.touch()
    wait_until(lambda: state(batch[2]) == "COMPLETED", 180, "Slurm ran the reduce after the map")
    assert bt.wait_for_jobs(reg=reg, timeout=120)
    assert bt.load_result(3, reg=reg) == 1 + 4


def test_real_slurm_a_failed_map_holds_the_reduce_and_a_fix_releases_it(real, tmp_path):
    """The map fails: Slurm would hold the reduce forever (DependencyNeverSatisfied); the master
    cancels it and holds it with the reason ``dependency`` (not an error, not expired); the map
    resubmitted and done releases it."""
    reg, submitted = real
    gate, flag = tmp_path / "go", tmp_path / "fail"
    gate.touch()
    flag.touch()
    bt.batch_map(step, kind=["map", "reduce"], x=[3, 1], more_args={"gate": str(gate), "flag": str(flag)}, reg=reg)
    bt.submit_jobs([1], resources={"walltime": 300}, reg=reg)
    bt.submit_jobs([2], after=[1], resources={"walltime": 300}, reg=reg)
    submitted.extend(bt.get_job_table(reg=reg)["batch_id"].tolist())
    assert not bt.wait_for_jobs(reg=reg, timeout=180)
    assert bt.find_errors(reg=reg)["job_id"].tolist() == [1]
    assert bt.find_held(reg=reg)["job_id"].tolist() == [2] and bt.find_expired(reg=reg).empty
    assert bt.get_job_table(2, reg=reg)["reason"].tolist() == ["dependency"]
    flag.unlink()
    bt.submit_jobs([1], resources={"walltime": 300}, reg=reg)
    submitted.extend(bt.get_job_table(reg=reg)["batch_id"].dropna().tolist())
    assert bt.wait_for_jobs(reg=reg, timeout=180)
    assert bt.load_result(2, reg=reg) == 9
