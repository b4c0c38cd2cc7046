"""Make the picture of the ``batchtools watch`` screen in the docs (docs/images/watch.svg).

    .venv/bin/python docs/_scripts/watch_picture.py [OUTPUT_DIR]   (default docs/images)

A registry of 300 jobs (0.05-0.5 s each, a few failing) is run by 2 pool workers on
Multicore(2); after a few seconds the screen is drawn as ``batchtools watch`` draws it on a
terminal, recorded by rich and saved as SVG. Takes about 40 s. The registry goes to a
temporary folder.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("BATCHTOOLS_PROGRESS", "0")

import batchtools as bt  # noqa: E402
from batchtools.cli import _state_class  # noqa: E402
from batchtools.watch import Watcher, render  # noqa: E402


def job(x, job):
    time.sleep(0.05 + 0.45 * job.rng.random())
    if x % 37 == 5:
        raise ValueError(f"x = {x} is out of range")
    return x


def main(out_dir: str = "docs/images") -> None:
    from rich.console import Console

    from batchtools.api.setup import open_registry

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "registry"
        reg = bt.make_registry(file_dir=path, seed=1, conf_file=None)
        reg.cluster_functions = bt.make_cluster_functions_multicore(2)
        ids = bt.batch_map(job, x=range(300))
        first = ids.iloc[:60].assign(chunk=[1, 2, 3] * 20)
        bt.submit_jobs(first)  # three chunks of 20 first ...
        bt.wait_for_jobs()
        bt.submit_workers(2, ids=ids["job_id"].iloc[60:])  # ... then the rest through two pool workers
        time.sleep(6)
        view = open_registry({k: _state_class(k) for k in ("map", "experiment")}, path, conf_file=None,
                             make_default=False)
        snap = Watcher(view).snapshot()
        console = Console(record=True, width=96, force_terminal=True, color_system="truecolor", file=io.StringIO())
        console.print(render(snap, "registry", 2.0))
        target = Path(out_dir) / "watch.svg"
        console.save_svg(str(target), title="batchtools watch")
        print(f"wrote {target}")
        bt.wait_for_jobs()


if __name__ == "__main__":
    main(*sys.argv[1:])
