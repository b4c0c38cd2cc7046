"""The load-balanced worker pool: a few scheduler jobs that pull the registry's jobs one by one."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import uuid

import numpy as np
import pandas as pd

from ..core.checks import check_number
from ..core.contract.backend import run_hook
from ..core.dependencies import check_after, hold, review, store_after, waiting
from ..core.jobstate import attempts
from ..core.jobstate.ids import as_id_array
from ..core.jobstate.resources import resource_id, validate_resources
from ..core.jobstate.retry import CONTINUED, DEFAULT_POLICY
from ..core.jobstate.state import forget_runs, select, terminated_ids
from ..core.persistence.tables import set_rows
from ..core.presentation.display import DisplayFrame
from ..core.registry import RegistryState, resolve
from ..core.submission import build_collection, check_not_on_system, discard_files, submit_backoff, submit_once
from ..core.workerpool.pool import ALIVE, FINAL, PoolState, pool_state

log = logging.getLogger("batchtools")


def _claim_order(ids, reg: RegistryState) -> tuple[np.ndarray, np.ndarray | None]:
    """(job ids in claim order, their estimated run times in seconds or None)."""
    if ids is None:
        return select(reg, "submitted", negate=True), None
    order = as_id_array(ids)
    if np.unique(order).size != order.size:
        raise ValueError("ids: contains duplicate job ids; each job can be queued once")
    reg.ids(order)  # existence check, names unknown ids
    runtimes = None
    if isinstance(ids, pd.DataFrame) and "runtime" in ids.columns:
        runtimes = pd.to_numeric(ids["runtime"], errors="coerce").to_numpy(dtype=float)
        if (runtimes < 0).any():
            raise ValueError("ids: the runtime column (estimated seconds) has negative values")
    return order, runtimes


def submit_workers(n_workers: int, ids=None, resources: dict | None = None, idle_timeout: float | None = None,
                   heartbeat: float = 10.0, max_claim: int | None = None, sleep=None, heal: bool = False,
                   max_workers: int | None = None, after=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """Queue jobs for a pool of ``n_workers`` worker jobs that pull them one by one.

    The workers are submitted through the registry's cluster functions like any job
    (one scheduler job each, with ``resources``: ``walltime`` in seconds, ``memory`` in MB,
    for the whole worker, not per job). Each repeatedly claims the next
    queued job, runs it exactly as a normal job runs (seed, log, result, status), and
    ends as soon as nothing is left to claim, so no allocation is held idle
    (``idle_timeout=SECONDS`` keeps it waiting that long for jobs queued later with
    ``submit_workers(0, ids)``). Jobs are claimed in
    the order of ``ids`` (default: all jobs not submitted yet, by id), e.g. longest first::

        est = bt.estimate_runtimes(bt.unwrap(bt.get_job_pars()))
        todo = est[est["type"] == "estimated"].sort_values("runtime", ascending=False)
        bt.submit_workers(4, ids=todo["job_id"])

    ``ids`` may be a DataFrame with a ``runtime`` column (estimated seconds, as
    :func:`estimate_runtimes` gives them): a worker with a ``walltime`` never claims a job
    whose estimate exceeds what is left of its walltime (it takes a later one that fits, or
    leaves: it drains before its walltime). Without estimates, a worker estimates each job by
    the longest it ran.

    Caps: never more workers than jobs to claim are submitted (none when nothing is queued, and
    it says so), and the call never waits for the scheduler. A scheduler that refuses a worker
    for now (a cap on jobs per user: Slurm's ``QOSMaxSubmitJobPerUserLimit``) is asked for no
    more in this call, which says in the scheduler's words what it refused and returns, the jobs
    queued for the workers it accepted; ``wait_for_jobs`` and ``sync_registry`` submit the others
    as the scheduler accepts them, while jobs are left to claim (asking again after ``sleep(i)``
    seconds: a number, or a function of the try ``i``; default: from the backend's polling
    interval up to a minute; at once when a worker left). ``max_workers``: never more than this
    many of the pool's workers queued or running at once (default: ``max_concurrent_jobs`` of
    the resources or the registry), so a cap you know is never asked beyond.

    ``heal=True`` keeps ``n_workers`` workers alive while jobs remain: ``wait_for_jobs`` and
    ``sync_registry`` submit a new worker for each one that died, was declared dead or left
    at its walltime, and queue the unfinished jobs of lost workers again (each job at most
    three attempts, see ``get_job_attempts``), so a killed worker's job runs again by itself.
    A call with ``n_workers >= 1`` replaces the plan of earlier calls (workers still owed, healing).

    ``n_workers=0`` only queues ``ids`` for workers already running (or still to be submitted).
    Claims take a file lock only for the claim itself; cheap jobs are claimed several at a time
    (about 50 ms of work per claim; ``max_claim`` caps that). Workers touch a heartbeat
    file every ``heartbeat`` seconds; a worker that misses three is considered dead, its
    unfinished job expired (resubmit it with ``submit_workers`` or ``submit_jobs``).
    A claimed job's ``batch_id`` and log are its worker's. Returns ``job_id`` and the
    claim ``order`` of the queued jobs.

    ``after``: job ids that every job of ``ids`` waits for, as for :func:`submit_jobs` (stored;
    None keeps what the jobs waited for before). A job whose dependencies are not all done is
    held, not queued: no worker can claim it before they are. ``wait_for_jobs`` and
    ``sync_registry`` queue it once they are done (in id order), submitting workers as the
    pool's plan says (this call's ``n_workers``, ``resources`` and settings).

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: x * 2, x=[1, 2, 3])
    >>> bt.submit_workers(1)["job_id"].tolist()
    [1, 2, 3]
    >>> bt.reduce_results_list()
    [2, 4, 6]
    """
    reg = resolve(reg)
    reg.assert_writeable("submit workers")
    cf = reg.cluster_functions
    if cf is None:
        raise ValueError("reg: no cluster functions set; e.g. reg.cluster_functions = bt.make_cluster_functions_multicore()")
    check_number("n_workers", n_workers, 0, integer=True)
    check_number("idle_timeout", idle_timeout, 0, allow_none=True)
    check_number("heartbeat", heartbeat, 0.05)
    check_number("max_claim", max_claim, 1, allow_none=True, integer=True)
    check_number("max_workers", max_workers, 1, allow_none=True, integer=True)
    if not isinstance(heal, bool):
        raise TypeError(f"heal: must be True or False, got {heal!r}")
    if idle_timeout is None:  # leave once nothing is left: no allocation is held idle
        idle_timeout = 0.0
    resources = {**reg.default_resources, **validate_resources(resources)}
    resources.pop("chunks_as_arrayjobs", None)  # a worker is one job, never an array
    if max_workers is None:
        max_workers = resources.get("max_concurrent_jobs") or reg.max_concurrent_jobs or None
    backoff = submit_backoff(reg, sleep)
    reg.sync()
    order, runtimes = _claim_order(ids, reg)
    pos = reg.pos(order)
    if order.size:
        check_not_on_system(reg, order, pos)
    dep = check_after(reg, order, after)
    wait = waiting(reg, order, dep)
    pool = pool_state(reg) or PoolState(reg)
    if pool.workers:
        pool.current_states()  # one listing: which workers live (they count against max_workers)
    if n_workers == 0 and order.size:
        if not ALIVE & set((pool.last_states or {}).values()) and not pool.owes_workers():
            raise ValueError("n_workers: 0 only adds jobs for workers already running, and none is; "
                             "pass n_workers >= 1")
    cf.check_resources(resources)
    cf.check_registry(reg)
    cf.ping()
    tended = _Tended()
    with reg.mutation("submit workers"):
        reg.session.pool = pool
        reg.layout.make_pool_dirs()
        if dep is not None:
            store_after(reg, order, dep)
        if wait.any():  # held: queued for the workers once their dependencies are done
            hold(reg, order[wait], order[wait], np.full(int(wait.sum()), float(resource_id(reg, resources))),
                 pool=True)
            review(reg)
            reg.save(("status", "resources"), meta=False)
        if (~wait).any():
            _enqueue(reg, pool, order[~wait], resources, None if runtimes is None else runtimes[~wait])
        if n_workers:
            pool.plan = {"n": n_workers, "heal": heal, "owed": 0 if heal else n_workers, "max_workers": max_workers,
                         "resources": resources, "heartbeat": float(heartbeat), "idle_timeout": float(idle_timeout),
                         "max_claim": max_claim, "max_attempts": 3}
            pool.save()
            tended = _tend(reg, pool, _round(pool), raise_first=True)
    pool.backoff = backoff
    if tended.failure is not None:
        log.warning("submit_workers: only %d of %d worker(s) were accepted", tended.started, n_workers)
        raise tended.failure
    run_hook(reg, "post_submit")
    if n_workers:
        _report(pool, tended, n_workers, order.size)
    reg.sync()
    back = np.argsort(order, kind="stable")
    return pd.DataFrame({"job_id": order[back], "order": back + 1})


@dataclasses.dataclass
class _Tended:
    """What one round of :func:`_tend` did: workers ``needed`` for the jobs left to claim, ``wanted``
    now (``max_workers`` allowing) and ``started``, the scheduler's words if it ``refused`` one, the
    jobs left to claim, the workers ``alive`` before, and an error (``failure``) that came after
    some workers were accepted."""

    needed: int = 0
    wanted: int = 0
    started: int = 0
    refused: str | None = None
    unclaimed: int = 0
    alive: int = 0
    failure: BaseException | None = None


def _round(pool: PoolState) -> _Tended:
    """How many workers the pool's plan asks for now: with ``heal``, enough to keep ``n`` alive, else
    those still owed; never more than ``max_workers`` alive at once, nor more than the jobs left to
    claim minus the workers that have not started yet (they will claim them)."""
    plan = pool.plan
    out = _Tended()
    if not plan:
        return out
    states = pool.last_states or {}
    alive = [wid for wid in pool.workers if states.get(wid, "queued") in ALIVE]  # new ones: queued
    out.alive = len(alive)
    out.unclaimed = pool.unclaimed()
    idle = sum(wid not in pool.claims.claimers for wid in alive)  # they will take jobs before any new one
    if not plan["heal"] and plan["owed"] and out.unclaimed == 0:
        log.info("pool: no job left to claim, so the %d worker(s) still owed are not needed", plan["owed"])
        plan = pool.plan = {**plan, "owed": 0, "refused": None}
        pool.save()
    need = plan["n"] - out.alive if plan["heal"] else plan["owed"]
    out.needed = max(0, min(need, out.unclaimed - idle))
    out.wanted = min(out.needed, plan["max_workers"] - out.alive) if plan.get("max_workers") else out.needed
    out.wanted = max(0, out.wanted)
    return out


def _tend(reg: RegistryState, pool: PoolState, out: _Tended, raise_first: bool = False) -> _Tended:
    """Submit the ``out.wanted`` workers of a :func:`_round` (inside a mutation), one ask each: the
    first refusal ends the round (the next round waits ``pool.backoff``). ``raise_first``: an
    error before any worker was accepted is raised (the caller's mutation undoes everything);
    a later one is returned in ``out.failure``."""
    plan = pool.plan
    blocking = reg.cluster_functions.capabilities.blocking
    for k in range(out.wanted):
        if k and blocking and not pool.unclaimed():  # the workers before ran (Interactive) and took all
            break
        wid = f"worker{uuid.uuid4().hex}"
        try:
            refused = _submit_worker(reg, pool, wid, len(pool.workers), plan)
        except BaseException as e:
            pool.workers.pop(wid, None)
            if raise_first and not out.started:
                raise  # nothing runs: undo everything
            out.failure = e  # some workers run the queue: keep what they do, then report
            break
        if refused is not None:
            out.refused = refused
            break
        out.started += 1
        try:
            run_hook(reg, "post_submit_job")
        except BaseException as e:  # the worker runs: keep it recorded, then report
            out.failure = e
            break
    # owed: the workers needed that were not submitted (refused, or beyond max_workers); not those
    # that would find no job
    owed = plan["owed"] if plan["heal"] else max(0, out.needed - out.started)
    refused = out.refused if out.refused is not None else None if out.started else plan.get("refused")
    if (owed, refused) != (plan["owed"], plan.get("refused")):  # a refusal is kept until a worker is accepted
        pool.plan = {**plan, "owed": owed, "refused": refused}
        pool.save()
    if out.refused is not None or out.failure is not None:
        pool.note_refusal(out.refused or str(out.failure), out.alive + out.started)
    elif out.started:
        pool.note_refusal(None, 0)
    return out


def _report(pool: PoolState, t: _Tended, n_workers: int, queued: int) -> None:
    """What submit_workers tells: nothing to claim, what the scheduler refused, fewer workers and why."""
    plan = pool.plan
    if t.started == 0 and t.refused is None and t.unclaimed == 0:
        log.warning("submit_workers: no job to claim (%s), so no worker was submitted",
                    "the queued jobs were claimed already" if queued else
                    "every job was submitted already; see find_not_submitted(), or pass ids= to run jobs again")
        return
    if t.refused is not None:
        owed = plan["n"] - t.alive - t.started if plan["heal"] else plan["owed"]
        log.warning("submit_workers: the scheduler accepted %d of %d worker(s) and refused the next (%s). "
                    "The %d queued job(s) wait for workers: wait_for_jobs() and sync_registry() submit %s as the "
                    "scheduler accepts them, while jobs are left to claim (max_workers=N never asks for more "
                    "than N at once)", t.started, n_workers, t.refused, t.unclaimed,
                    f"the other {owed}" if owed > 0 else "more")
        return
    if t.started < n_workers:
        cap = plan.get("max_workers")
        why = (f"at most {cap} at once (max_workers; {t.alive} were alive)" if cap and t.alive + t.started >= cap
               else f"{t.unclaimed} job(s) to claim, {t.alive} worker(s) alive")
        log.info("submit_workers: submitted %d of %d worker(s): %s", t.started, n_workers, why)
    if t.started:
        log.info("submitted %d pool worker(s) for %d queued job(s)%s", t.started, t.unclaimed,
                 "; the pool heals itself" if plan["heal"] else "")


def _enqueue(reg: RegistryState, pool: PoolState, order: np.ndarray, resources: dict,
             runtimes: np.ndarray | None = None) -> str:
    """Queue ``order`` for the pool's workers (inside a mutation); the queue's name."""
    pos = reg.pos(order)
    queue = f"pool{uuid.uuid4().hex}"
    jc = build_collection(reg, order, resources, job_hash=queue)
    if runtimes is not None:  # estimates: workers claim only jobs that fit their remaining walltime
        for spec, r in zip(jc.jobs, runtimes.tolist()):
            spec["runtime"] = r if r == r else None
    reg.write_pickle(reg.layout.pool_queue(queue), jc)
    # previous runs' results: set aside now, dropped once the new state is saved, back if this fails
    moved = reg.store.stash(terminated_ids(reg, pos).tolist(), queue)
    reg.on_rollback(lambda: reg.store.restore(moved, queue))
    reg.after_commit(lambda: reg.store.drop(moved, queue))
    forget_runs(reg, pos)
    st = reg.status
    set_rows(st, pos, "submitted", time.time())
    set_rows(st, pos, "resource_id", float(resource_id(reg, resources)))
    for col in ("job_hash", "batch_id"):
        set_rows(st, pos, col, queue)
    attempts.on_submitted(reg, pos)
    reg.mark_dirty("status")
    reg.save(("status", "resources", "attempts"), meta=False)
    pool.queues[queue] = order
    pool.save()
    pool.claims.enqueue(queue, order.size)  # from here on workers may take them
    # if no worker can be started, nobody may ever take them
    reg.on_rollback(lambda: pool.claims.cancel(queue, order.tolist()))
    return queue


def _submit_worker(reg: RegistryState, pool: PoolState, wid: str, k: int, plan: dict) -> str | None:
    """Ask the backend once to start pool worker ``wid`` (the ``k``-th of the pool) as ``plan``
    says: None once it accepted it (recorded), else the scheduler's words of its refusal
    (nothing recorded); SubmitError on a permanent error."""
    cf = reg.cluster_functions
    # an ordinary collection without jobs (same set-up on the node), plus the pool settings
    wjc = dataclasses.replace(
        build_collection(reg, np.empty(0, np.int64), plan["resources"], job_hash=wid),
        job_names=[f"worker{k + 1}"],
        pool={"worker": wid, "heartbeat": plan["heartbeat"], "idle_timeout": plan["idle_timeout"],
              "max_claim": plan["max_claim"], "n_workers": int(plan["n"])},
    )
    path = reg.layout.job_collection(wid)
    if cf.store_job_collection:
        reg.write_pickle(path, wjc)
    # record the worker before it can claim (Interactive runs it inside submit_job)
    pool.workers[wid] = {"batch_id": None, "log_file": f"{wid}.log", "submitted": time.time(),
                         "heartbeat": plan["heartbeat"], "idle_timeout": plan["idle_timeout"], "state": "submitted"}
    result = submit_once(reg, wjc)
    cf.flush()  # a worker goes at once (a few of them: nothing to gain from sending them together)
    if result.status != 0:
        pool.workers.pop(wid, None)
        discard_files(reg, wid)
        return result.msg or "refused for now"
    batch = result.batch_id
    if isinstance(batch, (list, tuple, np.ndarray)):
        batch = batch[0]
    logs = result.log_file or wjc.log_file
    logs = logs[0] if isinstance(logs, (list, tuple)) else logs
    pool.workers[wid].update(batch_id=str(batch), log_file=os.path.basename(logs))
    pool.save()
    return None


def get_workers(reg: RegistryState | None = None) -> pd.DataFrame:
    """The pool's workers: ``worker_id``, ``batch_id``, ``state`` (queued, running, exited,
    stale = stopped beating, gone = left the scheduler without a goodbye, cancelled = still
    queued when no job was left to claim), ``submitted``,
    ``last_beat``, jobs ``claimed``, ``done`` and ``error`` (whole numbers: the jobs whose
    current run is the worker's, so far), ``time_startup`` (its start-up: the process starting,
    imports, loading the jobs' function, data, problems and algorithms, a Timedelta; part of no
    job's run time) and ``log_file``. The times are UTC Timestamps; printed (and in Jupyter)
    they are shown in local time, to the second.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> len(bt.get_workers())
    0
    """
    reg = resolve(reg)
    reg.sync()
    cols = ["worker_id", "batch_id", "state", "submitted", "last_beat", "claimed", "done", "error", "time_startup",
            "log_file"]
    pool = pool_state(reg)
    if pool is None or not pool.workers:
        return DisplayFrame({c: pd.Series(dtype=object) for c in cols})
    states = pool.current_states()
    st = reg.status
    batch = st["batch_id"].to_numpy()
    done = st["done"].notna().to_numpy()
    failed = st["error"].notna().to_numpy()
    startup = st["startup"].to_numpy()
    rows = []
    for wid, w in pool.workers.items():
        try:
            beat = os.stat(reg.layout.worker_beat(wid)).st_mtime
        except FileNotFoundError:
            beat = np.nan
        mine = batch == w["batch_id"] if w["batch_id"] is not None else np.zeros(len(batch), bool)  # none seen
        spent = startup[mine]
        spent = spent[~np.isnan(spent)]
        rows.append([wid, w["batch_id"], states[wid], w["submitted"], beat, int(mine.sum()),
                     int((mine & done & ~failed).sum()), int((mine & failed).sum()),
                     float(spent.sum()) if spent.size else np.nan, w["log_file"]])
    df = DisplayFrame(rows, columns=cols)
    for c in ("submitted", "last_beat"):
        df[c] = pd.to_datetime(df[c].astype(float), unit="s", utc=True)
    for c in ("claimed", "done", "error"):
        df[c] = df[c].astype(np.int64)
    df["time_startup"] = pd.to_timedelta(df["time_startup"].astype(float), unit="s")
    return df


# ------------------------------------------------------------------ the pool that heals itself
# deaths of pooled jobs that are the worker's lot, not the job's fault: such jobs are queued again
POOL_RERUN = ("worker_lost", "timeout", "node_fail", "preempted", "unknown", "checkpointed", "requeued")


def pool_wants_healing(reg: RegistryState) -> bool:
    """Whether the registry's pool needs looking after while the master waits or syncs: workers
    to submit (``submit_workers(heal=True)``, workers the scheduler refused so far) or workers
    that may still wait in the scheduler's queue (cancelled if nothing is left for them)."""
    pool = pool_state(reg)
    return pool is not None and (pool.owes_workers() or any(
        w.get("state") not in FINAL and w.get("idle_timeout") == 0 for w in pool.workers.values()))


def _cancel_unneeded(reg: RegistryState, pool: PoolState) -> None:
    """Cancel the workers that still wait in the scheduler's queue once no job is left to claim:
    they would start only to find nothing (workers that wait for more jobs, ``idle_timeout`` > 0,
    are kept)."""
    states = pool.last_states or {}
    waiting = [wid for wid, w in pool.workers.items() if states.get(wid) == "queued" and w.get("batch_id")
               and w.get("idle_timeout") == 0 and w.get("state") not in FINAL]
    if not waiting or pool.unclaimed():
        return
    cf = reg.cluster_functions
    gone = []
    with reg.mutation("cancel unneeded pool workers"):
        for wid in waiting:
            if reg.layout.worker_beat(wid).exists():
                continue  # it started meanwhile: it leaves by itself
            try:
                cf.kill_job(reg, pool.workers[wid]["batch_id"])
            except Exception as e:  # it starts, finds nothing and leaves
                log.info("pool: could not cancel worker %s: %s", pool.workers[wid]["batch_id"], e)
                continue
            pool.workers[wid]["state"] = states[wid] = "cancelled"
            gone.append(pool.workers[wid]["batch_id"])
        if gone:
            pool.save()
    if gone:
        log.info("pool: no job left to claim: cancelled %d worker(s) still queued (%s)", len(gone), ", ".join(gone))


def heal_pool(reg: RegistryState, rows: np.ndarray) -> np.ndarray:
    """Keep the pool going as its plan says: with ``heal=True``, queue again the pooled jobs at
    status rows ``rows`` (jobs whose attempt ended badly) that were lost with their worker; submit
    the workers it asks for (new ones for those that died or left, those the scheduler refused
    so far) while unclaimed jobs remain. Returns the ids queued again. Called while the master
    waits or syncs (:mod:`batchtools.api.heal`)."""
    pool = pool_state(reg)
    none = np.empty(0, np.int64)
    if pool is None or not reg.writeable:
        return none
    if pool.last_states is None:
        pool.current_states()
    _cancel_unneeded(reg, pool)
    if not pool.owes_workers():
        return none
    h = pool.plan
    st = reg.status
    lost, reasons, nxt = _lost_jobs(reg, pool, rows) if h["heal"] else (none, [], {})
    if not lost.size and not pool.may_ask():
        return none
    t = _round(pool)
    if not lost.size and not t.wanted:
        return none
    with reg.mutation("heal the worker pool"):
        if lost.size:
            pos = reg.pos(lost)
            for job_id, reason in zip(lost.tolist(), reasons):
                log.info("pool: job %d ended with its worker (%s) in attempt %d; queued again as attempt %d",
                         job_id, reason, nxt[job_id] - 1, nxt[job_id])
            set_rows(st, pos, "reason", np.array(reasons, dtype=object))
            attempts.archive(reg, pos, "worker_lost")
            with attempts.continuing(reg, nxt):
                _enqueue(reg, pool, lost, h["resources"])
            t = _round(pool)
        t = _tend(reg, pool, t)
        if isinstance(t.failure, Exception):
            # the same error would come every time: submit no more workers, so that jobs no live
            # worker can take are reported expired instead of waiting forever
            pool.plan = {**pool.plan, "heal": False, "owed": 0, "refused": None}
            pool.save()
    if t.failure is not None:
        if not isinstance(t.failure, Exception):
            raise t.failure
        log.warning("pool: could not submit a new worker (%s); no more workers are submitted: the queued jobs "
                    "run on the live workers, and those no worker takes expire (submit_workers() again)", t.failure)
    if t.started:
        log.info("pool: %d worker(s) alive and %d job(s) left: submitted %d new worker(s)%s", t.alive, t.unclaimed,
                 t.started, f"; the scheduler refused the next ({t.refused})" if t.refused else "")
    elif t.refused:
        log.info("pool: the scheduler refused a new worker (%s); asking again later", t.refused)
    return lost


def _lost_jobs(reg: RegistryState, pool: PoolState, rows: np.ndarray) -> tuple[np.ndarray, list[str], dict]:
    """Pooled jobs among ``rows`` to queue again: (ids, reasons, next attempt by id)."""
    st = reg.status
    if rows.size == 0:
        return np.empty(0, np.int64), [], {}
    pooled = pd.Series(st["job_hash"].to_numpy()[rows], dtype=object).isin(set(pool.queues)).to_numpy()
    rows = rows[pooled]
    seen = reg.session.heal_seen
    history = attempts.table(reg)
    out, reasons, nxt = [], [], {}
    for row in rows.tolist():
        job_id = int(st["job_id"].to_numpy()[row])
        attempt = st["attempt"].to_numpy()[row]
        attempt = 1 if attempt != attempt else int(attempt)
        key = (job_id, st["job_hash"].to_numpy()[row], attempt)
        if key in seen:
            continue
        seen.add(key)
        reason = st["reason"].to_numpy()[row]
        if np.isnan(st["done"].to_numpy()[row]):
            reason = reason if reason in ("requeued", "checkpointed") else "worker_lost"
        if reason not in POOL_RERUN:
            continue
        if reason in CONTINUED:
            mine = history[history["job_id"] == job_id] if len(history) else history
            if len(mine) and np.isin(mine["reason"].to_numpy(), list(CONTINUED)).sum() >= DEFAULT_POLICY.max_requeues:
                continue
        elif attempt >= int(pool.plan.get("max_attempts", 3)):
            log.info("pool: job %d ended with its worker (%s) in attempt %d, its last", job_id, reason, attempt)
            continue
        out.append(job_id)
        reasons.append(reason)
        nxt[job_id] = attempt + 1
    return np.array(sorted(out), dtype=np.int64), [reasons[out.index(i)] for i in sorted(out)], nxt
