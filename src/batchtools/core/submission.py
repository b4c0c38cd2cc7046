"""A submission as one object (:class:`Submission`), and the services it shares with
``submit_workers`` and the testing helpers: building a job collection and handing it to the
backend with retries.

A job's previous run is forgotten only once its new submission was accepted: the results of the
previous run are set aside before a chunk is handed to the backend and put back if the backend
refuses it; the status rows change only for accepted chunks.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from collections.abc import Callable

import numpy as np
import pandas as pd

from .cached import lookup, take
from .contract.backend import NODE_HOOKS, SubmitJobResult, run_hook
from .contract.collection import JobCollection
from .contract.journal import Journal, chunk_hash, inprocess_prefix
from .errors import LeaseError, SubmitError
from .jobstate import attempts
from .jobstate.ids import as_id_array
from .jobstate.resources import PER_JOB, resource_id, validate_resources
from .jobstate.state import forget_runs, masks, select, terminated_ids
from .persistence.files import unlink_quietly, write_pickle
from .persistence.tables import set_rows

log = logging.getLogger("batchtools")
SPEC_WINDOW = 50_000  # job specs a submission looks up at once (at least)


def sleep_function(sleep, default: Callable[[int], float]) -> Callable[[int], float]:
    """``sleep``: None (backend default), seconds, or a function of the iteration number."""
    if sleep is None:
        return default
    if callable(sleep):
        return sleep
    if isinstance(sleep, (int, float)) and not isinstance(sleep, bool) and 0 <= sleep < float("inf"):
        return lambda i: float(sleep)
    raise TypeError(f"sleep: must be None, a number of seconds >= 0, or a function of the iteration; got {sleep!r}")


def submit_backoff(reg, sleep) -> Callable[[int], float]:
    """The wait before the next try after a temporary submit error (a full node, a busy scheduler):
    ``sleep`` as :func:`sleep_function` takes it, else the registry's, else backing off from the
    backend's polling interval up to a minute."""
    cf = reg.cluster_functions
    return sleep_function(reg.sleep if sleep is None else sleep, lambda i: min(cf.poll * 1.5**i, 60.0))


def check_not_on_system(reg, ids: np.ndarray, pos: np.ndarray) -> None:
    """Refuse to submit jobs ``ids`` (status rows ``pos``) while any is queued or running."""
    busy = ids[masks(reg, pos)["system"]]
    if busy.size:
        raise ValueError(f"ids: {busy.size} job(s) are still queued or running, e.g. {busy[:5].tolist()}; "
                         "wait_for_jobs() or kill_jobs() them first")


def collection_fields(reg) -> dict:
    """The fields every job collection of ``reg`` shares (a submission computes them once)."""
    cf = reg.cluster_functions
    return dict(
        file_dir=str(reg.file_dir), work_dir=reg.work_dir, seed=reg.seed, kind=reg.kind, packages=reg.packages,
        source=reg.source, load=reg.load, positional=list(reg.positional), pass_job=reg.pass_job,
        array_var=getattr(cf, "array_var", None), python=sys.executable,
        node_environment=getattr(cf, "node_environment_ref", None),
        code_files=dict(reg.extra.get("code_files", {})),
        hooks={k: v for k, v in getattr(cf, "hooks", {}).items() if k in NODE_HOOKS},
        store=reg.store, submission=uuid.uuid4().hex, start_reports=bool(getattr(getattr(cf, "capabilities", None), "start_reports", False)),
        preload=tuple(dict.fromkeys([*(p.partition(" as ")[0].strip() for p in reg.packages),
                                     *reg.extra.get("preload", ())])),
    )


def build_collection(reg, sel: np.ndarray, resources: dict, job_hash: str | None = None,
                     specs: list | None = None, names: list | None = None, common: dict | None = None,
                     chunk: int | None = None, after: tuple[str, ...] = ()) -> JobCollection:
    """JobCollection of checked, sorted ids ``sel`` with final ``resources`` (``specs`` and
    ``names``: the jobs' specs and names, if the caller has them already; ``common``: the
    registry's :func:`collection_fields`, if the caller has them already; ``chunk``: its chunk
    number in a submission; ``after``: the scheduler ids it waits for, for a backend that
    declares ``dependencies``)."""
    job_hash = job_hash or f"job{uuid.uuid4().hex}"
    if names is None:
        names = reg.status["job_name"].to_numpy()[reg.pos(sel)].tolist()
    return JobCollection(
        job_hash=job_hash, jobs=reg.definitions.specs(sel) if specs is None else specs, resources=resources,
        log_file=reg.layout.log_str(job_hash), array_jobs=bool(resources.get("chunks_as_arrayjobs")),
        job_names=names, chunk=chunk, after=tuple(after), **(collection_fields(reg) if common is None else common),
    )


def submit_once(reg, jc: JobCollection) -> SubmitJobResult:
    """Hand ``jc`` to the backend once (the ``pre_submit_job`` hook first): its answer, status 0
    (accepted) or 1-100 (refused for now: a full queue, a cap on jobs per user, a busy
    scheduler); SubmitError on a permanent error (101-200)."""
    cf = reg.cluster_functions
    # this session may still start jobs (one stat): a session that took the lease over may
    # submit the same jobs (issue 24: hundreds ran twice when this was checked only at saves)
    reg.assert_writeable("submit jobs")
    run_hook(reg, "pre_submit_job")
    result = cf.submit_job(reg, jc)
    if not isinstance(result, SubmitJobResult):
        raise TypeError(f"cluster functions {cf.name}: submit_job must return a SubmitJobResult, "
                        f"got {type(result).__name__}")
    if result.status > 100:
        raise SubmitError(f"Fatal error occurred while submitting with {cf.name}: {result.msg}")
    return result


def submit_with_retries(reg, jc: JobCollection, sleep_fn: Callable[[int], float],
                        waiting: Callable[[str, float], None] | None = None) -> SubmitJobResult:
    """Hand ``jc`` to the backend, retrying temporary errors; SubmitError on a permanent one,
    LeaseError once another session took the registry's lease (checked before every attempt).
    The ``pre_submit_job`` hook runs before every attempt (the caller runs ``post_submit_job`` once
    it has recorded the accepted submission). ``waiting(message, seconds)`` is told of every
    temporary error (the scheduler's words) before the wait for the next try."""
    i = 0
    while True:
        result = submit_once(reg, jc)
        if result.status == 0:
            return result
        wait = sleep_fn(i)
        log.info("temporary submit error (%s), retrying in %.1fs", result.msg, wait)
        if waiting is not None:
            waiting(result.msg, wait)
        time.sleep(wait)
        i += 1


class Submission:
    """One call of ``submit_jobs``: plan -> hand over a chunk -> accepted or refused -> close.

    The constructor plans and writes nothing: it groups the jobs into chunks (ordered by chunk
    number, split where an array would pass the scheduler's limit) and merges and checks every
    chunk's resources. :meth:`open` begins the journal (and finds a full disk before anything
    runs), :meth:`hand_over` hands one chunk to the backend, and leaving the ``with`` block closes
    the submission, also when it failed. The object owns every record of "this submission" and
    their one undo: the status values of chunks accepted but not yet recorded, the previous runs'
    results set aside (dropped once the status of the new runs is saved, put back if the chunk is
    refused), ``reg.inflight`` (collections whose packs a sweep must keep), the journal, and what
    the backend holds back and the shared pack writer (sent and closed at the end). Accepted
    chunks survive a master killed before the next save (the journal); jobs run inside this
    process (Interactive) die with it: their chunks are journalled all at once, before any runs,
    and a dead session's successor records those whose run left evidence.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: x, x=[1, 2, 3])
    >>> sub = Submission(reg, pd.DataFrame({"job_id": [3, 1, 2], "chunk": [2, 1, 1]}), {}, lambda i: 0.0)
    >>> len(sub.groups), sub.size
    (2, 3)
    >>> with sub.open():
    ...     sub.hand_over(0)
    2
    >>> bt.find_submitted(reg=reg)["job_id"].tolist(), reg.inflight
    ([1, 2], set())
    """

    def __init__(self, reg, ids_arg, resources: dict, sleep_fn: Callable[[int], float], after=None):
        self.reg, self.cf, self.sleep_fn = reg, reg.cluster_functions, sleep_fn
        ids, chunks, per_job = _plan_ids(ids_arg, reg)
        self.planned = (ids, chunks)  # what the call returns: also the jobs taken from the cache
        self.found = None
        if ids.size:
            pos = reg.pos(ids)
            check_not_on_system(reg, ids, pos)
            # jobs whose result the shared cache holds are not handed to the backend (taken at the end)
            if after is not None:  # the call's dependencies (else the stored ones) are part of a job's key
                try:
                    after = np.unique(as_id_array(after, "after"))
                except (TypeError, ValueError):
                    after = None  # refused with a clear error (dependencies.check_after) before anything is taken
            self.found = lookup(reg, ids, pos, after)
            if self.found is not None and self.found.taken.any():
                keep = ~self.found.taken
                ids, chunks, pos = ids[keep], chunks[keep], pos[keep]
                if per_job is not None:
                    per_job = per_job[keep].reset_index(drop=True)
        self.size = ids.size
        if ids.size == 0:
            self.ids, self.chunks, self.groups = ids, chunks, []
            return
        # group jobs by chunk (ordered by chunk value) and resources per chunk
        order = np.lexsort((ids, chunks))
        self.ids, self.chunks, self.pos = ids[order], chunks[order], pos[order]
        chunks = self.chunks
        if per_job is not None:
            per_job = per_job.iloc[order].reset_index(drop=True)
        bounds = np.flatnonzero(np.r_[True, chunks[1:] != chunks[:-1], True])
        groups = [(bounds[k], bounds[k + 1]) for k in range(len(bounds) - 1)]
        self.groups = _split_arrays(reg, groups, resources)
        self.cf.ping()  # a backend with a server (HyperQueue, Dask): unreachable, nothing is written
        self.chunk_res = []
        for a, b in self.groups:
            res = dict(resources)
            if per_job is not None:
                block = per_job.iloc[a:b]
                if len(block.astype(object).where(block.notna(), None).drop_duplicates()) > 1:
                    raise ValueError(f"ids: jobs in chunk {chunks[a]} have different per-job resources; "
                                     "jobs of one chunk must share resources")
                res.update({k: _plain(v) for k, v in block.iloc[0].items() if not pd.isna(v)})
                res = validate_resources(res, "ids")
            self.cf.check_resources(res, "ids" if per_job is not None else "resources")
            self.chunk_res.append(res)
        self.per_job = per_job is not None
        self.max_jobs = resources.get("max_concurrent_jobs") or reg.max_concurrent_jobs
        self.res_ids: dict[int, int] = {}
        self.new_batches: set[str] = set()  # batch ids of this call (not in the status table until recorded)
        self.rec = {k: np.full(ids.size, np.nan) for k in ("submitted", "resource_id")}
        self.rec_obj = {k: np.full(ids.size, None, dtype=object) for k in ("batch_id", "log_file", "job_hash")}
        self.accepted = 0  # jobs [0, accepted) were accepted by the backend
        self.recorded = 0  # jobs [0, recorded) are in the status table
        self.stashes: list[tuple[list, str]] = []  # results of previous runs set aside, per accepted chunk
        self.lost: LeaseError | None = None  # another session took the lease: this one records nothing more
        self.refused_since: float | None = None  # when the current wait for a refusing scheduler began
        self.said: set[str] = set()  # the refusals told so far
        self.after: dict[int, tuple[str, ...]] = {}  # chunk -> the scheduler ids it waits for (set by the caller)

    def open(self) -> Submission:
        """Begin: the journal (in-process chunks journalled all at once), the ``pre_submit`` hook."""
        reg, ids = self.reg, self.ids
        self._specs = (0, 0, [])  # (first, end, specs of ids[first:end]): the window ahead, see _specs_of
        self.names = reg.status["job_name"].to_numpy()[self.pos].tolist()
        self.common = collection_fields(reg)
        self.journal = Journal(reg.layout.journal)
        self.journal.begin()
        self.prefix = inprocess_prefix(self.common["submission"]) if self.cf.capabilities.in_process else None
        if self.prefix is not None:
            self.journal.inprocess(self.prefix, ids, self.groups, time.time(), self.chunk_res)
        self.ran = None  # (batch id, log file) the in-process chunks ran with, as last journalled
        self.previous = set(terminated_ids(reg, self.pos).tolist())  # jobs whose earlier run may have left a result
        run_hook(reg, "pre_submit")
        self.last_save = time.time()
        return self

    def hand_over(self, k: int) -> int:
        """Hand chunk ``k`` to the backend (first waiting for free slots under
        ``max_concurrent_jobs``), retrying while it refuses for now; the number of its jobs once
        accepted. Refused for good (or Ctrl-C, or the lease lost): undone and raised."""
        reg, (a, b), res = self.reg, self.groups[k], self.chunk_res[k]
        ids = self.ids[a:b]
        if self.max_jobs:
            # an array job only occupies as many slots as its throttle lets run
            self._throttle(min(b - a, self.max_jobs) if res.get("chunks_as_arrayjobs") else b - a)
        jc = build_collection(reg, ids, res, specs=self._specs_of(a, b), names=self.names[a:b], common=self.common,
                              chunk=int(self.chunks[a]), after=self.after.get(k, ()),
                              job_hash=None if self.prefix is None else chunk_hash(self.prefix, k))
        if self.cf.store_job_collection:
            write_pickle(reg.layout.job_collection(jc.job_hash), jc)
        t0 = time.time()
        moved = reg.store.stash([i for i in ids.tolist() if i in self.previous], jc.job_hash) \
            if self.previous else []
        reg.inflight.add(jc.job_hash)
        try:
            if self.prefix is None:
                self.journal.intent(jc.job_hash, ids)
            result = submit_with_retries(reg, jc, self.sleep_fn, self._waiting)
        except BaseException:
            self._undo(jc.job_hash, moved)
            raise
        self._accept(k, jc, result, t0, moved)
        return int(b - a)

    def _specs_of(self, a: int, b: int) -> list:
        """The specs of jobs ``ids[a:b]``, looked up for a window of at least :data:`SPEC_WINDOW`
        jobs at a time (chunks are handed over in order): every job's spec is looked up once, not
        per chunk, and a submission holds the specs of one window, not of all its jobs (a million
        took 0.4 GiB)."""
        first, end, specs = self._specs
        if not (first <= a and b <= end):
            kept = specs[a - first:] if first <= a < end else []  # the window's rest: looked up already
            start = a + len(kept)
            end = max(b, min(a + SPEC_WINDOW, self.ids.size))
            first, specs = a, kept + self.reg.definitions.specs(self.ids[start:end])
            self._specs = (first, end, specs)
        return specs[a - first:b - first]

    def _undo(self, job_hash: str, moved: list) -> None:
        """The one undo of a chunk the backend did not take: memory and files as before it."""
        try:
            self.journal.refused(job_hash)
        except OSError:
            pass
        self.reg.inflight.discard(job_hash)
        self.reg.store.restore(moved, job_hash)
        discard_files(self.reg, job_hash)

    def _accept(self, k: int, jc: JobCollection, result: SubmitJobResult, t0: float, moved: list) -> None:
        reg, (a, b), res = self.reg, self.groups[k], self.chunk_res[k]
        if self.refused_since is not None:
            log.info("submit_jobs: the scheduler accepts jobs again (after %.0fs)", time.time() - self.refused_since)
            self.refused_since = None
        self.stashes.append((moved, jc.job_hash))
        if not self.cf.store_job_files and "script" in jc.__dict__:  # rendered by cf_brew_template
            unlink_quietly([jc.__dict__["script"]])
        batch = result.batch_id
        if isinstance(batch, (list, tuple, np.ndarray)):
            batch = np.array([str(x) for x in batch], dtype=object)
        else:
            batch = str(batch)
        self.new_batches.update(batch.tolist() if isinstance(batch, np.ndarray) else [batch])
        rec, rec_obj = self.rec, self.rec_obj
        rec["submitted"][a:b] = t0
        key = id(res) if self.per_job else 0
        if key not in self.res_ids:
            self.res_ids[key] = resource_id(reg, res)
        rec["resource_id"][a:b] = self.res_ids[key]
        rec_obj["batch_id"][a:b] = batch
        logs = result.log_file or jc.log_file
        rec_obj["log_file"][a:b] = ([os.path.basename(x) for x in logs] if isinstance(logs, (list, tuple))
                                    else os.path.basename(logs))
        rec_obj["job_hash"][a:b] = jc.job_hash
        self.accepted = b  # also if journalling it fails below: the backend has it, the status must say so
        if self.prefix is None:
            self.journal.accepted(jc.job_hash, self.ids[a:b], t0,
                                  rec_obj["batch_id"][a:b] if isinstance(batch, np.ndarray) else batch,
                                  rec_obj["log_file"][a:b].tolist() if isinstance(logs, (list, tuple))
                                  else rec_obj["log_file"][a], res)
        else:
            self.ran = _journal_ran(self.journal, self.prefix, k, self.ran, rec_obj["batch_id"][a:b],
                                    rec_obj["log_file"][a:b])
        run_hook(reg, "post_submit_job")  # the chunk is journalled: a failing hook loses nothing

    def save_if_due(self) -> None:
        """Record the accepted chunks every 10 seconds (a long submission keeps its status saved)."""
        if time.time() - self.last_save > 10:
            self.record()

    def record(self) -> None:
        """Write the accepted chunks not yet recorded into the status table and save; then the
        previous runs' results set aside for them can go."""
        reg, a, b = self.reg, self.recorded, self.accepted
        values = {k: v[a:b] for k, v in {**self.rec, **self.rec_obj}.items()}
        pos = self.pos[a:b]
        if pos.size:  # their previous runs forgotten, merged with any status the jobs already reported
            forget_runs(reg, pos)
            st = reg.status
            for col, arr in values.items():
                set_rows(st, pos, col, arr)
            attempts.on_submitted(reg, pos)
            reg.mark_dirty("status")
        reg.inflight.clear()
        reg.sync()
        reg.save(meta=False)
        self.recorded = b
        for moved, tag in self.stashes:  # the new state is saved: the previous runs' results can go
            reg.store.drop(moved, tag)
        self.stashes.clear()
        self.last_save = time.time()

    def __enter__(self) -> Submission:
        return self

    def __exit__(self, typ, exc, tb) -> None:
        try:
            if isinstance(exc, LeaseError):
                self.lost = exc
                handed = (f"The session that took it over records those {self.accepted} from the submission journal"
                          if self.prefix is None else
                          f"Those {self.accepted} ran in this process: the session that took it over recorded, "
                          "from the submission journal, those that had finished when it did; a job still running "
                          "then runs again when it is submitted there")
                raise LeaseError(
                    f"submit_jobs stopped after handing {self.accepted} of {self.size} job(s) to the backend: {exc} "
                    f"{handed}; the other {self.size - self.accepted} were not submitted: submit them from the "
                    "session that holds the lease.") from None
        finally:
            self.close()

    def close(self) -> None:
        """Send what the backend held back, close the shared packs, record what was accepted and
        empty the journal (unless another session took the lease: the journal and tables are its)."""
        try:
            self.cf.flush()  # what the backend held back (and the journal names) goes, also when the lease went
        finally:
            self.reg.store.close_packs()  # the pack collections run in this process shared, also if one was refused
            if self.lost is None:
                if self.accepted > self.recorded or self.stashes:
                    self.record()
                self.journal.clear()  # every accepted chunk is in the saved status now
            else:
                self.journal.close()  # the new holder replayed and removed it: nothing more is written to it
            log.debug("submitted %d of %d jobs in %d chunks", self.accepted, self.size, len(self.groups))

    def take_cached(self) -> int:
        """Make the jobs whose result the cache holds done from it (after every chunk was handed
        over: a call that failed before takes none); how many."""
        if self.found is None or not self.found.ids.size:
            return 0
        take(self.reg, self.found)
        return int(self.found.ids.size)

    def submitted(self) -> pd.DataFrame:
        """``job_id`` and ``chunk`` of the planned jobs (those taken from the cache too), by id."""
        ids, chunks = self.planned
        if ids.size == 0:
            return pd.DataFrame({"job_id": np.empty(0, np.int64), "chunk": np.empty(0, np.int64)})
        order_back = np.argsort(ids, kind="stable")
        return pd.DataFrame({"job_id": ids[order_back], "chunk": chunks[order_back]})

    def _waiting(self, msg: str, wait: float) -> None:
        """Say why the submission waits: the first time in a call as a warning (the scheduler's
        words, where it stands, what to do under a cap on jobs per user), other refusals as info."""
        if self.refused_since is None:
            self.refused_since = time.time()
        if msg in self.said:
            return
        first = not self.said
        self.said.add(msg)
        accepted, total, max_jobs = self.accepted, self.size, self.max_jobs
        if not first:
            log.info("submit_jobs: the scheduler refuses again: %s (%d of %d jobs submitted)", msg, accepted, total)
            return
        advice = ("; submit_workers(n) runs all of them on n pool workers, or set max_concurrent_jobs to the cap "
                  "(reg.max_concurrent_jobs = N, or resources={'max_concurrent_jobs': N}) so that submit_jobs waits "
                  "for free slots instead of being refused" if not max_jobs else
                  f"; max_concurrent_jobs is {max_jobs}: the scheduler's cap is lower, or other jobs of yours fill it")
        log.warning("submit_jobs: the scheduler refuses more jobs for now (%s). %d of %d jobs are submitted; the "
                    "rest are submitted as it accepts them (retrying; Ctrl-C stops and keeps what was submitted)%s",
                    msg, accepted, total, advice)

    def _throttle(self, n_new: int) -> None:
        """Wait until ``n_new`` more jobs fit under ``max_concurrent_jobs`` of this registry's jobs on the system."""
        reg, cf = self.reg, self.cf
        i = 0
        while True:
            q, r = cf.list_on_system(reg)
            on_system = q | r
            ours = self.new_batches | set(reg.status["batch_id"].dropna())
            active = len(on_system & ours)
            if active + n_new <= self.max_jobs or active == 0:
                return
            wait = self.sleep_fn(i)
            if cf.wait is not None:
                cf.wait(min(wait, 1.0))
            else:
                time.sleep(wait)
            reg.sync()
            i += 1


def discard_files(reg, job_hash: str) -> None:
    """Remove the files of a collection the backend did not take (its collection and script)."""
    unlink_quietly([reg.layout.job_collection(job_hash), reg.layout.script(job_hash)])


def _plan_ids(ids_arg, reg) -> tuple[np.ndarray, np.ndarray, pd.DataFrame | None]:
    """(job ids, chunk number per job, per-job resource columns or None).

    As in R, only the ``chunk`` column and the per-job resources (``PER_JOB``) of an ``ids``
    frame count; its other columns (job parameters, status, the result of ``get_job_table``)
    are ignored. A missing per-job value means "not set for this job".
    """
    per_job = None
    if ids_arg is None:
        sel = select(reg, "submitted", negate=True)
        return sel, np.arange(1, sel.size + 1), None
    ids = reg.ids(ids_arg, keep_order=True)  # names duplicated and unknown ids
    chunks = np.arange(1, ids.size + 1)
    if isinstance(ids_arg, pd.DataFrame):
        if "chunk" in ids_arg.columns:
            chunk_col = ids_arg["chunk"]
            if chunk_col.isna().any():
                raise ValueError("ids: the 'chunk' column has missing values; give every job a chunk number")
            try:
                chunks = as_id_array(chunk_col, "ids['chunk']")
            except TypeError:
                raise TypeError("ids: the 'chunk' column must hold whole numbers (chunk ids), "
                                f"got {chunk_col.head(3).tolist()}") from None
        cols = [c for c in PER_JOB if c in ids_arg.columns]
        if cols:
            per_job = ids_arg[cols].reset_index(drop=True)
    return ids, chunks, per_job


def _journal_ran(journal: Journal, prefix: str, k: int, ran: tuple | None, batch: np.ndarray,
                 logs: np.ndarray) -> tuple | None:
    """Journal the batch id and log of in-process chunk ``k`` (jobs ``batch``, ``logs``) unless
    they are those of the chunks before it (``ran``, what was last journalled); the new ``ran``."""
    uniform = batch.size == 1 or (len(set(batch.tolist())) == 1 and len(set(logs.tolist())) == 1)
    now = (batch[0], logs[0]) if uniform else None
    if now == ran and now is not None:
        return ran
    try:  # what a successor records for the chunks from here on (their jobs ran already)
        if uniform:
            journal.ran(prefix, k, batch[0], logs[0])
        else:
            journal.ran(prefix, k, batch, logs, single=True)
    except OSError as e:  # a full disk: a successor records them with an unknown batch id
        log.debug("could not journal the batch id of an in-process chunk: %s", e)
        return None
    return now


def _plain(value):
    """A per-job resource value as a plain Python value (a whole float, as a column with missing
    values holds its integers, becomes an int)."""
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _split_arrays(reg, groups: list, resources: dict) -> list:
    """Split chunks that would become arrays larger than the scheduler allows."""
    cf = reg.cluster_functions
    if cf.max_array_size is None or not resources.get("chunks_as_arrayjobs"):
        return groups
    if max(b - a for a, b in groups) <= 1:
        return groups
    limit = cf.max_array_size(reg)
    if not limit:
        return groups
    out = []
    for a, b in groups:
        out.extend((s, min(s + limit, b)) for s in range(a, b, limit))
    if len(out) > len(groups):
        log.info("split %d array job(s) into %d to stay within the scheduler's array size limit of %d",
                 len(groups), len(out), limit)
    return out
