"""Fixtures of the tests (the isolation of every test and doctest is in the root conftest.py)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

import batchtools as bt


@pytest.fixture
def reg(tmp_path):
    """A registry with Interactive cluster functions (jobs run inside submit_jobs)."""
    r = bt.make_registry(file_dir=tmp_path / "reg", seed=1, conf_file=None)
    r.cluster_functions = bt.make_cluster_functions_interactive()
    return r


@pytest.fixture
def mreg(tmp_path):
    """A registry with Multicore(2) cluster functions."""
    r = bt.make_registry(file_dir=tmp_path / "mreg", seed=1, conf_file=None)
    r.cluster_functions = bt.make_cluster_functions_multicore(2)
    return r


FAKE = Path(__file__).parent / "fakes" / "fake_scheduler.py"
COMMANDS = ["qsub", "qselect", "qstat", "qdel", "qrerun", "bsub", "bjobs", "bkill", "docker", "sbatch", "squeue",
            "scancel", "scontrol", "sacct", "nvidia-smi"]


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """Fake scheduler commands (tests/fakes/fake_scheduler.py) first on PATH."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    for c in COMMANDS:
        (bindir / c).symlink_to(FAKE)
    state = tmp_path / "sched"
    state.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SCHED_DIR", str(state))
    monkeypatch.setenv("FAKE_PYTHON", sys.executable)

    class Fake:
        dir = state

        def calls(self):
            path = state / "calls.log"
            return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

        def hold(self, on=True):
            if on:
                monkeypatch.setenv("FAKE_SCHED_HOLD", "1")
            else:
                monkeypatch.delenv("FAKE_SCHED_HOLD", raising=False)

    return Fake()


def snapshot(path):
    """{relative path: bytes} of every file below ``path``: to show a failed call changed nothing."""
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, path)] = fh.read()
    return out


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB tmpfs (needs root; CI runs as root and sets BATCHTOOLS_TEST_FAULTS=1)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        if os.environ.get("BATCHTOOLS_TEST_FAULTS") == "1":
            pytest.fail(f"BATCHTOOLS_TEST_FAULTS=1 but a tmpfs cannot be mounted: {proc.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


def require_daemon(problem: str | None, env_var: str) -> None:
    """Skip when an integration daemon is missing, or fail if CI asked for it with ``env_var=1``
    (so a broken install can never pass silently)."""
    if problem:
        if os.environ.get(env_var) == "1":
            pytest.fail(f"{env_var}=1 but {problem}")
        pytest.skip(problem)


def countdown(n, job):
    """A job of ``n`` steps of 0.25 s that checkpoints after each and goes on from its checkpoint."""
    import time

    i = job.restored or 0
    while i < n:
        time.sleep(0.25)
        i += 1
        job.checkpoint(i)
    return i


def wait_until(cond, timeout: float = 30.0, what: str = "condition", poll: float = 0.05):
    """Poll ``cond()`` until it returns something truthy, and return that."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def running_jobs(timeout: float = 30.0) -> list[int]:
    """Wait until some jobs of the default registry run; their ids."""
    return wait_until(lambda: bt.find_running()["job_id"].tolist(), timeout, "a running job", poll=0.1)


def enforcing_multicore(ncpus=2):
    """Multicore that ends a collection with SIGTERM once it ran past its walltime, as a scheduler does."""
    cf = bt.make_cluster_functions_multicore(ncpus)
    submit = cf.submit_job

    def submit_job(reg, jc):
        result = submit(reg, jc)
        walltime = jc.resources.get("walltime")
        if walltime:
            pid = int(result.batch_id)
            born = psutil.Process(pid).create_time()

            def limit():
                try:
                    if abs(psutil.Process(pid).create_time() - born) < 0.01:
                        os.kill(pid, signal.SIGTERM)
                except (psutil.Error, ProcessLookupError):
                    pass

            timer = threading.Timer(walltime + 0.2, limit)
            timer.daemon = True  # a job asking an hour must not keep the test session alive that long
            timer.start()
        return result

    cf.submit_job = submit_job
    return cf


def scheduler_registry(path, cf, make=bt.make_registry, seed=1):
    """Fixture body: a registry on a real scheduler, polled every 0.5-2 s; afterwards the jobs of
    this registry that a failed test left on the scheduler are cancelled (and only those: other
    users of the same scheduler, e.g. a parallel test run, keep theirs). ``make``: e.g.
    ``bt.make_experiment_registry``."""
    cf.poll, cf.poll_max = 0.5, 2
    r = make(file_dir=path, seed=seed, conf_file=None)
    r.cluster_functions = cf
    yield r
    cancel_own_jobs(r)


def cancel_own_jobs(reg) -> None:
    """Kill the scheduler jobs (and pool workers) of ``reg`` that are still queued or running."""
    cf = reg.cluster_functions
    try:
        reg.sync()
    except Exception:
        pass
    ours = set(reg.status["batch_id"].dropna().astype(str))
    pool = getattr(reg, "_pool", None)
    if pool is not None:
        ours |= {str(w["batch_id"]) for w in pool.workers.values() if w.get("batch_id")}
    try:
        queued, running = cf.list_on_system(reg)
    except Exception:
        return
    for batch_id in sorted((queued | running) & ours):
        try:
            cf.kill_job(reg, batch_id)
        except Exception:
            pass


# ------------------------------------------------------------------ the user's own module
USER_MODULE = '''
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class Majority:
    """The user's simplest learner: fit and predict, nothing from scikit-learn."""

    def fit(self, X, y):
        values, counts = np.unique(y, return_counts=True)
        self.label = values[counts.argmax()]
        return self

    def predict(self, X):
        return np.full(len(X), self.label)


class Centroid(ClassifierMixin, BaseEstimator):
    """A nearest-centroid classifier written by the user."""

    def __init__(self, shrink=0.0):
        self.shrink = shrink

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.centers_ = np.array([X[y == c].mean(axis=0) * (1 - self.shrink) for c in self.classes_])
        return self

    def predict(self, X):
        d = ((X[:, None, :] - self.centers_[None]) ** 2).sum(axis=2)
        return self.classes_[d.argmin(axis=1)]


class HalfSplit:
    """The user's own splitter: first half / second half, and the other way round."""

    def split(self, X, y=None, groups=None):
        n = len(X)
        idx = np.random.permutation(n)
        yield idx[: n // 2], idx[n // 2:], {"half": "first"}
        yield idx[n // 2:], idx[: n // 2], {"half": "second"}

    def get_n_splits(self, X=None, y=None, groups=None):
        return 2


def hit_rate(estimator, X, y):
    return float(np.mean(estimator.predict(X) == y))


def load():
    from sklearn.datasets import load_wine
    return load_wine(return_X_y=True)


def instance(data, job, n):
    return np.arange(n)


def total(instance, k):
    return int(instance.sum()) * k
'''


@pytest.fixture
def usermod(tmp_path):
    """A module of the user's, importable here but on no other interpreter (not in the work dir)."""
    where = tmp_path / "userlib"
    where.mkdir()
    (where / "bt_usermod.py").write_text(textwrap.dedent(USER_MODULE))
    sys.path.insert(0, str(where))
    import bt_usermod

    yield bt_usermod
    sys.path.remove(str(where))
    sys.modules.pop("bt_usermod", None)
