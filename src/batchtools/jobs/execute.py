"""Run a JobCollection: set up the node, run each job, write results, logs and updates.

This is the only code that runs on a node. It writes nothing but files named
after its own job collection (log, updates) or its own job ids (results), so
nodes never contend for the registry's tables.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import os
import pickle
import sys
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.files import Layout, atomic_write_bytes, read_pickle
from .collection import JobCollection
from .job import Job

log = logging.getLogger("batchtools")

NAN = math.nan
THREAD_VARS = {
    "omp_threads": ("OMP_NUM_THREADS",),
    "blas_threads": (
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "BLIS_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
        "NUMEXPR_NUM_THREADS",
    ),
}
_cache: dict[tuple, Any] = {}
# set when the scheduler asked this process to end (SIGTERM): start no further job
TERMINATING = threading.Event()


def load_cached(path: str | os.PathLike) -> Any:
    """Unpickle ``path`` once per process (keyed by path, mtime and size)."""
    st = os.stat(path)
    key = (os.fspath(path), st.st_mtime_ns, st.st_size)
    if key not in _cache:
        _cache[key] = read_pickle(path)
    return _cache[key]


def dump_result(obj: Any) -> bytes:
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # lambdas, local classes: cloudpickle handles them
        import cloudpickle

        return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


class UpdateBuffer:
    """Collects (job_id, started, done, error, mem_used) rows and writes them to
    ``updates/<hash>-<tag>-<n>.pkl``. With ``interval`` a background thread flushes
    every ``interval`` seconds, so the master sees jobs start while they run."""

    def __init__(self, layout: Layout, job_hash: str, interval: float | None = None, sink: list | None = None):
        self.layout = layout
        self.sink = sink
        self.job_hash = job_hash
        self.tag = uuid.uuid4().hex[:8]
        self.rows: dict[int, list] = {}
        self.seq = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        if interval:
            self._thread = threading.Thread(target=self._loop, args=(interval,), daemon=True)
            self._thread.start()

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.flush()

    def set(self, job_id: int, started=NAN, done=NAN, error=None, mem_used=NAN) -> None:
        with self.lock:
            row = self.rows.get(job_id)
            if row is None:
                self.rows[job_id] = [job_id, started, done, error, mem_used]
            else:
                for i, v in ((1, started), (2, done), (3, error), (4, mem_used)):
                    if v is not None and v == v:
                        row[i] = v

    def flush(self) -> None:
        with self.lock:
            if not self.rows:
                return
            data = list(self.rows.values())
            if self.sink is not None:  # in-process run: hand rows to the master directly
                self.sink.append((self.job_hash, data))
                self.rows.clear()
                return
            path = self.layout.update(self.job_hash, f"{self.tag}-{self.seq}")
            atomic_write_bytes(path, pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
            self.rows.clear()
            self.seq += 1

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.flush()


class MemorySampler:
    """Peak resident memory (MiB) of this process while a job runs, sampled with psutil."""

    def __init__(self, interval: float = 0.01):
        import psutil

        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        return self.peak / 2**20


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Every warning a job raises goes to its log (whatever the session did to ``showwarning``)."""
    sys.stdout.write(warnings.formatwarning(message, category, filename, lineno, line))


def say(msg: str) -> None:
    print(f"### [bt]: {msg}", file=sys.stdout)


# --------------------------------------------------------------------- set-up
def import_packages(packages, namespace: dict) -> None:
    """Import each module (``"numpy"`` or ``"numpy as np"``) and bind it in ``namespace``."""
    for spec in packages:
        name, _, alias = (p.strip() for p in spec.partition(" as "))
        module = importlib.import_module(name)
        if alias:
            namespace[alias] = module
        else:
            top = name.split(".")[0]
            namespace[top] = sys.modules[top]


def prepare_namespace(jc: JobCollection, namespace: dict) -> None:
    """Packages, sourced files, loaded objects and exports, as R's node set-up does."""
    import_packages(jc.packages, namespace)
    for path in jc.source:
        code = compile(Path(path).read_text(), path, "exec")
        scope: dict = {"__name__": "__batchtools_source__", "__file__": path}
        exec(code, scope)
        namespace.update({k: v for k, v in scope.items() if not k.startswith("__")})
    for path in jc.load:
        obj = read_pickle(path)
        namespace.update(obj if isinstance(obj, dict) else {Path(path).stem: obj})
    exports = Path(jc.file_dir) / "exports"
    if exports.is_dir():
        for entry in os.scandir(exports):
            if entry.name.endswith(".pkl") and not entry.name.startswith("."):
                namespace[entry.name[:-4]] = load_cached(entry.path)


@contextlib.contextmanager
def applied_resources(resources: dict[str, Any]):
    """Thread-count variables, threadpoolctl limits and joblib's backend for a chunk."""
    saved: dict[str, str | None] = {}
    stack = contextlib.ExitStack()
    try:
        for res, names in THREAD_VARS.items():
            if resources.get(res) is not None:
                n = str(int(resources[res]))
                for var in names:
                    saved[var] = os.environ.get(var)
                    os.environ[var] = n
                say(f"Setting {', '.join(names)} to {n}")
        blas = resources.get("blas_threads")
        if blas is not None:
            with contextlib.suppress(ImportError):
                from threadpoolctl import threadpool_limits

                stack.enter_context(threadpool_limits(limits=int(blas)))
        backend = resources.get("inner_backend")
        if backend is not None:
            import joblib

            n_jobs = int(resources.get("ncpus") or 1)
            stack.enter_context(joblib.parallel_config(backend=backend, n_jobs=n_jobs))
            say(f"Inner parallelization: joblib backend '{backend}' with n_jobs={n_jobs}")
        yield
    finally:
        stack.close()
        for var, old in saved.items():
            if old is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = old


def restore_code_files(namespace: dict, code_files: dict[str, str], extra=()) -> None:
    """Give functions pickled by value their source file back, so tracebacks name it."""
    if not code_files:
        return
    seen: set[int] = set()

    def fix(fn) -> None:
        code = getattr(fn, "__code__", None)
        path = code_files.get(getattr(fn, "__module__", None) or "")
        if code is None or path is None or id(fn) in seen or code.co_filename != "<dynamic-code>":
            return
        seen.add(id(fn))
        fn.__code__ = _with_filename(code, path)

    for obj in list(namespace.values()) + list(extra):
        fix(obj)


def _with_filename(code, path: str):
    consts = tuple(_with_filename(c, path) if hasattr(c, "co_filename") else c for c in code.co_consts)
    return code.replace(co_filename=path, co_consts=consts)


def user_traceback(e: BaseException):
    """The exception's traceback without batchtools' own frames."""
    tb = e.__traceback__
    here = os.path.dirname(os.path.abspath(__file__))
    while tb is not None and tb.tb_next is not None and os.path.dirname(tb.tb_frame.f_code.co_filename) == here:
        tb = tb.tb_next
    return tb


# ------------------------------------------------------------------ runners
def map_runner(jc: JobCollection) -> Callable[[Job], Any]:
    layout = Layout(jc.file_dir)
    fun = load_cached(layout.user_function)
    more_args = load_cached(layout.more_args) if layout.more_args.exists() else {}
    namespace = getattr(fun, "__globals__", {})
    prepare_namespace(jc, namespace)
    restore_code_files(namespace, jc.code_files, [fun])
    positional = list(jc.positional)

    def run(job: Job) -> Any:
        pars = job.pars
        args = [pars[c] for c in positional]
        kwargs = {k: v for k, v in pars.items() if k not in positional} if positional else dict(pars)
        kwargs.update(more_args)
        if jc.pass_job:
            kwargs["job"] = job
        return fun(*args, **kwargs)

    return run


def make_runner(jc: JobCollection):
    if jc.kind == "experiment":
        from .experiment import experiment_runner

        return experiment_runner(jc)
    return map_runner(jc)


def make_job(jc: JobCollection, spec: dict[str, Any]):
    if jc.kind == "experiment":
        from .experiment import ExperimentJob

        return ExperimentJob.from_spec(jc, spec)
    job_id = spec["job_id"]
    return Job(id=job_id, pars=spec["pars"], seed=jc.seed + job_id, resources=jc.resources, file_dir=jc.file_dir)


def select_jobs(jc: JobCollection) -> list[dict[str, Any]]:
    """All jobs, or the one picked by the array task variable (1-based) on the node."""
    if jc.array_var and jc.array_jobs:
        value = os.environ.get(jc.array_var)
        if value is None:
            raise RuntimeError(f"array job: environment variable {jc.array_var} is not set")
        return [jc.jobs[int(value) - 1]]
    return jc.jobs


# -------------------------------------------------------------------- main
def do_job_collection(
    jc: JobCollection | str | os.PathLike,
    output: str | os.PathLike | None = None,
    update_interval: float | None = None,
    sink: list | None = None,
) -> dict[str, int]:
    """Run every job of ``jc`` (a JobCollection or the path of its file).

    ``output``: a file the jobs' printed output is appended to (Python-level
    redirection); ``None`` writes to the current ``sys.stdout``. Returns counts
    ``{"done": ..., "error": ...}``. Results go to ``results/<job_id>.pkl`` and
    status updates to ``updates/``; call ``sync_registry()`` on the master to see them.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None, seed=1)
    >>> _ = bt.batch_map(lambda x: x + 1, [1, 2])
    >>> jc = bt.make_job_collection([1, 2])
    >>> bt.do_job_collection(jc, output=jc.log_file)
    {'done': 2, 'error': 0}
    """
    if not isinstance(jc, JobCollection):
        jc = read_pickle(jc)
    stack = contextlib.ExitStack()
    with stack:
        if output is not None:
            fh = stack.enter_context(open(output, "a", encoding="utf-8", errors="replace"))
            stack.enter_context(contextlib.redirect_stdout(fh))
            stack.enter_context(contextlib.redirect_stderr(fh))
        return _run_collection(jc, update_interval, sink)


@contextlib.contextmanager
def node_session(jc: JobCollection, what: str):
    """A node's set-up around running jobs: banner, working directory, resources, warnings to the log."""
    from .. import __version__

    say(f"This is batchtools v{__version__} (Python {sys.version.split()[0]})")
    say(what)
    old_cwd = os.getcwd()
    try:
        if jc.work_dir and os.path.isdir(jc.work_dir):
            if jc.work_dir not in sys.path:  # user modules next to the script import as they did there
                sys.path.insert(0, jc.work_dir)
            os.chdir(jc.work_dir)
            say(f"Setting working directory to '{jc.work_dir}'")
        with applied_resources(jc.resources), warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _log_warning
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.chdir(old_cwd)


def _run_collection(jc: JobCollection, update_interval: float | None, sink: list | None = None) -> dict[str, int]:
    if jc.pool:  # a pool worker: claims its jobs from the registry instead of carrying them
        from .pool_runner import run_pool_worker

        return run_pool_worker(jc, update_interval, sink)
    layout = Layout(jc.file_dir)
    counts = {"done": 0, "error": 0}
    jobs = select_jobs(jc)
    buffer = UpdateBuffer(layout, jc.job_hash, update_interval, sink)
    measure = bool(jc.resources.get("measure_memory"))
    try:
        with node_session(jc, f"Starting calculation of {len(jobs)} jobs"):
            say("Memory measurement " + ("enabled" if measure else "disabled"))
            try:
                runner = make_runner(jc)
            except Exception as e:  # set-up failed: every job of the chunk errors
                traceback.print_exc(file=sys.stdout)
                msg = f"Set-up failed: {type(e).__name__}: {e}"
                now = time.time()
                for spec in jobs:
                    buffer.set(spec["job_id"], started=now, done=now, error=msg)
                counts["error"] = len(jobs)
                return counts
            if jc.hooks.get("pre_do_collection"):
                jc.hooks["pre_do_collection"](jc)
            for spec in jobs:
                if TERMINATING.is_set():
                    say("Terminating: the remaining jobs of this collection are not started")
                    break
                ok = _run_job(jc, spec, runner, layout, buffer, measure)
                counts["done" if ok else "error"] += 1
            if jc.hooks.get("post_do_collection"):
                jc.hooks["post_do_collection"](jc)
            say("Calculation finished!")
    finally:
        buffer.close()
    return counts


def _run_job(jc, spec, runner, layout: Layout, buffer: UpdateBuffer, measure: bool) -> bool:
    job_id = spec["job_id"]
    job = make_job(jc, spec)
    say(f"Starting job [batchtools job.id={job_id}]")
    say(f"Setting seed to {job.seed} ...")
    job.seed_rngs()
    buffer.set(job_id, started=time.time())
    sampler = MemorySampler() if measure else None
    error = None
    try:
        result = runner(job)
        atomic_write_bytes(layout.result(job_id), dump_result(result))
    except (Exception, SystemExit) as e:
        sys.stdout.flush()
        traceback.print_exception(type(e), e, user_traceback(e), file=sys.stdout)
        error = f"{type(e).__name__}: {e}"
    mem = sampler.stop() if sampler else NAN
    if mem == mem:
        say(f"Memory used: {mem:.1f} MiB")
    buffer.set(job_id, done=time.time(), error=error, mem_used=mem)
    if error is None:
        say(f"Job terminated successfully [batchtools job.id={job_id}]")
    else:
        say(f"Job terminated with an exception [batchtools job.id={job_id}]")
    return error is None
