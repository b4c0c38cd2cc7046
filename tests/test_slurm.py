"""The Slurm backend against a real single-node Slurm (``ci/start-slurm.sh``).

With ``BATCHTOOLS_TEST_SLURM=1`` (as CI sets it) a missing Slurm is a failure, not a skip.
"""

import os
import shutil
import subprocess
import threading
import time

import pandas as pd
import pytest

import batchtools as bt
from conftest import require_daemon, running_jobs, scheduler_registry

pytestmark = pytest.mark.slurm


def slurm_problem() -> str | None:
    if not shutil.which("sinfo"):
        return "Slurm is not installed (run: sudo bash ci/start-slurm.sh)"
    deadline = time.time() + 120  # a node still cleaning up after the previous test's jobs is fine
    while True:
        proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
        states = {s.rstrip("-") for s in proc.stdout.split()}  # "mixed-": planned by the backfill scheduler
        if proc.returncode == 0 and {"idle", "mixed", "allocated"} & states:
            return None
        if proc.returncode != 0 or "completing" not in states or time.time() > deadline:
            return f"no usable Slurm node: {proc.stdout.strip()} {proc.stderr.strip()}"
        time.sleep(1)


@pytest.fixture(scope="module")
def slurm():
    require_daemon(slurm_problem(), "BATCHTOOLS_TEST_SLURM")


@pytest.fixture
def sreg(tmp_path, slurm):
    cf = bt.make_cluster_functions_slurm(scheduler_latency=0, fs_latency=5)
    yield from scheduler_registry(tmp_path / "slurmreg", cf)


@pytest.fixture
def sereg(tmp_path, slurm):
    """An experiment registry on Slurm (seed 3)."""
    cf = bt.make_cluster_functions_slurm(scheduler_latency=0, fs_latency=5)
    yield from scheduler_registry(tmp_path / "slurmexp", cf, make=bt.make_experiment_registry, seed=3)


def test_single_jobs_chunks_and_arrays(sreg):
    bt.batch_map(lambda x: (x * x, os.environ.get("SLURM_JOB_ID")), x=range(1, 10))
    bt.submit_jobs(bt.find_jobs(ids=[1, 2]))
    chunked = bt.find_jobs(ids=[3, 4, 5, 6]).assign(chunk=[1, 1, 2, 2])
    bt.submit_jobs(chunked)
    array = bt.find_jobs(ids=[7, 8, 9]).assign(chunk=1)
    bt.submit_jobs(array, resources={"chunks_as_arrayjobs": True, "walltime": 300, "memory": 256})
    assert bt.wait_for_jobs(timeout=180)
    res = bt.reduce_results_list()
    assert [r[0] for r in res] == [x * x for x in range(1, 10)]
    st = bt.get_job_status()
    assert st["batch_id"][0] != st["batch_id"][1]
    assert st["batch_id"][2] == st["batch_id"][3] != st["batch_id"][4]
    base = st["batch_id"][6].split("_")[0]
    assert st["batch_id"][6:].tolist() == [f"{base}_1", f"{base}_2", f"{base}_3"]
    assert len({r[1] for r in res[6:]}) == 3  # one Slurm job per array task
    assert "### [bt]: Starting job [batchtools job.id=8]" in bt.get_log(8)


def test_kill_running_job(sreg):
    bt.batch_map(lambda s: time.sleep(s), s=[300])
    bt.submit_jobs()
    assert running_jobs(timeout=60) == [1]
    assert bt.kill_jobs()["killed"].tolist() == [True]
    assert bt.find_on_system().empty
    assert bt.find_not_submitted()["job_id"].tolist() == [1]


def test_walltime_exceeded_is_reported(sreg):
    bt.batch_map(lambda s: time.sleep(s), s=[600])
    bt.submit_jobs(resources={"walltime": 60})
    # Slurm enforces --time on its periodic check: allow well over the limit
    assert bt.wait_for_jobs(timeout=300) is False
    st = bt.get_job_status()
    assert st["error"].notna()[0] or bt.find_expired()["job_id"].tolist() == [1]
    if st["error"].notna()[0]:
        assert "SIGTERM" in st["error"][0]


def test_max_concurrent_jobs_holds(sreg):
    sreg.max_concurrent_jobs = 2
    bt.batch_map(lambda s: time.sleep(s), s=[3, 3, 3, 3, 3])
    seen = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            out = subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True).stdout
            seen.append(set(out.split()))
            time.sleep(0.2)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    bt.submit_jobs(sleep=0.5)
    assert bt.wait_for_jobs(timeout=180)
    stop.set()
    t.join()
    ours = set(bt.get_job_status()["batch_id"])  # other users of this Slurm may have jobs queued too
    peak = [len(ids & ours) for ids in seen]
    assert max(peak) <= 2 and len(bt.find_done()) == 5


def test_two_pool_workers_drain_100_jobs(sreg):
    bt.batch_map(lambda x: (x * x, os.environ.get("SLURM_JOB_ID")), x=range(100))
    bt.submit_workers(2, idle_timeout=2, resources={"walltime": 300, "memory": 256})
    assert bt.wait_for_jobs(timeout=180)
    res = bt.reduce_results_list()
    assert [r[0] for r in res] == [x * x for x in range(100)]
    workers = bt.get_workers()
    assert len(workers) == 2
    slurm_ids = set(workers["batch_id"])
    assert {r[1] for r in res} <= slurm_ids  # every job ran inside one of the two Slurm jobs
    assert set(bt.get_job_table()["batch_id"]) <= slurm_ids


def test_sbatch_refusing_a_resubmission_keeps_the_results(sreg):
    """A resubmission sbatch rejects (unknown partition) leaves status, results and logs as they were."""
    from conftest import snapshot

    bt.batch_map(lambda x: x * 3, x=[1, 2])
    bt.submit_jobs()
    assert bt.wait_for_jobs(timeout=120)
    table = bt.get_job_table()
    before = snapshot(sreg.file_dir)
    with pytest.raises(bt.SubmitError, match="partition"):
        bt.submit_jobs([1, 2], resources={"partition": "no-such-partition"})
    assert snapshot(sreg.file_dir) == before
    assert bt.get_job_table().equals(table)
    assert bt.reduce_results_list() == [3, 6]

def test_ml_benchmark_with_user_code_on_slurm_chunks_arrays_and_pool(tmp_path, sereg, usermod):
    """batchmark on the real Slurm: learner, scorer and data loader from the user's own module
    (which the Slurm jobs cannot import), as single jobs, a chunk, an array and two pool
    workers; the scores equal those computed in this process."""
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    design = bt.benchmark_grid({"iris": load_iris(return_X_y=True), "wine": usermod.load},
                               {"centroid": usermod.Centroid(0.1), "tree": DecisionTreeClassifier(max_depth=2)},
                               {"halves": usermod.HalfSplit()})
    local = bt.make_experiment_registry(file_dir=tmp_path / "local", seed=3, conf_file=None, make_default=False)
    local.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batchmark(design, scoring={"hits": usermod.hit_rate}, reg=local)
    bt.submit_jobs(reg=local)
    expected = bt.reduce_results_batchmark(reg=local).scores[["task", "learner", "fold", "hits"]]

    assert len(bt.batchmark(design, scoring={"hits": usermod.hit_rate}, reg=sereg)) == 8
    res = {"walltime": 300, "memory": 512}
    bt.submit_jobs([1, 2], resources=res)
    bt.submit_jobs(bt.find_jobs(ids=[3, 4]).assign(chunk=1), resources=res)
    bt.submit_jobs(bt.find_jobs(ids=[5, 6]).assign(chunk=1), resources={**res, "chunks_as_arrayjobs": True})
    bt.submit_workers(2, ids=[8, 7], idle_timeout=1, resources=res)
    assert bt.wait_for_jobs(timeout=300), bt.get_error_messages().to_string()
    assert bt.get_job_status()["batch_id"].nunique() >= 5  # two jobs, a chunk, an array's tasks, workers
    got = bt.reduce_results_batchmark().scores[["task", "learner", "fold", "hits"]]
    pd.testing.assert_frame_equal(got, expected)


def stall_once(x, job):
    marker = os.path.join(job.file_dir, f"stalled-{x}")
    job.progress(0.0, "starting")
    if not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(600)  # a hung call: no progress
    job.progress(1.0, "done")
    return x


def test_a_stalled_job_is_ended_by_its_node_and_retried_on_slurm(sreg):
    bt.batch_map(stall_once, x=[1])
    bt.submit_jobs(resources={"walltime": 600, "stall_timeout": 3}, retry=bt.RetryPolicy(reasons=("stalled",)))
    assert bt.wait_for_jobs(timeout=900)  # Slurm here is shared: the queue may be long
    att = bt.get_job_attempts()
    assert att["reason"].tolist() == ["stalled", None]
    assert (att["ended"][0] - att["started"][0]).total_seconds() < 60  # ended by its node, not at the walltime
    assert att["error"][0].startswith("Stalled: no progress for 3s since its last progress (0.0, starting)")
    tab = bt.get_job_table()
    assert tab["progress_message"].tolist() == ["done"] and tab["attempt"].tolist() == [2]


def hold_memory(x, mb=30, seconds=2.0):
    block = bytearray(mb * 2**20)
    for i in range(0, len(block), 4096):  # touched: resident
        block[i] = 1
    time.sleep(seconds)
    return x


def test_resources_learned_from_use_resubmit_on_slurm(sreg):
    """Jobs that use ~50 MB and 2 s of the 4 GB and 1 h they asked for: the recommendation is a
    minute (Slurm counts --time in minutes) and ~1.2 x the peak memory, and Slurm runs the rest with
    it. This Slurm keeps no accounting (ci/start-slurm.sh): the evidence is the node's measurement,
    and sacct is asked once (test_resources_learned.py replays recorded sacct output)."""
    from batchtools.api.recommend import round_memory

    bt.batch_map(hold_memory, x=range(6))
    bt.submit_jobs([1, 2, 3, 4], resources={"walltime": 3600, "memory": 4096})
    assert bt.wait_for_jobs(timeout=900)  # Slurm here is shared: the queue may be long
    rec = bt.recommend_resources(bt.find_not_done())
    group = rec.groups.iloc[0]
    assert group["done"] == 4 and group["evidence"] == "node" and 2 <= group["runtime"] < 30
    assert 30 <= group["memory_used"] <= 200  # the node process with its 30 MB block
    assert rec["job_id"].tolist() == [5, 6] and rec["walltime"].tolist() == [60, 60]
    assert rec["memory"].tolist() == [round_memory(1.2 * group["memory_used"])] * 2 and rec["memory"][0] <= 256
    bt.submit_jobs(rec)
    assert bt.wait_for_jobs(timeout=900)
    assert bt.reduce_results_list() == list(range(6))
    for job_hash in bt.get_job_status([5, 6])["job_hash"]:
        script = (sreg.file_dir / "jobs" / f"{job_hash}.sh").read_text()
        assert "#SBATCH --time=1:00" in script and f"#SBATCH --mem-per-cpu={rec['memory'][0]}" in script
