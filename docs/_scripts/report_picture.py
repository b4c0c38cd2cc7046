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

import batchtools as bt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from chromium import Chromium  # noqa: E402, I001
from timeline_picture import sorting_experiment  # noqa: E402  (the same experiment)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        ids = sorting_experiment(Path(tmp) / "sorting")
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
