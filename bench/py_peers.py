"""The tools users would pick instead, side by side with pybatchtools on the same work:
``python bench/py_peers.py SCENARIO VARIANT N`` runs one variant in this (fresh) interpreter and prints
``scenario,N,variant,seconds``. ``bench/run.py`` runs every variant three times and compares medians.

Scenarios (job functions are the same for every variant; results are checked):
- ``sleep200``: N jobs of ``time.sleep(0.1)`` on 2 cores.
- ``trivial10k``: N trivial jobs (``x * x``) on 2 cores.
- ``slurm200``: N small jobs (``x * x``) on the real Slurm (2 CPUs).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

os.environ.setdefault("BATCHTOOLS_PROGRESS", "0")


def nap(x):
    import time

    time.sleep(0.1)
    return x


def square(x):
    return x * x


def run_chunk(xs):
    return [square(x) for x in xs]


VARIANTS = {
    "sleep200": ("joblib", "multicore", "socket", "pool", "chunks20"),
    "trivial10k": ("joblib", "dask", "chunks20", "pool", "interactive"),
    "slurm200": ("dask_jobqueue", "submitit_chunks10", "pool", "chunks10"),
}
PEERS = {"joblib", "dask", "dask_jobqueue", "submitit_chunks10"}


def batchtools_variant(variant: str, fun, n: int, work: str) -> tuple[float, list]:
    import batchtools as bt

    reg = bt.make_registry(file_dir=tempfile.mkdtemp(dir=work, prefix="py-"), seed=1, conf_file=None)
    if variant == "socket":
        reg.cluster_functions = bt.make_cluster_functions_socket(2)
    elif variant == "interactive":
        reg.cluster_functions = bt.make_cluster_functions_interactive()
    elif variant in ("pool", "chunks10") and slurm_scenario:
        reg.cluster_functions = bt.make_cluster_functions_slurm(scheduler_latency=0, fs_latency=5)
    else:
        reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(fun, x=list(range(n)))
    t0 = time.perf_counter()
    if variant == "pool":
        bt.submit_workers(2)
    elif variant.startswith("chunks"):
        ids = bt.find_jobs()
        ids["chunk"] = bt.chunk(ids["job_id"], n_chunks=int(variant[6:]), shuffle=False)
        bt.submit_jobs(ids)
    else:
        bt.submit_jobs()
    assert bt.wait_for_jobs(timeout=3600)
    took = time.perf_counter() - t0
    out = bt.reduce_results_list()
    reg.cluster_functions.close()
    return took, out


slurm_scenario = False


def main(scen: str, variant: str, n: int) -> None:
    global slurm_scenario
    work = os.environ.get("TMPDIR") or tempfile.gettempdir()
    fun = nap if scen == "sleep200" else square
    expect = [x if fun is nap else x * x for x in range(n)]
    slurm_scenario = scen == "slurm200"
    if variant == "joblib":
        from joblib import Parallel, delayed

        t0 = time.perf_counter()
        out = Parallel(n_jobs=2)(delayed(fun)(x) for x in range(n))
        took = time.perf_counter() - t0
    elif variant == "dask":
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            client.submit(square, 1).result()  # workers up
            t0 = time.perf_counter()
            out = client.gather(client.map(fun, range(n)))
            took = time.perf_counter() - t0
    elif variant == "dask_jobqueue":
        from dask_jobqueue import SLURMCluster
        from distributed import Client

        cluster = SLURMCluster(cores=1, processes=1, memory="1GB", walltime="00:30:00",
                               log_directory=tempfile.mkdtemp(dir=work), scheduler_options={"dashboard_address": None})
        t0 = time.perf_counter()
        cluster.scale(2)
        with Client(cluster) as client:
            out = client.gather(client.map(fun, range(n)))
        took = time.perf_counter() - t0
        cluster.close()
    elif variant == "submitit_chunks10":
        import submitit

        ex = submitit.AutoExecutor(folder=tempfile.mkdtemp(dir=work), cluster="slurm")
        ex.update_parameters(timeout_min=30, slurm_partition=None, cpus_per_task=1)
        chunks = [list(range(n))[k::10] for k in range(10)]
        t0 = time.perf_counter()
        jobs = [ex.submit(run_chunk, c) for c in chunks]
        parts = [j.result() for j in jobs]
        took = time.perf_counter() - t0
        by_x = {x: v for c, p in zip(chunks, parts) for x, v in zip(c, p)}
        out = [by_x[x] for x in range(n)]
    else:
        took, out = batchtools_variant(variant, fun, n, work)
    assert out == expect, f"{variant}: wrong results"
    print(f"{scen},{n},{variant},{took}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
