"""Backends for schedulers that cannot run here (TORQUE, PBS Pro, SGE, LSF, OpenLava, Docker), and
Slurm's error paths, against fake commands replaying the real tools' output formats
(tests/fakes/fake_scheduler.py). Real Slurm is tested in test_slurm.py."""

import os

import pytest

import batchtools as bt
from batchtools.backends import template_names
from conftest import countdown


def make(tmp_path, cf):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    cf.scheduler_latency = 0
    cf.fs_latency = 0
    cf.poll = cf.poll_max = 0.05
    reg.cluster_functions = cf
    return reg


# the schedulers the fake commands replay (every one with a shipped template): name -> its kill command
KILL = {"torque": "qdel", "pbspro": "qdel", "sge": "qdel", "lsf": "bkill", "openlava": "bkill", "slurm": "scancel"}
BACKENDS = {name: getattr(bt, f"make_cluster_functions_{name}") for name in template_names()}


def test_every_scheduler_with_a_template_is_replayed_here():
    assert sorted(KILL) == sorted(BACKENDS)


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_backend_end_to_end_with_fake_commands(fake, tmp_path, name):
    reg = make(tmp_path, BACKENDS[name]())
    bt.batch_map(lambda x: x * 3, x=[1, 2, 3])
    out = bt.submit_jobs(resources={"walltime": 120, "memory": 512})
    assert len(out) == 3
    assert bt.wait_for_jobs()
    assert bt.reduce_results_list() == [3, 6, 9]
    assert bt.get_job_status()["batch_id"].str.match(r"^\d+").all()
    script = (reg.layout.dir("jobs") / (bt.get_job_status()["job_hash"][0] + ".sh")).read_text()
    assert "batchtools.worker" in script


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_backend_lists_and_kills(fake, tmp_path, name):
    make(tmp_path, BACKENDS[name]())
    bt.batch_map(lambda x: x, x=[1, 2])
    fake.hold()
    bt.submit_jobs()
    assert bt.find_queued()["job_id"].tolist() == [1, 2]
    assert bt.get_status().queued == 2
    killed = bt.kill_jobs([1])
    assert killed["killed"].tolist() == [True]
    assert bt.find_on_system()["job_id"].tolist() == [2]
    assert any(c[0] == KILL[name] for c in fake.calls())


def test_torque_array_jobs(fake, tmp_path):
    make(tmp_path, bt.make_cluster_functions_torque())
    bt.batch_map(lambda x: x + 100, x=[1, 2, 3])
    ids = bt.find_jobs()
    ids["chunk"] = 1
    bt.submit_jobs(ids, resources={"chunks_as_arrayjobs": True})
    assert bt.wait_for_jobs()
    assert bt.reduce_results_list() == [101, 102, 103]
    assert bt.get_job_status()["batch_id"].tolist() == [f"{4711}[{i}].torque.example.org" for i in (1, 2, 3)]


def test_pbspro_array_jobs_use_J_and_subjob_ids(fake, tmp_path):
    reg = make(tmp_path, bt.make_cluster_functions_pbspro())
    bt.batch_map(lambda x: (x + 100, os.environ["PBS_ARRAY_INDEX"]), x=[1, 2, 3])
    bt.submit_jobs(bt.find_jobs().assign(chunk=1), resources={"chunks_as_arrayjobs": True, "max_concurrent_jobs": 2,
                                                              "walltime": 60, "memory": 256, "ncpus": 2})
    assert bt.wait_for_jobs()
    assert bt.reduce_results_list() == [(101, "1"), (102, "2"), (103, "3")]
    st = bt.get_job_status()
    assert st["batch_id"].tolist() == [f"4711[{i}].pbs.example.org" for i in (1, 2, 3)]
    script = (reg.layout.dir("jobs") / (st["job_hash"][0] + ".sh")).read_text()
    assert "#PBS -J 1-3\n" in script and "#PBS -W max_run_subjobs=2" in script
    assert "#PBS -l select=1:ncpus=2:mem=256mb" in script and "#PBS -l walltime=60" in script
    assert "#PBS -t" not in script  # -t is TORQUE's array option
    assert "### [bt]: Starting job [batchtools job.id=3]" in bt.get_log(3)
    assert reg.status["restart"].tolist() == [0, 0, 0]  # run_count 1: the first run


def test_pbspro_array_of_one_is_an_ordinary_job(fake, tmp_path):
    reg = make(tmp_path, bt.make_cluster_functions_pbspro())
    bt.batch_map(lambda x: (x, os.environ.get("PBS_ARRAY_INDEX")), x=[5])
    bt.submit_jobs(resources={"chunks_as_arrayjobs": True})
    assert bt.wait_for_jobs()
    assert bt.load_result(1) == (5, "1")
    st = bt.get_job_status()
    assert st["batch_id"].tolist() == ["4711.pbs.example.org"]
    assert "#PBS -J" not in (reg.layout.dir("jobs") / (st["job_hash"][0] + ".sh")).read_text()


def test_pbspro_lists_subjobs_of_its_user_and_kills_one(fake, tmp_path):
    make(tmp_path, bt.make_cluster_functions_pbspro())
    bt.batch_map(lambda x: x, x=[1, 2, 3])
    fake.hold()
    bt.submit_jobs(bt.find_jobs().assign(chunk=1), resources={"chunks_as_arrayjobs": True})
    listed = bt.get_job_status()["batch_id"].tolist()
    assert bt.find_queued()["job_id"].tolist() == [1, 2, 3]  # the other user's running job is not ours
    assert bt.kill_jobs([2])["killed"].tolist() == [True]
    assert ["qdel", listed[1]] in fake.calls()
    assert bt.find_on_system()["job_id"].tolist() == [1, 3]
    assert ["qstat", "-f", "-F", "json", "-t"] in fake.calls()


def test_pbspro_listing_parses_real_qstat_json():
    """The JSON of ``qstat -f -F json -t`` (PBS Pro 2022): arrays ``B`` with subjobs, ``X`` for a
    finished subjob, another user's job, a control character PBS copies from the environment."""
    from batchtools.backends.pbspro import parse_qstat_json

    text = """qstat: a warning on stderr
{
    "timestamp":1733500000,
    "pbs_version":"2022.1.3",
    "pbs_server":"pbs01",
    "Jobs":{
        "120[].pbs01":{"Job_Name":"bt","Job_Owner":"ann@login1","job_state":"B","array":"True",
            "array_state_count":"Queued:1 Running:1 Exiting:0 Expired:1 ","array_indices_submitted":"1-3",
            "array_indices_remaining":"3"},
        "120[1].pbs01":{"Job_Owner":"ann@login1","job_state":"X","array_index":1},
        "120[2].pbs01":{"Job_Owner":"ann@login1","job_state":"R","array_index":2,"run_count":1},
        "120[3].pbs01":{"Job_Owner":"ann@login1","job_state":"Q","array_index":3},
        "121.pbs01":{"Job_Owner":"ann@login1","job_state":"H","Variable_List":{"X":"a	b"}},
        "122.pbs01":{"Job_Owner":"ann@login1","job_state":"E"},
        "123.pbs01":{"Job_Owner":"bob@login1","job_state":"R"}
    }
}"""
    assert parse_qstat_json(text, "ann") == (["120[3].pbs01", "121.pbs01"], ["120[2].pbs01", "122.pbs01"])
    assert parse_qstat_json('{"timestamp":1,"pbs_version":"2022.1.3","pbs_server":"pbs01"}', "ann") == ([], [])
    with pytest.raises(ValueError, match="no JSON"):
        parse_qstat_json("qstat: cannot connect to server pbs01 (errno=111)", "ann")


def test_pbspro_job_requeues_itself_with_qrerun_and_goes_on(fake, tmp_path):
    """The node half: a job stopped before its walltime requeues its PBS job (qrerun); PBS runs it
    again (run_count 2), and the run goes on from the checkpoint with the same batch id."""
    reg = make(tmp_path, bt.make_cluster_functions_pbspro())
    bt.batch_map(countdown, n=[14])  # 3.5 s of work; the node stops it 1 s before its 3 s walltime
    bt.submit_jobs(resources={"walltime": 3, "checkpoint_warning": 1})
    assert bt.wait_for_jobs(timeout=120)
    assert bt.load_result(1) == 14  # in runs of at most 2 s (3.5 s of work): each went on from the checkpoint
    trace = bt.get_job_attempts()
    n = len(trace)  # two runs, or three on a busy machine (each run has 2 s before the warning)
    assert n >= 2 and trace["reason"].tolist() == ["requeued"] * (n - 1) + [None]
    assert set(trace["batch_id"]) == {"4711.pbs.example.org"}  # the same PBS job, rerun
    assert reg.status["restart"].tolist() == [n - 1]  # from run_count: n on the last run
    assert any(c[0] == "qrerun" and c[1] == "4711.pbs.example.org" for c in fake.calls())
    log = reg.layout.log_named(bt.get_job_status()["log_file"][0]).read_text()  # the runs append to one log
    assert log.count("### [bt]: Requeued PBS job 4711.pbs.example.org: the next run goes on from the checkpoint") \
        == n - 1
    assert not reg.layout.checkpoint(1).exists()


def test_pbspro_job_of_a_user_without_operator_privilege_leaves_the_resubmission_to_the_master(
        fake, tmp_path, monkeypatch):
    """qrerun needs PBS Operator privilege: without it the node does not try, the run reports
    checkpointed, the master resubmits it (a new PBS job), and it goes on from the checkpoint."""
    monkeypatch.setenv("FAKE_PBS_NOT_OPERATOR", "1")
    make(tmp_path, bt.make_cluster_functions_pbspro())
    bt.batch_map(countdown, n=[14])
    bt.submit_jobs(resources={"walltime": 3, "checkpoint_warning": 1})
    assert bt.wait_for_jobs(timeout=120)
    assert bt.load_result(1) == 14
    trace = bt.get_job_attempts()
    n = len(trace)
    assert n >= 2 and trace["reason"].tolist() == ["checkpointed"] * (n - 1) + [None]
    assert trace["batch_id"].tolist() == [f"{4711 + k}.pbs.example.org" for k in range(n)]  # new PBS jobs
    assert not any(c[0] == "qrerun" for c in fake.calls())


def test_pbspro_splits_arrays_over_the_servers_max_array_size(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MAX_ARRAY_SIZE", "3")
    make(tmp_path, bt.make_cluster_functions_pbspro())
    bt.batch_map(lambda x: x * x, x=range(1, 8))
    bt.submit_jobs(bt.find_jobs().assign(chunk=1), resources={"chunks_as_arrayjobs": True})
    assert bt.wait_for_jobs()
    assert bt.reduce_results_list() == [x * x for x in range(1, 8)]
    assert bt.get_job_status()["batch_id"].tolist() == [
        *(f"4711[{i}].pbs.example.org" for i in (1, 2, 3)), *(f"4712[{i}].pbs.example.org" for i in (1, 2, 3)),
        "4713.pbs.example.org"]  # the last part, one job, is an ordinary job


def test_node_environment_is_chosen_by_backend_and_scheduler_variables(monkeypatch):
    """The node half comes from the collection's backend, and only under its scheduler: a Slurm
    variable in the environment of a Multicore node (a master inside an allocation) is ignored."""
    from batchtools.backends.pbspro import PBSProEnvironment
    from batchtools.backends.slurm import SlurmEnvironment
    from batchtools.node.environment import NodeEnvironment, environment_of

    slurm = bt.make_cluster_functions_slurm().node_environment_ref
    assert slurm == "batchtools.backends.slurm:SlurmEnvironment"
    assert bt.make_cluster_functions_multicore(1).node_environment_ref is None
    for var in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT", "PBS_JOBID"):
        monkeypatch.delenv(var, raising=False)
    assert type(environment_of(slurm)) is NodeEnvironment  # not under Slurm: the plain default
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    env = environment_of(slurm)
    assert isinstance(env, SlurmEnvironment) and (env.job_id, env.restart_count, env.can_requeue) == ("77", 2, True)
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "70")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    assert (env.job_id, env.array_index) == ("70_7", 7)
    plain = environment_of(None, "SLURM_ARRAY_TASK_ID")  # a Multicore node inside a Slurm job
    assert (plain.job_id, plain.restart_count, plain.can_requeue) == (None, 0, False)
    assert type(environment_of(PBSProEnvironment.__module__ + ":PBSProEnvironment")) is NodeEnvironment
    with pytest.raises(TypeError, match="node_environment"):
        bt.make_cluster_functions("X", lambda r, jc: None, node_environment=lambda: None)


def test_a_node_half_that_cannot_be_loaded_falls_back_to_the_plain_default(capsys):
    from batchtools.node.environment import NodeEnvironment, environment_of

    env = environment_of("no_such_module_here:Env", "MY_TASK")
    assert type(env) is NodeEnvironment and env.array_var == "MY_TASK"
    assert "cannot be loaded" in capsys.readouterr().out


def test_sge_and_lsf_refuse_arrays(fake, tmp_path):
    for cf in (bt.make_cluster_functions_sge(), bt.make_cluster_functions_lsf()):
        reg = make(tmp_path, cf)
        bt.batch_map(lambda x: x, x=[1, 2])
        with pytest.raises(ValueError, match="not supported"):
            bt.submit_jobs(bt.find_jobs().assign(chunk=1), resources={"chunks_as_arrayjobs": True})
        bt.remove_registry(reg=reg)


def test_docker(fake, tmp_path):
    make(tmp_path, bt.make_cluster_functions_docker("python:3.11", image_args=["-v", "/data:/data"]))
    bt.batch_map(lambda x: -x, x=[1, 2])
    with pytest.raises(ValueError, match="ncpus"):
        bt.submit_jobs()
    bt.submit_jobs(resources={"ncpus": 1, "memory": 256, "walltime": 60})
    assert bt.wait_for_jobs()
    assert bt.reduce_results_list() == [-1, -2]
    run = next(c for c in fake.calls() if c[0] == "docker" and "run" in c)
    assert "--label" in run and "timeout" in run and "-m" in run and "256m" in run
    assert bt.get_job_status()["batch_id"].str.len().eq(12).all()


def test_slurm_temporary_errors_are_retried(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_SCHED_FAIL", "1:sbatch: error: QOSMaxSubmitJobPerUserLimit")
    monkeypatch.setenv("FAKE_SCHED_FAIL_TIMES", "2")
    make(tmp_path, bt.make_cluster_functions_slurm())
    bt.batch_map(lambda x: x, x=[1])
    bt.submit_jobs(sleep=0)
    assert sum(c[0] == "sbatch" for c in fake.calls()) == 3
    assert bt.wait_for_jobs()


def test_slurm_unknown_error_reports_output_and_keeps_submitted(fake, tmp_path, monkeypatch):
    make(tmp_path, bt.make_cluster_functions_slurm())
    bt.batch_map(lambda x: x, x=[1, 2, 3])
    bt.submit_jobs([1])
    monkeypatch.setenv("FAKE_SCHED_FAIL", "1:sbatch: error: invalid partition specified: gpu")
    with pytest.raises(bt.SubmitError, match="invalid partition"):
        bt.submit_jobs()
    monkeypatch.delenv("FAKE_SCHED_FAIL")
    # calling again submits only what is left: nothing twice
    assert bt.submit_jobs()["job_id"].tolist() == [2, 3]
    assert sum(c[0] == "sbatch" for c in fake.calls()) == 4
    assert bt.wait_for_jobs()


def test_slurm_splits_arrays_over_max_array_size(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_MAX_ARRAY_SIZE", "4")  # indices 1..3 allowed
    reg = make(tmp_path, bt.make_cluster_functions_slurm())
    bt.batch_map(lambda x: x * x, x=range(1, 8))
    bt.submit_jobs(bt.find_jobs().assign(chunk=1), resources={"chunks_as_arrayjobs": True, "max_concurrent_jobs": 2})
    assert bt.wait_for_jobs()
    assert bt.reduce_results_list() == [x * x for x in range(1, 8)]
    st = bt.get_job_status()
    assert st["job_hash"].nunique() == 3
    assert st["batch_id"].tolist() == ["4711_1", "4711_2", "4711_3", "4712_1", "4712_2", "4712_3", "4713_1"]
    script = (reg.layout.dir("jobs") / (st["job_hash"][0] + ".sh")).read_text()
    assert "#SBATCH --array=1-3%2" in script
    assert "### [bt]: Starting job [batchtools job.id=6]" in bt.get_log(6)


def test_max_concurrent_jobs_throttles(fake, tmp_path):
    reg = make(tmp_path, bt.make_cluster_functions_slurm())
    reg.max_concurrent_jobs = 2
    bt.batch_map(lambda x: x, x=[1, 2, 3])
    fake.hold()
    with pytest.raises(TimeoutError):
        import signal

        def stop(*_):
            raise TimeoutError

        signal.signal(signal.SIGALRM, stop)
        signal.setitimer(signal.ITIMER_REAL, 3.0)  # the fake commands are slow on a busy machine
        try:
            bt.submit_jobs(sleep=0.05)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    assert sum(c[0] == "sbatch" for c in fake.calls()) == 2  # the third waits for a free slot
    assert bt.find_submitted()["job_id"].tolist() == [1, 2]  # what was submitted is recorded


def test_hooks(fake, tmp_path):
    seen = []
    cf = bt.make_cluster_functions_slurm()
    cf.hooks = {"pre_submit": lambda reg: seen.append("pre_submit"),
                "post_submit": lambda reg: seen.append("post_submit"),
                "pre_sync": lambda reg: seen.append("pre_sync"),
                "post_sync": lambda reg: seen.append("post_sync"),
                "pre_do_collection": lambda jc: print("PRE-DO", jc.job_hash),
                "post_do_collection": lambda jc: print("POST-DO")}
    reg = make(tmp_path, cf)
    bt.batch_map(lambda x: x, x=[1])
    bt.submit_jobs()
    bt.sync_registry()
    # the sync hooks run around every sync, the internal ones of submit_jobs included (as in R)
    assert seen == ["pre_sync", "post_sync", "pre_submit", "pre_sync", "post_sync", "post_submit",
                    "pre_sync", "post_sync"]
    log = (reg.layout.dir("logs") / bt.get_job_status()["log_file"][0]).read_text()
    assert "PRE-DO job" in log and "POST-DO" in log
    with pytest.raises(ValueError, match="unknown hook"):
        bt.make_cluster_functions("X", lambda r, jc: None, hooks={"pre_everything": print})


def test_late_update_is_not_expired_before_fs_latency(tmp_path):
    """On NFS a result can appear after the job left the queue: no false 'expired'."""
    import pickle
    import threading
    import time

    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)

    def submit(r, jc):
        def finish_late():  # the job is gone from the "scheduler" at once; its update lands 1.5 s later
            time.sleep(1.5)
            bt.do_job_collection(jc, output=jc.log_file)

        threading.Thread(target=finish_late, daemon=True).start()
        return bt.make_submit_job_result(0, "gone-1")

    reg.cluster_functions = bt.make_cluster_functions("Laggy", submit, list_jobs_running=lambda r: [],
                                                      fs_latency=3, poll=0.1, poll_max=0.1)
    bt.batch_map(lambda x: x, x=[7])
    bt.submit_jobs()
    assert bt.wait_for_jobs(expire_after=1) is True
    assert bt.find_expired().empty and bt.load_result(1) == 7
    del pickle
