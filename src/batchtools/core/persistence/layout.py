"""The registry folder's files and folders by name: settings, tables, journal, undo log, job
collections and scripts, logs, results, checkpoints, update files, caches, the pool's folder.

A module that owns the files inside one folder names them itself: the lease (``lease.json`` and its
take-over files), the pool's claim log and queues, the stores (a result file by string on the
node's hot path, set-aside results, ``results.sqlite``), the undo log's backups, packs, and the
quarantine of unreadable update files.

Everything is relative to ``file_dir``, so a registry stays portable: copy the folder and load it
elsewhere. This module is part of the node path: it imports nothing but the standard library.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
from pathlib import Path

# The format of the registry folder. 2: every table of the registry's kind is written when it is
# made, so a missing one is lost, never "empty" (format 1 registries may predate ``attempts.pkl``).
# 3: tables are saved as dicts of their columns, empty ones as one value (core/tables.encode_table);
# older pickled DataFrames are still read.
# A newer format is refused; an older one is read, and upgraded by the first writeable load.
FORMAT_VERSION = 3

SUBDIRS = ("jobs", "results", "packs", "logs", "updates", "exports", "external", "problems", "algorithms")


def is_data_file(name: str) -> bool:
    """Whether a file name in a registry folder is a finished data file (``*.pkl``; files being
    written or set aside start with a dot).

    >>> is_data_file("7.pkl"), is_data_file(".tmp-7.pkl"), is_data_file("7.log")
    (True, False, False)
    """
    return name.endswith(".pkl") and not name.startswith(".")


@functools.lru_cache(maxsize=64)
def layout_of(file_dir: str) -> Layout:
    """The (cached) Layout of a registry folder given as a string: for hot paths."""
    return Layout(file_dir)


class Layout:
    """Paths inside one registry directory.

    >>> lay = Layout("/data/reg")
    >>> str(lay.result(7)), str(lay.log("job1"))
    ('/data/reg/results/7.pkl', '/data/reg/logs/job1.log')
    """

    def __init__(self, file_dir: str | os.PathLike):
        self.file_dir = Path(file_dir).expanduser().absolute()  # "~/reg" is the home folder's, as R's fs
        self._dirs: dict[str, Path] = {}
        self._logs: str | None = None  # the logs folder as a string (hot path: a log name per collection)

    def __repr__(self) -> str:
        return f"Layout({str(self.file_dir)!r})"

    def dir(self, name: str) -> Path:
        d = self._dirs.get(name)
        if d is None:
            d = self._dirs[name] = self.file_dir / name
        return d

    # -------------------------------------------------------- master's files
    @property
    def meta(self) -> Path:
        return self.file_dir / "registry.pkl"

    def table(self, name: str) -> Path:
        return self.file_dir / f"{name}.pkl"

    @property
    def txn(self) -> Path:
        """The undo log of a change in progress (see :mod:`batchtools.core.persistence.txn`)."""
        return self.file_dir / ".txn"

    @property
    def status_summary(self) -> Path:
        """Counts of the status table as last saved (see :mod:`batchtools.core.jobstate.counts`)."""
        return self.file_dir / "status.counts"

    @property
    def journal(self) -> Path:
        """The submission journal (see :mod:`batchtools.core.contract.journal`)."""
        return self.file_dir / "submissions.log"

    @property
    def user_function(self) -> Path:
        return self.file_dir / "user_function.pkl"

    @property
    def more_args(self) -> Path:
        return self.file_dir / "more_args.pkl"

    def export(self, name: str) -> Path:
        return self.file_dir / "exports" / f"{name}.pkl"

    def problem(self, name: str) -> Path:
        return self.file_dir / "problems" / f"{name}.pkl"

    def algorithm(self, name: str) -> Path:
        return self.file_dir / "algorithms" / f"{name}.pkl"

    # ------------------------------------------------------ per submission
    def job_collection(self, job_hash: str) -> Path:
        return self.file_dir / "jobs" / f"{job_hash}.pkl"

    def script(self, job_hash: str) -> Path:
        """The rendered job script of a scheduler backend."""
        return self.file_dir / "jobs" / f"{job_hash}.sh"

    def cancel_marker(self, job_hash: str, task: int | str | None = None) -> Path:
        """Written by the master to cancel a job collection (or one of its array tasks) on an
        engine that cannot cancel a task itself (HyperQueue); the node watches for it."""
        name = job_hash if task is None else f"{job_hash}.{task}"
        return self.file_dir / "jobs" / f"{name}.cancel"

    def log(self, job_hash: str) -> Path:
        return self.dir("logs") / f"{job_hash}.log"

    def log_str(self, job_hash: str) -> str:
        """:meth:`log` as a string, made without pathlib (once per collection of a submission)."""
        if self._logs is None:
            self._logs = os.fspath(self.dir("logs"))
        return f"{self._logs}{os.sep}{job_hash}.log"

    def log_named(self, name: str) -> Path:
        """A log file by its name (as ``status.log_file`` records it)."""
        return self.dir("logs") / name

    @staticmethod
    def array_log_name(job_hash: str, task: int | str) -> str:
        """File name of array task ``task``'s log (schedulers write one per task)."""
        return f"{job_hash}-{task}.log"

    def array_log(self, job_hash: str, task: int | str) -> Path:
        return self.file_dir / "logs" / self.array_log_name(job_hash, task)

    # ------------------------------------------------------- node's files
    def result(self, job_id: int) -> Path:
        return self.file_dir / "results" / f"{int(job_id)}.pkl"

    def external_dir(self, job_id: int) -> Path:
        """A job's own folder for files of its own (``job.external_dir``, R's ``.job$external.dir``):
        made when the job asks for it, kept while the job is submitted."""
        return self.file_dir / "external" / str(int(job_id))

    def checkpoint(self, job_id: int) -> Path:
        """The last checkpoint a job saved (``job.checkpoint(obj)``), read back as ``job.restored``."""
        return self.file_dir / "checkpoints" / f"{int(job_id)}.pkl"

    def update(self, job_hash: str, tag: str) -> Path:
        """Status update file of a job collection; ``tag`` keeps array tasks apart."""
        return self.file_dir / "updates" / f"{job_hash}-{tag}.pkl"

    def instance_cache(self, problem: str, prob_pars: dict, repl: int, version: str = "") -> Path:
        """Cached instance of ``problem`` (as defined by ``version``: each ``add_problem`` makes a new
        one) for one parameter setting and replication."""
        key = hashlib.md5(pickle.dumps((problem, sorted(prob_pars.items()), repl), protocol=4)).hexdigest()
        return self.problem_cache(problem) / version / f"{key}.pkl"

    def problem_cache(self, problem: str) -> Path:
        """The folder of every cached instance of ``problem``."""
        return self.file_dir / "external" / "cache" / problem

    # ------------------------------------------------------- worker pool
    @property
    def pool(self) -> Path:
        return self.file_dir / "pool"

    @property
    def pool_state(self) -> Path:
        return self.pool / "state.pkl"

    def pool_queue(self, queue: str) -> Path:
        return self.pool / "queue" / f"{queue}.pkl"

    def worker_beat(self, worker: str) -> Path:
        """A pool worker's heartbeat file, touched every few seconds."""
        return self.pool / "workers" / f"{worker}.beat"

    def worker_exit(self, worker: str) -> Path:
        """Written by a pool worker that ends normally."""
        return self.pool / "workers" / f"{worker}.exit"

    @property
    def fs_clock(self) -> Path:
        """Touched to read the file server's idea of "now"."""
        return self.pool / "workers" / ".clock"

    def make_dirs(self) -> None:
        """The registry's folders, never world-writable whatever the umask."""
        os.makedirs(self.file_dir, mode=0o775, exist_ok=True)
        for sub in SUBDIRS:
            os.makedirs(self.file_dir / sub, mode=0o775, exist_ok=True)

    def make_pool_dirs(self) -> None:
        os.makedirs(self.pool, mode=0o775, exist_ok=True)
        for sub in ("queue", "workers"):
            os.makedirs(self.pool / sub, mode=0o775, exist_ok=True)
