"""Backends for schedulers that cannot run here (TORQUE, SGE, LSF, OpenLava, Docker), and
Slurm's error paths, against fake commands replaying the real tools' output formats
(tests/fakes/fake_scheduler.py). Real Slurm is tested in test_slurm.py."""

import pytest

import batchtools as bt


def make(tmp_path, cf):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    cf.scheduler_latency = 0
    cf.fs_latency = 0
    cf.poll = cf.poll_max = 0.05
    reg.cluster_functions = cf
    return reg


BACKENDS = {
    "torque": lambda: bt.make_cluster_functions_torque(),
    "sge": lambda: bt.make_cluster_functions_sge(),
    "lsf": lambda: bt.make_cluster_functions_lsf(),
    "openlava": lambda: bt.make_cluster_functions_openlava(),
    "slurm": lambda: bt.make_cluster_functions_slurm(),
}


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
    kill_cmd = {"torque": "qdel", "sge": "qdel", "lsf": "bkill", "openlava": "bkill", "slurm": "scancel"}[name]
    assert any(c[0] == kill_cmd for c in fake.calls())


def test_torque_array_jobs(fake, tmp_path):
    make(tmp_path, bt.make_cluster_functions_torque())
    bt.batch_map(lambda x: x + 100, x=[1, 2, 3])
    ids = bt.find_jobs()
    ids["chunk"] = 1
    bt.submit_jobs(ids, resources={"chunks_as_arrayjobs": True})
    assert bt.wait_for_jobs()
    assert bt.reduce_results_list() == [101, 102, 103]
    assert bt.get_job_status()["batch_id"].tolist() == [f"{4711}[{i}].torque.example.org" for i in (1, 2, 3)]


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
