"""The batchtools vignette's examples in Python, on a persistent registry and the
default backend (Multicore on this machine). Run with ``make demo``.

1. Monte-Carlo approximation of pi: 10 jobs of 100,000 points each.
2. Error handling: 10 jobs, one warns, two fail; find, inspect and fix them.
3. Worker pool: 2 workers pull 16 jobs of very different lengths, longest first.
4. An ML benchmark through batchmark: the vignette's svm vs forest (examples/ml_benchmark.py).
5. The load-balancing blog's SOAK benchmark on a worker pool (examples/soak_benchmark.py).
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np

import batchtools as bt

HERE = Path(__file__).resolve().parent
WORK = HERE / "demo-registries"


def pi_approx(n: int, job) -> float:
    """Fraction of n uniform points inside the unit circle, times 4."""
    nums = job.rng.random((n, 2))
    d = np.sqrt(nums[:, 0] ** 2 + nums[:, 1] ** 2)
    return 4 * float(np.mean(d <= 1))


def flakey_function(value: int) -> int:
    if value == 5:
        warnings.warn("Just a simple warning", stacklevel=2)
    if value in (2, 9) and not Path("input-fixed.txt").exists():
        raise RuntimeError("Ooops.")
    return value


def section(title: str) -> None:
    print(f"\n{'=' * 72}\n{title}\n{'=' * 72}")


def monte_carlo_pi() -> None:
    section("Example 1: Monte-Carlo approximation of pi")
    reg = bt.make_registry(file_dir=WORK / "pi", seed=1)
    print(reg)
    bt.batch_map(pi_approx, n=[100_000] * 10)
    print(bt.get_job_table()[["job_id", "submitted", "done", "job_pars"]].head(3))
    bt.submit_jobs(resources={"walltime": 3600, "memory": 1024})
    bt.wait_for_jobs()
    print(bt.get_status())
    print("mean of the 10 estimates:", np.mean([bt.load_result(i) for i in range(1, 11)]))
    print("reduce_results:", bt.reduce_results(lambda a, b: a + b) / 10)

    again = bt.load_registry(WORK / "pi")  # a later session: read-only by default
    print("after reloading, done:", again.get_status().done)
    print("btlapply:", np.mean(bt.btlapply([100_000] * 10, pi_approx)))


def error_handling() -> None:
    section("Example 2: error handling (10 jobs, one warning, two errors)")
    reg = bt.make_registry(file_dir=WORK / "errors", work_dir=WORK, seed=1)
    bt.batch_map(flakey_function, range(1, 11))
    print("test_job(1) ->", bt.test_job(1))
    try:
        bt.test_job(2)
    except RuntimeError as e:
        print("test_job(2) raised:", repr(e))
    bt.submit_jobs()
    print("wait_for_jobs ->", bt.wait_for_jobs())
    print(bt.get_status())
    print("\nfind_errors():", bt.find_errors()["job_id"].tolist())
    print(bt.get_error_messages())
    print("\ngrep_logs('simple warning'):")
    print(bt.grep_logs(pattern="simple warning", fixed=True))
    print("\nget_log(9):")
    print("\n".join(bt.get_log(9)))

    # fix the cause (here: a missing input file in the work dir), resubmit only what failed
    (Path(reg.work_dir) / "input-fixed.txt").write_text("ok")
    failed = bt.find_errors()
    bt.submit_jobs(failed)
    print("resubmitted", failed["job_id"].tolist(), "->", bt.wait_for_jobs())
    print(bt.get_status())
    print("results:", bt.reduce_results_list())


def nap(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def worker_pool() -> None:
    section("Example 3: a worker pool (2 workers, 16 jobs of very different lengths)")
    bt.make_registry(file_dir=WORK / "pool", seed=1)
    lengths = np.random.default_rng(3).lognormal(-1.5, 1.0, 16).round(3)
    bt.batch_map(nap, seconds=lengths.tolist())
    longest_first = np.argsort(-lengths) + 1
    bt.submit_workers(2, ids=longest_first, idle_timeout=0)
    bt.wait_for_jobs()
    print(bt.get_status())
    print(bt.get_workers()[["worker_id", "batch_id", "state", "done"]])
    total, span = lengths.sum(), bt.get_job_table()
    span = (span["done"].max() - span["started"].min()).total_seconds()
    print(f"work {total:.2f} s on 2 workers: makespan {span:.2f} s (lower bound {max(total / 2, lengths.max()):.2f} s)")
    try:
        fig = bt.plot_timeline()
    except ImportError:
        return
    fig.savefig(WORK / "pool-timeline.png", dpi=100)
    print(f"timeline written to {WORK / 'pool-timeline.png'} (or: batchtools timeline {WORK / 'pool'} -o t.png)")


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    monte_carlo_pi()
    error_handling()
    worker_pool()
    import runpy

    for example in ("ml_benchmark.py", "soak_benchmark.py"):
        runpy.run_path(str(HERE / example), run_name="__main__")
    print(f"\nRegistries kept in {WORK}; open one with bt.load_registry(...).")


if __name__ == "__main__":
    main()
