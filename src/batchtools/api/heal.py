"""What the master does for the jobs while it waits or syncs: retries by reason, and the pool that
heals itself.

:func:`heal` is called by ``wait_for_jobs`` (every poll; expired jobs only count once the
scheduler said they are gone) and by ``sync_registry``. It is orchestration over the verbs
``submit_jobs`` and ``submit_workers``: a retry is a resubmission, so it obeys every rule of one
(the previous run is forgotten only once the new submission was accepted, the journal, the lease).

Retries (:class:`~batchtools.RetryPolicy`, stored in a job's resources): a job whose attempt
ended with an error or expired gets its reason decided (:func:`batchtools.core.jobstate.retry.decide`: the
scheduler's accounting, the node's evidence), and is resubmitted with scaled resources if its
policy wants it; jobs that checkpointed are resubmitted as they are (up to ``max_requeues``),
with or without a policy. Every decision is logged (logger ``batchtools``) and the ended attempt
is kept in the attempts table (:mod:`batchtools.core.jobstate.attempts`), so ``get_job_attempts`` shows
the trace.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..core.dependencies import HOLD_POOL, held_rows, hold, review, scheduler_enforces, stranded
from ..core.jobstate import attempts
from ..core.jobstate.resources import resource_sets, resources_by_id
from ..core.jobstate.retry import CONTINUED, DEFAULT_POLICY, Accounting, decide, policy_of
from ..core.persistence.tables import set_rows
from ..core.registry import RegistryState
from ..core.workerpool.pool import pool_state
from .control import kill_jobs
from .submit import submit_jobs
from .workers import heal_pool, pool_wants_healing, submit_workers

log = logging.getLogger("batchtools")
# node reasons that the scheduler's accounting may sharpen (a definite one is not asked about)
ASK_SCHEDULER = (None, "unknown", "timeout", "memory")


def wanted(reg: RegistryState) -> bool:
    """Whether anything could need healing: a retry policy, a checkpointed job, a healing pool."""
    if not reg.writeable:
        return False
    if any(r.get("retry") for r in resource_sets(reg)):
        return True
    if np.isin(reg.status["reason"].to_numpy(), list(CONTINUED)).any():
        return True
    return pool_wants_healing(reg)


def release(reg: RegistryState, system: tuple[set, set] | None = None) -> np.ndarray:
    """Submit the held jobs whose dependencies are all done, as they were asked for: through
    ``submit_jobs`` with their stored resources and chunks, or queued for the worker pool (with
    its plan's workers). Held jobs with a dependency that cannot be done as things stand get the
    reason ``dependency`` (:func:`batchtools.core.dependencies.review`). Returns the ids
    submitted. Called while the master waits or syncs; ``system``: the backend's (queued,
    running) answer, if the caller has it."""
    none = np.empty(0, np.int64)
    if not reg.writeable:
        return none
    if scheduler_enforces(reg):
        _hold_stranded(reg, system)
    if held_rows(reg).size == 0:
        return none
    ready = review(reg, system)
    if not len(ready):
        return none
    log.info("submitting %d held job(s) whose dependencies are done", len(ready))
    pooled = ready["chunk"].to_numpy() == HOLD_POOL
    for rid, group in ready[~pooled].groupby("resource_id", sort=True):
        res = resources_by_id(reg, [rid])[0] or {}
        submit_jobs(pd.DataFrame({"job_id": group["job_id"].to_numpy(),
                                  "chunk": group["chunk"].to_numpy().astype(np.int64)}), resources=res, reg=reg)
    if pooled.any():
        pool = pool_state(reg)
        plan = (pool.plan if pool is not None else None) or {}
        for rid, group in ready[pooled].groupby("resource_id", sort=True):
            submit_workers(plan.get("n", 1), ids=group["job_id"].to_numpy(), resources=resources_by_id(reg, [rid])[0],
                           idle_timeout=plan.get("idle_timeout"), heartbeat=plan.get("heartbeat", 10.0),
                           max_claim=plan.get("max_claim"), heal=plan.get("heal", False),
                           max_workers=plan.get("max_workers"), reg=reg)
    return ready["job_id"].to_numpy()


def _hold_stranded(reg: RegistryState, system: tuple[set, set] | None) -> None:
    """Jobs the scheduler holds for a dependency that failed or expired would never start: kill
    them and hold them here (reason ``dependency``), with their resources and chunks, so that a
    fix releases them as any held job."""
    ids = stranded(reg, system)
    if ids.size == 0:
        return
    st = reg.status
    pos = reg.pos(ids)
    rids = st["resource_id"].to_numpy()[pos].copy()
    chunks = pd.factorize(st["job_hash"].to_numpy()[pos])[0]
    log.warning("jobs %s wait on the scheduler for a job that failed or expired: killed, and held until it is "
                "resubmitted and done (reason 'dependency')", ids[:10].tolist())
    kill_jobs(ids, reg=reg)
    reset = np.isnan(reg.status["submitted"].to_numpy()[pos])  # killed (a job that started meanwhile goes on)
    if not reset.any():
        return
    with reg.mutation("hold jobs"):
        hold(reg, ids[reset], chunks[reset], rids[reset])
        review(reg, system)
        reg.save(("status",), meta=False)


def heal(reg: RegistryState, pos: np.ndarray | None, ended: np.ndarray) -> np.ndarray:
    """Resubmit what the retry policies and a healing pool ask for, among the jobs at status rows
    ``pos`` (None: all) whose attempt ended badly (``ended``: those that failed or expired).
    Returns the ids resubmitted."""
    if not reg.writeable:
        return np.empty(0, np.int64)
    rows = np.flatnonzero(ended) if pos is None else pos[ended]
    out = []
    if rows.size:
        out.append(_retry(reg, rows))
    out.append(heal_pool(reg, rows))
    return np.concatenate(out) if out else np.empty(0, np.int64)


def _retry(reg: RegistryState, rows: np.ndarray) -> np.ndarray:
    st = reg.status
    pool = pool_state(reg)
    hashes = st["job_hash"].to_numpy()[rows]
    keep = np.array([h is not None and not (pool is not None and h in pool.queues) for h in hashes], bool)
    rows = rows[keep]  # jobs of the worker pool: the pool looks after them
    if rows.size == 0:
        return np.empty(0, np.int64)
    seen = reg.session.heal_seen  # ended attempts already decided
    ids = st["job_id"].to_numpy()[rows]
    attempt = st["attempt"].to_numpy()[rows]
    attempt = np.where(np.isnan(attempt), 1, attempt).astype(int)
    keys = list(zip(ids.tolist(), st["job_hash"].to_numpy()[rows].tolist(), attempt.tolist()))
    new = np.array([k not in seen for k in keys], bool)
    if not new.any():
        return np.empty(0, np.int64)
    rows, ids, attempt, keys = rows[new], ids[new], attempt[new], [k for k, n in zip(keys, new) if n]
    resources = resources_by_id(reg, st["resource_id"].to_numpy()[rows])
    node = st["reason"].to_numpy()[rows].copy()
    # an expired run that was requeued by its node but never came back: it goes on from its checkpoint
    restarts = st["restart"].to_numpy()[rows]
    lost_requeue = (restarts > 0) & np.isnan(st["started"].to_numpy()[rows]) & np.isnan(st["done"].to_numpy()[rows])
    node[lost_requeue] = "requeued"
    covered = np.array([policy_of(r) is not None or node[k] in CONTINUED for k, r in enumerate(resources)], bool)
    for k in np.flatnonzero(~covered):
        seen.add(keys[k])
    if not covered.any():
        return np.empty(0, np.int64)
    sel = np.flatnonzero(covered)
    accounts = _accounts(reg, rows[sel], node[sel])
    history = attempts.table(reg)
    plan: dict[int, tuple[dict, str]] = {}  # position in rows -> (resources of the next attempt, reason)
    for k in sel.tolist():
        batch = st["batch_id"].to_numpy()[rows[k]]
        account = accounts.get(str(batch))
        reason = decide(node[k], account)
        _record_reason(reg, rows[k], reason, account)
        policy = policy_of(resources[k]) or DEFAULT_POLICY
        mine = history[history["job_id"] == ids[k]] if len(history) else history
        requeues = int(np.isin(mine["reason"].to_numpy(), list(CONTINUED)).sum()) if len(mine) else 0
        seen.add(keys[k])
        if policy.wants(reason, int(attempt[k]), requeues):
            plan[k] = (policy.scaled(resources[k], reason), reason)
        else:
            why = ("its policy does not retry " + reason if reason not in CONTINUED and reason not in policy.reasons
                   else f"it had {attempt[k]} of {policy.max_attempts} attempts" if reason not in CONTINUED
                   else f"it was requeued {requeues} times already")
            log.info("job %d: attempt %d ended (%s); not resubmitted: %s", ids[k], attempt[k], reason, why)
    if plan:
        reg.mark_dirty("status")
    return _resubmit(reg, rows, ids, attempt, resources, plan)


def _accounts(reg: RegistryState, rows: np.ndarray, node: np.ndarray) -> dict[str, Accounting]:
    """The scheduler's accounting of the runs whose node evidence leaves the cause open."""
    cf = reg.cluster_functions
    if cf is None or cf.account is None:
        return {}
    ask = np.array([r in ASK_SCHEDULER for r in node.tolist()], bool)
    batches = sorted({str(b) for b in reg.status["batch_id"].to_numpy()[rows[ask]].tolist() if b is not None})
    if not batches:
        return {}
    try:
        return cf.account(reg, batches) or {}
    except Exception as e:  # accounting is evidence, never a reason to fail
        log.info("the scheduler's accounting did not answer (%s); deciding on the node's evidence", e)
        return {}


def _record_reason(reg: RegistryState, row: int, reason: str, account: Accounting | None) -> None:
    st = reg.status
    pos = np.array([row])
    set_rows(st, pos, "reason", np.array([reason], dtype=object))
    if account is not None:
        for col, value in (("max_rss", account.max_rss), ("cpu_time", account.cpu_time)):
            if value == value:  # the scheduler's accounting of the whole run
                set_rows(st, pos, col, float(value))
        if account.signal is not None and np.isnan(st["signal"].to_numpy()[row]):
            set_rows(st, pos, "signal", float(account.signal))
    reg.mark_dirty("status")


def _resubmit(reg: RegistryState, rows: np.ndarray, ids: np.ndarray, attempt: np.ndarray, resources: list,
              plan: dict[int, tuple[dict, str]]) -> np.ndarray:
    """Submit the planned retries: jobs that ran together and get the same resources run together again."""
    if not plan:
        return np.empty(0, np.int64)
    st = reg.status
    groups: dict[str, list[int]] = {}
    for k, (res, _) in plan.items():
        groups.setdefault(repr(sorted(res.items(), key=lambda kv: kv[0])), []).append(k)
    done = []
    for members in groups.values():
        res = plan[members[0]][0]
        sub_rows = rows[members]
        old_hash = st["job_hash"].to_numpy()[sub_rows]
        chunk = pd.factorize(pd.Series(old_hash, dtype=object))[0] + 1
        df = pd.DataFrame({"job_id": ids[members], "chunk": chunk})
        nxt = {int(ids[k]): int(attempt[k]) + 1 for k in members}
        for k in members:
            before, reason = resources[k] or {}, plan[k][1]
            change = ", ".join(f"{key} {before.get(key)} -> {res.get(key)}" for key in ("walltime", "memory")
                               if before.get(key) != res.get(key))
            log.info("job %d: attempt %d ended (%s); submitting attempt %d%s", ids[k], attempt[k], reason,
                     attempt[k] + 1, f" with {change}" if change else "")
        action = "requeue" if all(plan[k][1] in CONTINUED for k in members) else "retry"
        archived = attempts.archive(reg, sub_rows, action)
        try:
            with attempts.continuing(reg, nxt):
                submit_jobs(df, resources=res, reg=reg)
        except Exception as e:
            log.warning("could not resubmit job(s) %s for their next attempt: %s", ids[members][:10].tolist(), e)
        now_attempt = st["attempt"].to_numpy()[reg.pos(ids[members])]
        accepted = np.array([now_attempt[j] == nxt[int(i)] for j, i in enumerate(ids[members])], bool)
        if (~accepted).any():
            attempts.unarchive(reg, archived[~np.isin(archived["job_id"].to_numpy(), ids[members][accepted])])
        done.append(ids[members][accepted])
    return np.concatenate(done) if done else np.empty(0, np.int64)
