"""Make the timeline pictures of the docs: a 1,000-job experiment run in 50 chunks on Multicore(2).

    .venv/bin/python docs/_scripts/timeline_picture.py [OUTPUT_DIR]   (default docs/images)

Takes about 15 s on two cores. The registry goes to a temporary folder.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

import batchtools as bt  # noqa: E402


def instance(data, job, n):
    return job.rng.random(n)


def sort_it(data, job, instance):
    time.sleep(0.004 + 0.004 * job.rng.random())
    return float(sorted(instance)[0])


def shuffle_then_sort(data, job, instance):
    time.sleep(0.012 + 0.012 * job.rng.random())
    if job.rng.random() < 0.01:
        raise ValueError("an unlucky shuffle")
    return float(sorted(instance)[0])


def sorting_experiment(file_dir: Path) -> pd.DataFrame:
    """The 1,000-job experiment (two algorithms, five sizes, 100 replications) in a new default
    registry on Multicore(2): its ids in 50 chunks."""
    reg = bt.make_experiment_registry(file_dir=file_dir, seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.add_problem("numbers", fun=instance)
    bt.add_algorithm("sort", fun=sort_it)
    bt.add_algorithm("shuffle_then_sort", fun=shuffle_then_sort)
    bt.add_experiments({"numbers": pd.DataFrame({"n": [10, 100, 1000, 10000, 100000]})}, repls=100)
    ids = bt.find_experiments()
    ids["chunk"] = bt.chunk(ids["job_id"], n_chunks=50)
    return ids


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ids = sorting_experiment(Path(tmp) / "registry")
        t0 = time.time()
        bt.submit_jobs(ids)
        bt.wait_for_jobs()
        print(f"{len(ids)} jobs in {time.time() - t0:.1f} s")
        print(bt.get_status())
        t0 = time.time()
        fig = bt.plot_timeline()
        fig.savefig(out / "timeline-1000-chunked.png", dpi=110)
        fig = bt.plot_timeline(color_by="algorithm")
        fig.savefig(out / "timeline-1000-by-algorithm.png", dpi=110)
        fig = bt.plot_timeline(rows="batch")
        fig.savefig(out / "timeline-1000-batch-rows.png", dpi=80)
        print(f"three timelines in {time.time() - t0:.2f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "images")
