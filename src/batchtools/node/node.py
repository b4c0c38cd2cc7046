"""The top of the node code: run a job collection in this process, or as this process.

``python -m batchtools.worker JOB_COLLECTION_FILE`` (the public entry point, R's
``doJobCollection``) calls :func:`main`: it redirects the process's stdout and stderr (file
descriptors, so output of C code is caught too) to the collection's log file, turns SIGTERM into
"finish the running job as failed, start no other", and runs the collection. A collection is
either a chunk of jobs (:func:`~.execute.run_chunk`) or a pool worker that claims its jobs from
the registry (:mod:`.pool_worker`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time

from ..core.contract.collection import JobCollection
from ..core.persistence.files import open_append, read_pickle, user_path
from ..core.persistence.layout import Layout
from . import checkpoint, progress
from .environment import array_index, environment_of
from .execute import report_unreadable, run_chunk
from .session import TERMINATING, redirect_output, say

UPDATE_INTERVAL = 1.0
# set (to "1") by a backend whose engine cannot cancel a running task (HyperQueue's Python API):
# the node then obeys the master's cancel markers (``Layout.cancel_marker``)
CANCEL_ENV = "BATCHTOOLS_WATCH_CANCEL"
CANCEL_INTERVAL = 1.0
# set (to "1") by a backend whose engine runs a task again when its worker is lost (Dask): the node
# then claims its collection's run with a lock on the log (see :func:`claim_run`)
RERUN_ENV = "BATCHTOOLS_ENGINE_RERUNS"


def run_collection(jc: JobCollection, update_interval: float | None, sink: list | None = None,
                   began: float | None = None) -> dict[str, int]:
    """Run ``jc`` here: its chunk of jobs, or, for a pool worker, the jobs it claims. ``began``:
    when its start-up began (default: now; a process started for it: the process's start)."""
    began = time.time() if began is None else began
    if jc.pool:
        from .pool_worker import run_pool_worker  # here: a chunk's node starts faster without it

        return run_pool_worker(jc, update_interval, sink, began)
    return run_chunk(jc, update_interval, sink, began)


def do_job_collection(
    jc: JobCollection | str | os.PathLike,
    output: str | os.PathLike | None = None,
    update_interval: float | None = None,
    sink: list | None = None,
) -> dict[str, int]:
    """Run every job of ``jc`` (a JobCollection or the path of its file).

    ``output``: a file (a path, or a file open for writing) the jobs' printed output is
    appended to (Python-level redirection); ``None`` writes to the current ``sys.stdout``. Returns counts
    ``{"done": ..., "error": ...}``. Results go to the registry's store (``results/``) and
    status updates to ``updates/``; call ``sync_registry()`` on the master to see them.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None, seed=1)
    >>> _ = bt.batch_map(lambda x: x + 1, [1, 2])
    >>> jc = bt.make_job_collection([1, 2])
    >>> bt.do_job_collection(jc, output=jc.log_file)
    {'done': 2, 'error': 0}
    """
    if not isinstance(jc, JobCollection):
        jc = read_pickle(user_path(jc))
    if output is None:
        return run_collection(jc, update_interval, sink)
    with contextlib.ExitStack() as stack:  # a path, or a file already open for appending
        fh = output if hasattr(output, "write") else stack.enter_context(open_append(user_path(output)))
        saved = sys.stdout, sys.stderr  # as contextlib.redirect_stdout/_stderr do, at less cost per collection
        sys.stdout = sys.stderr = fh
        try:
            return run_collection(jc, update_interval, sink)
        finally:
            sys.stdout, sys.stderr = saved


def _terminated(signum, frame) -> None:
    # a scheduler ending the job (walltime, memory, scancel) sends SIGTERM before SIGKILL:
    TERMINATING.set()
    checkpoint.NODE.signal = signum
    # raise, so the running job is recorded as an error with this reason
    raise SystemExit(f"terminated by {signal.Signals(signum).name} (scheduler's time or memory limit, or a kill)")


def log_file_of(jc: JobCollection) -> str:
    """The log this process writes: the collection's, or its array task's."""
    task = array_index(jc)
    return jc.log_file if task is None else str(Layout(jc.file_dir).array_log(jc.job_hash, task))


def cancel_markers(jc: JobCollection) -> list[str]:
    """The files whose existence cancels this process's collection (or array task)."""
    lay = Layout(jc.file_dir)
    out = [str(lay.cancel_marker(jc.job_hash))]
    task = array_index(jc)
    if task is not None:
        out.append(str(lay.cancel_marker(jc.job_hash, task)))
    return out


def watch_cancel(markers: list[str], interval: float = CANCEL_INTERVAL) -> bool:
    """True if a marker exists already; otherwise watch for one in a daemon thread, which ends
    this process like a scheduler's kill (SIGTERM: the running job fails, no other starts)."""
    if any(os.path.exists(m) for m in markers):
        return True

    def watch() -> None:
        while not any(os.path.exists(m) for m in markers):
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="batchtools-cancel", daemon=True).start()
    return False


def claim_run(logged_before: bool) -> bool:
    """Claim this collection's run for this process: an exclusive lock on its log (file descriptor
    1, after :func:`redirect_output`), held until the output goes elsewhere or the process ends.
    An earlier run of the collection that still goes on (an engine declared its worker dead and
    ran the task again, while the process lives on) is waited for, so two runs never overlap.
    True if the collection ran before (its log existed before this run opened it, or a run held
    it): the jobs that have a result are then skipped. On a file system without locks only the
    log tells."""
    import fcntl

    try:
        fcntl.flock(1, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        say("An earlier run of this collection is still going on (its engine lost the worker running it); "
            "waiting until it ends, then running the jobs it did not finish")
        sys.stdout.flush()
        fcntl.flock(1, fcntl.LOCK_EX)
        return True
    except OSError:
        pass
    return logged_before


def run_file(path: str, file_dir: str | None = None) -> int:
    """Run the job collection stored at ``path`` as this process; 0 if it ran (jobs may have failed),
    but 1 if a job failed under a scheduler whose node environment says ``fail_on_error`` (Slurm:
    ``afterok`` dependants start only after an exit code of 0). ``file_dir``: its registry, if the
    file is not the registry's ``jobs/<hash>.pkl``."""
    try:
        jc = read_pickle(path)
    except Exception as e:
        report_unreadable(path, e, file_dir)
        return 1
    if os.environ.get(CANCEL_ENV) == "1" and watch_cancel(cancel_markers(jc)):
        return 0  # cancelled while it waited for the engine: start nothing
    log_file = log_file_of(jc)
    if log_file:
        # an engine that runs a task again: the log, made by the first run, tells a run again
        rerun = os.environ.get(RERUN_ENV) == "1"
        logged_before = rerun and os.path.exists(log_file)
        redirect_output(log_file)
        if rerun:
            checkpoint.NODE.rerun = claim_run(logged_before)
    signal.signal(signal.SIGTERM, _terminated)
    # the time limit's warning; the scheduler's node half: restarts, requeues
    env = environment_of(jc.node_environment, jc.array_var)
    checkpoint.arm(jc.resources, pool=bool(jc.pool), env=env)
    progress.node_process()  # a stalled job that does not end may end this process
    if os.environ.get("BATCHTOOLS_DEBUG"):
        from ..core.debug import enable_debug

        enable_debug()
    try:
        # the start-up counts from the process's start (or, in a process running one collection
        # after another, from this collection's), as the node's walltime clock does
        counts = run_collection(jc, UPDATE_INTERVAL, began=checkpoint.NODE.start)
        checkpoint.requeue_if_asked()  # a job stopped to go on: its rows are written, now requeue
    finally:
        sys.stdout.flush()
    return 1 if env.fail_on_error and not jc.pool and counts.get("error") else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m batchtools.worker JOB_COLLECTION_FILE", file=sys.stderr)
        return 2
    return run_file(argv[0])
