"""Make the report picture of the docs: the timeline pictures' experiment (1,000 jobs in 50 chunks
on Multicore(2)), reported and shot in headless Chromium.

    .venv/bin/python docs/_scripts/report_picture.py [OUTPUT_DIR]   (default docs/images)

Takes about 20 s on two cores. The registry goes to a temporary folder; the report itself is
kept beside the picture as report-example.html only if KEEP_HTML=1.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

import batchtools as bt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from chromium import Chromium  # noqa: E402, I001
from timeline_picture import instance, shuffle_then_sort, sort_it  # noqa: E402  (the same experiment)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        reg = bt.make_experiment_registry(file_dir=Path(tmp) / "sorting", seed=1, conf_file=None)
        reg.cluster_functions = bt.make_cluster_functions_multicore(2)
        bt.add_problem("numbers", fun=instance)
        bt.add_algorithm("sort", fun=sort_it)
        bt.add_algorithm("shuffle_then_sort", fun=shuffle_then_sort)
        bt.add_experiments({"numbers": pd.DataFrame({"n": [10, 100, 1000, 10000, 100000]})}, repls=100)
        ids = bt.find_experiments()
        ids["chunk"] = bt.chunk(ids["job_id"], n_chunks=50)
        bt.submit_jobs(ids, resources={"walltime": 3600, "memory": 2048, "measure_memory": True})
        bt.wait_for_jobs()
        print(bt.get_status())
        html = out / "report-example.html"
        rep = bt.report(html)
        print(rep)
        with Chromium(window=(1280, 1000)) as browser:
            browser.screenshot(html, out / "report.png", width=1280, height=1500)
        if os.environ.get("KEEP_HTML") != "1":
            html.unlink()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "images")
