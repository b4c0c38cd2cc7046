"""pybatchtools side of the benchmark: ``python bench/py_scenarios.py SCENARIO N``.

Mirrors ``bench/r_baseline.R`` step by step and prints ``scenario,N,step,seconds`` lines.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time

os.environ.setdefault("BATCHTOOLS_PROGRESS", "0")

import pandas as pd  # noqa: E402

import batchtools as bt  # noqa: E402


def tm(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def cli_seconds(args: list[str], repeat: int = 5) -> float:
    """Best wall time of ``batchtools ARGS`` in a fresh process, as a user's shell runs it (byte code
    cached, as after any normal install: the first run, which writes it, is not counted)."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    cmd = [sys.executable, "-m", "batchtools.cli", *args]
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        best = min(best, time.perf_counter() - t0)
    return best


def square(x):
    return x**2


def square_1ms(x):  # a job with a little work: 1 ms
    time.sleep(0.001)
    return x**2


def square_to_file(x, path):
    """HQ directly: one job's work, its result kept in a file (HQ has no result channel)."""
    import pickle

    with open(path, "wb") as fh:
        pickle.dump(square(x), fh)


def squares_to_files(xs, folder):
    for x in xs:
        square_to_file(x, os.path.join(folder, f"{x}.pkl"))


def squares(xs):
    return [square(x) for x in xs]


def sometimes_failing(x):
    if x % 1000 == 7:
        raise ValueError(f"x = {x} is a bad case")
    return x**2


def report_scenario(reg, n: int, work: str, out: dict[str, float]) -> None:
    """A registry of n jobs (run in 100 chunks on Multicore(2), one in 1,000 failing) reported on:
    the time to write the report, its size, and its first contentful paint in headless Chromium."""
    import numpy as np

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
    from chromium import Chromium

    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(sometimes_failing, x=range(1, n + 1))
    ids = bt.find_jobs()
    ids["chunk"] = bt.chunk(ids["job_id"], n_chunks=100)
    bt.submit_jobs(ids, resources={"walltime": 3600, "memory": 4096})
    bt.wait_for_jobs()
    assert bt.get_status().done == n - n // 1000
    path = os.path.join(work, "report.html")
    out["write"] = tm(lambda: bt.report(path))
    out["size_mb"] = os.path.getsize(path) / 1e6
    out["cli_write"] = cli_seconds(["report", str(reg.file_dir), "-o", path], repeat=1)
    paints, loads = [], []
    with Chromium() as browser:
        for _ in range(3):
            page = browser.open(path)
            try:
                problems = page.problems(own_url=f"file://{os.path.abspath(path)}")
                assert not problems, problems
                paints.append(page.first_paint() / 1000)
                loads.append(page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd") / 1000)
            finally:
                page.close()
    out["first_paint"] = float(np.median(paints))
    out["load_event"] = float(np.median(loads))


def engine_scenario(scen: str, n: int, work: str, out: dict[str, float]) -> None:
    """HyperQueue / Dask: the engine's own time for the work, then ours on the same engine."""
    import numpy as np

    n_chunks = 20 if scen.endswith("chunks") else n
    xs = list(range(1, n + 1))
    parts = [p.tolist() for p in np.array_split(np.array(xs), n_chunks)]
    reg = bt.make_registry(file_dir=tempfile.mkdtemp(dir=work, prefix="py-"), seed=1, conf_file=None)
    if scen.startswith("hq"):
        from hyperqueue import Job, LocalCluster
        from hyperqueue.cluster import WorkerConfig
        from hyperqueue.task.function import PythonEnv

        cluster = LocalCluster(server_dir=tempfile.mkdtemp(dir=work, prefix="hq-"),
                               worker_config=WorkerConfig(cores=2))
        client = cluster.client(python_env=PythonEnv(python_bin=sys.executable))
        folder = tempfile.mkdtemp(dir=work, prefix="hq-results-")

        def native():
            job = Job(max_fails=None)
            if n_chunks == n:
                for x in xs:
                    job.function(square_to_file, args=(x, os.path.join(folder, f"{x}.pkl")), stdout=None, stderr=None)
            else:
                for part in parts:
                    job.function(squares_to_files, args=(part, folder), stdout=None, stderr=None)
            client.wait_for_jobs([client.submit(job)])

        out["engine"] = tm(native)
        assert len(os.listdir(folder)) == n
        reg.cluster_functions = bt.make_cluster_functions_hyperqueue(cluster)
    else:
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
        client = Client(cluster)
        folder = tempfile.mkdtemp(dir=work, prefix="dask-results-")
        if n_chunks == n:
            out["engine"] = tm(lambda: client.gather(client.map(square, xs)))
            # the same, with every result kept in a file as batchtools keeps it
            out["engine_files"] = tm(lambda: client.gather(client.map(
                square_to_file, xs, [os.path.join(folder, f"{x}.pkl") for x in xs])))
        else:
            out["engine"] = tm(lambda: client.gather(client.map(squares, parts)))
            out["engine_files"] = tm(lambda: client.gather(client.map(squares_to_files, parts, [folder] * n_chunks)))
        assert len(os.listdir(folder)) == n
        reg.cluster_functions = bt.make_cluster_functions_dask(client)
    bt.batch_map(square, x=xs)
    ids = bt.find_jobs()
    resources = {}
    if scen.endswith("chunks"):
        ids["chunk"] = bt.chunk(ids["job_id"], n_chunks=n_chunks, shuffle=False)
    elif scen.endswith("array"):  # one chunk as one HQ job of n tasks, like the native job
        ids["chunk"] = 1
        resources = {"chunks_as_arrayjobs": True}
    out["submit_wait"] = tm(lambda: (bt.submit_jobs(ids, resources=resources), bt.wait_for_jobs()))
    assert len(bt.find_done()) == n
    assert bt.reduce_results_list()[-1] == square(n)
    out["ratio"] = out["submit_wait"] / out["engine"]
    if "engine_files" in out:
        out["ratio_files"] = out["submit_wait"] / out["engine_files"]
    if scen.startswith("dask"):
        client.close()
    cluster.close() if hasattr(cluster, "close") else cluster.stop()


ML60_VARIANTS = ("sequential", "joblib", "multicore", "socket", "pool")


def ml60(variant: str, work: str) -> dict[str, float]:
    """60 fits (iris, wine, breast_cancer x Dummy, LogisticRegression, DecisionTree, RandomForest(50)
    x 5 folds), from the data to the tidy score table, one way each: a loop, joblib, or batchmark on
    Multicore / Socket / the worker pool, all with default settings. Prints a checksum of the scores."""
    import hashlib
    import warnings

    warnings.simplefilter("ignore")  # convergence warnings (they go to the job logs in batchtools)
    from sklearn.datasets import load_breast_cancer, load_iris, load_wine
    from sklearn.dummy import DummyClassifier
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from sklearn.tree import DecisionTreeClassifier

    tasks = {"iris": load_iris(return_X_y=True), "wine": load_wine(return_X_y=True),
             "breast_cancer": load_breast_cancer(return_X_y=True)}
    learners = {"dummy": DummyClassifier(), "logreg": LogisticRegression(),
                "tree": DecisionTreeClassifier(random_state=0), "forest": RandomForestClassifier(50, random_state=0)}
    cv = KFold(5, shuffle=True, random_state=1)
    t0 = time.perf_counter()
    if variant in ("sequential", "joblib"):
        def fit_score(X, y, est, train, test):  # the job function as users write it
            import warnings

            from sklearn.base import clone
            from sklearn.metrics import accuracy_score

            warnings.simplefilter("ignore")
            model = clone(est).fit(X[train], y[train])
            return accuracy_score(y[test], model.predict(X[test]))

        keys, calls = [], []
        for t, (X, y) in tasks.items():
            for name, est in learners.items():
                for k, (train, test) in enumerate(cv.split(X), start=1):
                    keys.append((t, name, k))
                    calls.append((X, y, est, train, test))
        if variant == "sequential":
            acc = [fit_score(*c) for c in calls]
        else:
            from joblib import Parallel, delayed

            acc = Parallel(n_jobs=os.cpu_count())(delayed(fit_score)(*c) for c in calls)
        scores = pd.DataFrame(keys, columns=["task", "learner", "fold"]).assign(accuracy=acc)
    else:
        reg = bt.make_experiment_registry(file_dir=tempfile.mkdtemp(dir=work, prefix="py-"), seed=1, conf_file=None)
        reg.cluster_functions = (bt.make_cluster_functions_socket() if variant == "socket"
                                 else bt.make_cluster_functions_multicore())
        bt.batchmark(bt.benchmark_grid(tasks, learners, cv), scoring="accuracy")
        if variant == "pool":
            bt.submit_workers(os.cpu_count(), idle_timeout=1)
        else:
            bt.submit_jobs()
        assert bt.wait_for_jobs()
        scores = bt.reduce_results_batchmark().scores
    seconds = time.perf_counter() - t0
    assert len(scores) == 60
    tidy = scores[["task", "learner", "fold", "accuracy"]].sort_values(["task", "learner", "fold"])
    digest = hashlib.md5(tidy.round(10).to_csv(index=False).encode()).hexdigest()
    print(f"ml60,{variant},checksum,{digest}")
    return {variant: seconds}


def multicore_chunks(reg, n: int, n_chunks: int, out: dict[str, float]) -> None:
    """``n`` trivial jobs in ``n_chunks`` chunks on Multicore(2): submit + wait, then reduce."""
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(square, x=range(1, n + 1))
    ids = bt.find_jobs()
    ids["chunk"] = bt.chunk(ids["job_id"], n_chunks=n_chunks)
    out["submit_wait"] = tm(lambda: (bt.submit_jobs(ids), bt.wait_for_jobs()))
    assert len(bt.find_done()) == n
    out["reduce_list"] = tm(bt.reduce_results_list)


def main(scen: str, n: int, variant: str | None = None) -> None:
    work = os.environ.get("TMPDIR") or tempfile.gettempdir()
    if scen == "ml60":
        for step, value in ml60(variant, work).items():
            print(f"{scen},{n},{step},{value}")
        return
    reg = bt.make_registry(file_dir=tempfile.mkdtemp(dir=work, prefix="py-"), seed=1, conf_file=None)
    out: dict[str, float] = {}
    if scen == "map":
        out["map"] = tm(lambda: bt.batch_map(square, x=range(1, n + 1)))
        out["map_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out["status"] = tm(bt.get_status)
        out["find_pars"] = tm(lambda: bt.find_jobs(f"x > {n // 2}"))
        out["find_notdone"] = tm(bt.find_not_done)
        out["job_pars"] = tm(bt.get_job_pars)
        out["cli_status"] = cli_seconds(["status", str(reg.file_dir)])
        # values stored as Python objects (checked to read back from their pickle): strings, tuples
        for step, values in (("map_str", [f"s{i}" for i in range(n)]), ("map_tuples", [(i, i) for i in range(n)])):
            bt.make_registry(file_dir=tempfile.mkdtemp(dir=work, prefix="py-"), seed=1, conf_file=None)
            out[step] = tm(lambda: bt.batch_map(square, x=values))
    elif scen == "scale_map":  # issue 30, table 1: each step of a registry of n jobs, timed in one process
        out["map"] = tm(lambda: bt.batch_map(square, x=range(n)))
        out["status"] = tm(bt.get_status)
        out["find_pars"] = tm(lambda: bt.find_jobs("x % 1000 == 7"))
        out["load"] = tm(lambda: bt.load_registry(reg.file_dir, writeable=False))
        out["status_fresh"] = tm(bt.get_status)
        out["cli_status"] = cli_seconds(["status", str(reg.file_dir)], repeat=3)
        out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    elif scen == "scale_multicore":  # issue 30, table 2: n trivial jobs in 100 chunks on Multicore(2)
        multicore_chunks(reg, n, 100, out)
        out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        files = sum(len(f) for _, _, f in os.walk(reg.file_dir))
        out["files_per_1000"] = files / (n / 1000)
    elif scen == "interactive":
        reg.cluster_functions = bt.make_cluster_functions_interactive()
        bt.batch_map(square, x=range(1, n + 1))
        out["submit_wait"] = tm(lambda: (bt.submit_jobs(), bt.wait_for_jobs()))
        out["reduce_list"] = tm(bt.reduce_results_list)
        out["reduce_dt"] = tm(bt.reduce_results_dataframe)
    elif scen == "multicore":
        multicore_chunks(reg, n, 20, out)
    elif scen == "cache":  # issue 29: n jobs run once (adding their results to a cache), then taken from it
        cache = tempfile.mkdtemp(dir=work, prefix="cache-")
        plain = {}
        multicore_chunks(reg, n, 20, plain)  # the same jobs without a cache
        out["run_no_cache"] = plain["submit_wait"]
        bt.make_registry(file_dir=tempfile.mkdtemp(dir=work, prefix="py-"), seed=1, conf_file=None, cache_dir=cache)
        filled = {}
        multicore_chunks(bt.get_default_registry(), n, 20, filled)
        out["run_filling"] = filled["submit_wait"]
        b = bt.make_registry(file_dir=tempfile.mkdtemp(dir=work, prefix="py-"), seed=1, conf_file=None, cache_dir=cache)
        b.cluster_functions = bt.make_cluster_functions_multicore(2)
        bt.batch_map(square, x=range(1, n + 1))
        ids = bt.find_jobs()
        ids["chunk"] = bt.chunk(ids["job_id"], n_chunks=20)
        out["submit_cached"] = tm(lambda: (bt.submit_jobs(ids), bt.wait_for_jobs()))
        assert bt.get_status().cached == n and bt.reduce_results_list() == [x * x for x in range(1, n + 1)]
        out["explain_hit"] = tm(lambda: bt.explain_cache(n))
        reg = bt.make_registry(file_dir=tempfile.mkdtemp(dir=work, prefix="py-"), seed=1, conf_file=None)
        reg.cluster_functions = bt.make_cluster_functions_multicore(2)
        bt.batch_map(square_1ms, x=range(1, n + 1))
        ids = bt.find_jobs()
        ids["chunk"] = bt.chunk(ids["job_id"], n_chunks=20)
        out["run_1ms_jobs"] = tm(lambda: (bt.submit_jobs(ids), bt.wait_for_jobs()))
    elif scen == "multicore_unchunked":
        reg.cluster_functions = bt.make_cluster_functions_multicore(2)
        bt.batch_map(square, x=range(1, n + 1))
        out["submit_wait"] = tm(lambda: (bt.submit_jobs(), bt.wait_for_jobs()))
        assert len(bt.find_done()) == n
    elif scen == "socket":
        reg.cluster_functions = bt.make_cluster_functions_socket(2)
        bt.batch_map(square, x=range(1, n + 1))
        out["submit_wait"] = tm(lambda: (bt.submit_jobs(), bt.wait_for_jobs()))
        assert len(bt.find_done()) == n
    elif scen == "ssh":
        workers = [bt.Worker("bt-node-a", max_load=100), bt.Worker("bt-node-b", max_load=100)]
        reg.cluster_functions = bt.make_cluster_functions_ssh(workers)
        bt.batch_map(square, x=range(1, n + 1))
        out["submit_wait"] = tm(lambda: (bt.submit_jobs(), bt.wait_for_jobs()))
        assert len(bt.find_done()) == n
        out["s_per_job"] = out["submit_wait"] / n
    elif scen == "slurm_pool_heal":  # the self-healing pool on the real Slurm: n lognormal jobs, 2 workers
        import numpy as np

        times = np.random.default_rng(42).lognormal(0.0, 1.0, n)
        times = np.round(times * (n / times.sum()), 2)  # total = n seconds (200 s for 200 jobs)
        out["lower_bound"] = max(times.sum() / 2, times.max())
        out["longest_job"] = float(times.max())
        cf = bt.make_cluster_functions_slurm(scheduler_latency=0, fs_latency=5)
        cf.poll, cf.poll_max = 0.5, 2.0
        reg.cluster_functions = cf
        bt.batch_map(time.sleep, times.tolist())
        est = pd.DataFrame({"job_id": np.arange(1, n + 1), "type": "estimated", "runtime": times})
        t0 = time.time()
        bt.submit_workers(2, ids=est.sort_values("runtime", ascending=False), heal=True,
                          resources={"walltime": 600})
        assert bt.wait_for_jobs(timeout=3600)
        out["makespan"] = time.time() - t0
        assert len(bt.find_done()) == n
        starts = sorted(float(p.read_text().split()[2]) for p in (reg.layout.pool / "workers").glob("*.beat"))
        out["worker_startup"] = starts[1] - t0 if len(starts) > 1 else starts[0] - t0  # both workers up
        out["workers"] = len(bt.get_workers())
    elif scen.startswith("slurm"):
        import subprocess

        from batchtools.backends.commands import command_counts

        cf = bt.make_cluster_functions_slurm(scheduler_latency=0, fs_latency=5)
        reg.cluster_functions = cf
        bt.batch_map(square, x=range(1, n + 1))
        ids = bt.find_jobs()
        resources = {}
        if scen == "slurm_chunks":
            ids["chunk"] = bt.chunk(ids["job_id"], n_chunks=10, shuffle=False)
        elif scen == "slurm_arrays":
            ids["chunk"] = bt.chunk(ids["job_id"], n_chunks=10, shuffle=False)
            resources = {"chunks_as_arrayjobs": True}
        elif scen == "slurm_native":  # Slurm's own time for one array of n trivial tasks
            t0 = time.perf_counter()
            subprocess.run(["sbatch", f"--array=1-{n}", "--output=/dev/null", "--wrap=true"], check=True,
                           capture_output=True)
            while subprocess.run(["squeue", "-h", "-r", "-o", "%i"], capture_output=True, text=True).stdout.strip():
                time.sleep(0.5)
            out["submit_wait"] = time.perf_counter() - t0
        if scen != "slurm_native":
            command_counts.clear()
            polls = []
            orig = cf.list_jobs

            def counted(r):
                polls.append(time.time())
                return orig(r)

            cf.list_jobs = counted
            out["submit_wait"] = tm(lambda: (bt.submit_jobs(ids, resources=resources), bt.wait_for_jobs()))
            assert len(bt.find_done()) == n
            out["cmds_per_job"] = sum(command_counts.values()) / n
            out["squeue_per_poll"] = command_counts["squeue"] / max(len(polls), 1)
    elif scen == "pool_overhead":  # trivial jobs through 2 pool workers (submit_workers)
        reg.cluster_functions = bt.make_cluster_functions_multicore(2)
        bt.batch_map(square, x=range(1, n + 1))
        out["submit_wait"] = tm(lambda: (bt.submit_workers(2, idle_timeout=1), bt.wait_for_jobs()))
        assert len(bt.find_done()) == n
    elif scen == "pool_lognormal":  # heterogeneous run times on 2 workers: pool vs static chunks
        import numpy as np

        times = np.random.default_rng(42).lognormal(0.0, 1.0, n)
        times = times * (n / times.sum())  # total = n seconds (40 s for 40 jobs)
        out["lower_bound"] = max(times.sum() / 2, times.max())
        out["longest_job"] = times.max()

        def makespan(submit) -> float:
            r = bt.make_registry(file_dir=tempfile.mkdtemp(dir=work, prefix="py-"), seed=1, conf_file=None)
            r.cluster_functions = bt.make_cluster_functions_multicore(2)
            bt.batch_map(time.sleep, times.tolist(), reg=r)
            ids = bt.find_jobs(reg=r)
            t = tm(lambda: (submit(r, ids), bt.wait_for_jobs(reg=r)))
            assert len(bt.find_done(reg=r)) == n
            return t

        longest_first = np.argsort(-times, kind="stable") + 1
        out["pool_longest_first"] = makespan(lambda r, ids: bt.submit_workers(2, ids=longest_first, reg=r,
                                                                               idle_timeout=0))
        out["pool_id_order"] = makespan(lambda r, ids: bt.submit_workers(2, reg=r, idle_timeout=0))
        out["static_chunks"] = makespan(lambda r, ids: bt.submit_jobs(
            ids.assign(chunk=bt.chunk(ids["job_id"], n_chunks=2, shuffle=False)), reg=r))
        out["lpt_chunks"] = makespan(lambda r, ids: bt.submit_jobs(
            ids.assign(chunk=bt.lpt(times, n_chunks=2)), reg=r))
    elif scen.startswith(("hq_", "dask_")):
        engine_scenario(scen, n, work, out)
    elif scen == "report":
        report_scenario(reg, n, work, out)
    elif scen == "experiments":
        reg = bt.make_experiment_registry(file_dir=tempfile.mkdtemp(dir=work, prefix="py-"), seed=1, conf_file=None)
        bt.add_problem("p1", data=list(range(1, 11)), fun=lambda data, job, n: job.rng.choice(data, n))
        bt.add_problem("p2", data=list(range(1, 11)), fun=lambda data, job, n: data[::-1][:n])
        bt.add_algorithm("a1", fun=lambda job, data, instance, k: sum(instance) * k)
        bt.add_algorithm("a2", fun=lambda job, data, instance, k: max(instance) + k)
        bt.add_algorithm("a3", fun=lambda job, data, instance, k: min(instance) - k)
        pdes = {"p1": pd.DataFrame({"n": range(1, 11)}), "p2": pd.DataFrame({"n": range(1, 11)})}
        ades = {a: pd.DataFrame({"k": range(1, n + 1)}) for a in ("a1", "a2", "a3")}
        out["add_experiments"] = tm(lambda: bt.add_experiments(pdes, ades, repls=2))
        out["n_jobs"] = len(bt.find_jobs())
        out["summarize"] = tm(bt.summarize_experiments)
        out["find_exp"] = tm(lambda: bt.find_experiments(algo_name="a1", prob_pars="n > 5"))
    else:
        raise SystemExit(f"unknown scenario {scen}")
    for step, value in out.items():
        print(f"{scen},{n},{step},{value}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:])
