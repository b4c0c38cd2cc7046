"""A node's session around the jobs it runs: banner, working directory, imported packages,
sourced files, exports, thread-count resources, warnings into the log.

Everything here runs on the node (no pandas).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Any

from .._version import __version__
from ..core.contract.collection import JobCollection
from ..core.contract.protocol import BANNER, MARK
from ..core.errors import CorruptFileError
from ..core.persistence.files import read_pickle
from ..core.persistence.layout import Layout, is_data_file

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
# the resources applied_resources applies
_APPLIED = (*THREAD_VARS, "inner_backend")
_cache: dict[tuple, Any] = {}
# set when the scheduler asked this process to end (SIGTERM): start no further job
TERMINATING = threading.Event()


def say(msg: str, flush: bool = True) -> None:
    """One marker line in the log (``### [bt]: ...``), flushed at once: a log file is block-buffered,
    so a running job's ``Starting job`` line would otherwise reach ``get_log`` only when it ends.
    Without ``flush`` it goes with the next line flushed (a job's end marker: with the next job's
    start, or the collection's last line, a few microseconds later)."""
    print(f"{MARK}{msg}", file=sys.stdout, flush=flush)


def load_cached(path: str | os.PathLike) -> Any:
    """Unpickle ``path``, a file of the registry's set-up (its function and arguments, an export,
    a problem, an algorithm), once per process (keyed by path, inode, mtime and size: a file
    rewritten within the file system's timestamp granularity, at the same size, is still read
    again, since every registry write replaces the file by a new one). A missing or unreadable one
    is a CorruptFileError naming it: no job runs without a part of its set-up."""
    try:
        st = os.stat(path)
        key = (os.fspath(path), st.st_ino, st.st_mtime_ns, st.st_size)
        if key not in _cache:
            _cache[key] = read_pickle(path)
    except Exception as e:
        what = "is missing" if isinstance(e, FileNotFoundError) else f"cannot be read ({type(e).__name__}: {e})"
        raise CorruptFileError(f"{path}: this file of the registry's set-up {what}; no job can run without it. Put "
                               "it back (e.g. from the copy the registry came from), or define it again") from e
    return _cache[key]


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Every warning a job raises goes to its log (whatever the session did to ``showwarning``)."""
    sys.stdout.write(warnings.formatwarning(message, category, filename, lineno, line))


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
    exports = Layout(jc.file_dir).dir("exports")
    if exports.is_dir():
        for entry in os.scandir(exports):
            if is_data_file(entry.name):
                namespace[entry.name[:-4]] = load_cached(entry.path)


@contextlib.contextmanager
def applied_resources(resources: dict[str, Any]):
    """Thread-count variables, threadpoolctl limits and joblib's backend for a chunk."""
    if all(resources.get(k) is None for k in _APPLIED):  # nothing to apply (most chunks): no set-up
        yield
        return
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
        # the variables reach libraries loaded from now on; threadpoolctl also limits those already
        # loaded (a warm Multicore fork server may have imported them before this job)
        for res, api in (("blas_threads", "blas"), ("omp_threads", "openmp")):
            if resources.get(res) is not None:
                with contextlib.suppress(ImportError):
                    from threadpoolctl import threadpool_limits

                    stack.enter_context(threadpool_limits(limits=int(resources[res]), user_api=api))
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


@contextlib.contextmanager
def node_session(jc: JobCollection, what: str, then: str | None = None, flush: bool = True):
    """A node's set-up around running jobs: banner, working directory, resources, warnings to the
    log (``what`` after the banner, ``then`` after the working directory; ``flush=False``: written
    with the first job's start marker, as when the master runs the collection itself)."""
    old_cwd = os.getcwd()
    work_dir = jc.work_dir if jc.work_dir and (jc.work_dir == old_cwd or os.path.isdir(jc.work_dir)) else None
    lines = [f"{BANNER}{__version__} (Python {sys.version.split()[0]})", what]
    if work_dir:
        lines.append(f"Setting working directory to '{work_dir}'")
    if then is not None:
        lines.append(then)
    say(f"\n{MARK}".join(lines), flush)  # one write (Interactive runs a collection per job)
    try:
        if work_dir:
            if work_dir not in sys.path:  # user modules next to the script import as they did there
                sys.path.insert(0, work_dir)
            if work_dir != old_cwd:
                os.chdir(work_dir)
        with applied_resources(jc.resources), warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _log_warning
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.chdir(old_cwd)


def redirect_output(log_file: str) -> None:
    """Send this process's file descriptors 1 and 2 (and ``sys.stdout``/``sys.stderr``) to the end of ``log_file``."""
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:  # a scheduler may have made it (Slurm's --output) under a umask that lets anyone write it
        mode = os.fstat(fd).st_mode & 0o7777
        if mode & 0o022:
            os.fchmod(fd, mode & ~0o022)
    except OSError:  # not ours to change: leave it as it is
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    # one Python-level stream for both, so tracebacks and prints stay in order
    sys.stdout = sys.stderr = open(1, "w", encoding="utf-8", errors="replace", closefd=False)
