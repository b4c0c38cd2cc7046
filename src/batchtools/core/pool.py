"""The master's view of the worker pool: which jobs each worker claimed, which workers live.

Only the master runs this. It replays the claim log (see :mod:`.claims`) into the status table
(a claimed job's ``batch_id`` and ``log_file`` become its worker's), and it adjusts the
scheduler's answer for status queries: jobs waiting in the pool count as queued while a worker
is alive, and a worker that stopped beating counts as gone, so its unfinished job is expired.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from .claims import ClaimLog, fs_now, slot_of, worker_of
from .files import read_pickle
from .tables import set_rows

log = logging.getLogger("batchtools")

QUEUE_PREFIX = "pool"
# a worker that has not started yet and cannot be seen on the scheduler counts as alive this long
START_GRACE = 60.0
ALIVE = frozenset({"queued", "running"})
FINAL = frozenset({"exited", "stale", "cancelled"})  # a worker in one of these states stays in it


class PoolState:
    """Master-side state of ``reg``'s pool, kept in ``pool/state.pkl``."""

    def __init__(self, reg):
        self.reg = reg
        self.layout = reg.layout
        self.dir = reg.layout.pool
        self.claims = ClaimLog(self.dir)
        self.workers: dict[str, dict[str, Any]] = {}
        self.queues: dict[str, np.ndarray] = {}  # queue -> job ids in claim order
        self.unresolved: list = []  # claims by workers this master has not recorded yet
        # what the last submit_workers asked for: n workers (kept alive with heal=True, else
        # "owed": those not submitted yet), max_workers at once, and the workers' settings
        self.plan: dict[str, Any] | None = None
        self.last_states: dict[str, str] | None = None  # worker states of the last adjust (one listing)
        # this session's asking for workers the scheduler refused: when it refused, how many
        # workers were alive then, how many times in a row, and the wait before asking again
        self.refusal: tuple[float, int, int] | None = None
        self.backoff = lambda i: min(1.5**i, 60.0)
        path = self.layout.pool_state
        if path.exists():
            state = read_pickle(path)
            self.workers, self.queues = state["workers"], state["queues"]
            self.plan = state.get("plan")
            if self.plan is None and state.get("heal"):  # written before plans: a healing pool
                self.plan = {**state["heal"], "heal": True, "owed": 0, "max_workers": None}

    def save(self) -> None:
        self.reg.write_pickle(self.layout.pool_state, {"workers": self.workers, "queues": self.queues,
                                                       "plan": self.plan})

    # ------------------------------------------------------------------ plan
    def owes_workers(self) -> bool:
        """Whether the plan may want workers submitted: a healing pool, or workers still owed (the
        scheduler refused them so far)."""
        return bool(self.plan) and bool(self.plan["heal"] or self.plan["owed"] > 0)

    def awaits_workers(self) -> bool:
        """Whether the queued jobs wait for workers the scheduler refused so far (they are queued,
        not lost, even while no worker lives)."""
        return bool(self.plan) and bool(self.plan["owed"] > 0 or self.plan.get("refused"))

    def unclaimed(self) -> int:
        """Queued jobs no worker has claimed, cancelled ones left out."""
        self.claims.refresh()
        total = 0
        for name, q in self.claims.queues.items():
            left = q.left
            ids = self.queues.get(name)
            if q.cancelled and left and ids is not None:
                rest = np.setdiff1d(np.arange(q.cursor, q.n), np.fromiter(q.taken, np.int64, len(q.taken)))
                left = int((~np.isin(ids[rest], list(q.cancelled))).sum())
            total += left
        return total

    def note_refusal(self, refused: str | None, alive: int) -> None:
        """Remember a refused worker (the next ask waits), or forget the last refusal (accepted)."""
        if refused is None:
            self.refusal = None
            return
        tries = self.refusal[2] + 1 if self.refusal else 0
        self.refusal = (time.time(), alive, tries)

    def may_ask(self) -> bool:
        """Whether to ask the scheduler for workers now: not refused lately, or refused longer than
        ``backoff(tries)`` ago, or a worker left since (a freed slot under a cap)."""
        if self.refusal is None:
            return True
        when, alive, tries = self.refusal
        states = self.last_states or {}
        now_alive = sum(states.get(wid, "queued") in ALIVE for wid in self.workers)
        return now_alive < alive or time.time() - when >= self.backoff(tries)

    # ---------------------------------------------------------------- claims
    def apply_claims(self) -> int:
        """Give claimed jobs their worker's batch id and log file; returns the jobs updated."""
        self.claims.refresh()
        todo = self.unresolved + self.claims.take_claims()
        self.unresolved = []
        if not todo:
            return 0
        st = self.reg.status
        hashes = st["job_hash"].to_numpy()
        changed = 0
        for c in todo:
            w = self.workers.get(worker_of(c.worker))
            ids = self.queues.get(c.queue)
            if w is None or w["batch_id"] is None or ids is None:
                self.unresolved.append(c)
                continue
            pos = self.reg.pos(ids[c.start:c.start + c.count])
            pos = pos[hashes[pos] == c.queue]
            if pos.size:
                slot = slot_of(c.worker)  # a device slot of the worker logs to its own file
                set_rows(st, pos, "batch_id", w["batch_id"])
                set_rows(st, pos, "log_file", w["log_file"] if slot is None
                         else self.layout.array_log_name(worker_of(c.worker), slot))
                changed += pos.size
        if changed:
            self.reg.mark_dirty("status")
        return changed

    # ------------------------------------------------------------- liveness
    def worker_states(self, q: set[str], r: set[str]) -> dict[str, str]:
        """worker id -> "queued", "running", "exited", "stale" (stopped beating), "cancelled"
        (still queued when no job was left for it) or "gone" (not on the scheduler any more, e.g.
        killed, without a goodbye)."""
        cf = self.reg.cluster_functions
        can_list = cf is not None and cf.list_jobs is not None
        fs_latency = getattr(cf, "fs_latency", 0) or 0
        now = None
        states: dict[str, str] = {}
        for wid, w in self.workers.items():
            if w.get("state") in FINAL:
                states[wid] = w["state"]
                continue
            if self.layout.worker_exit(wid).exists():
                states[wid] = w["state"] = "exited"
                continue
            if now is None:
                now = fs_now(self.layout.fs_clock) if self.reg.writeable else time.time()
            listed = w["batch_id"] in q or w["batch_id"] in r
            try:
                age = now - os.stat(self.layout.worker_beat(wid)).st_mtime
            except FileNotFoundError:
                age = None
            if age is None:  # not started yet
                alive = listed if can_list else now - w["submitted"] < START_GRACE
                states[wid] = "queued" if alive else "gone"
            elif age > 3 * w["heartbeat"] + fs_latency + 1.0:
                states[wid] = "stale"
            else:
                states[wid] = "running" if (listed or not can_list) else "gone"
        return states

    def current_states(self) -> dict[str, str]:
        """Worker states, asking the scheduler once."""
        cf = self.reg.cluster_functions
        states = self.worker_states(*(cf.list_on_system(self.reg) if cf is not None else (set(), set())))
        self.last_states = states
        return states

    def adjust(self, q: set[str], r: set[str]) -> tuple[set[str], set[str]]:
        """The scheduler's (queued, running) batch ids, corrected for the pool."""
        states = self.last_states = self.worker_states(q, r)
        stale = [wid for wid, s in states.items() if s == "stale" and self.workers[wid].get("state") != "stale"]
        if stale and self.reg.writeable:
            # tell workers that stopped beating to stop should they ever wake up, before their
            # jobs can be resubmitted, so that no job runs twice
            self.claims.fence(stale)
            for wid in stale:
                self.workers[wid]["state"] = "stale"
            log.warning("pool: worker(s) %s stopped sending heartbeats; their jobs count as expired",
                        ", ".join(stale))
            self.save()
        q, r = set(q), set(r)
        for wid, s in states.items():
            if s in FINAL or s == "gone":
                q.discard(self.workers[wid]["batch_id"])
                r.discard(self.workers[wid]["batch_id"])
        if ALIVE & set(states.values()) or self.awaits_workers():  # waiting for a worker, not lost
            q.update(self.queues)
        return q, r

    # --------------------------------------------------------------- cancel
    def cancel(self, job_ids: np.ndarray, queues: np.ndarray) -> None:
        """Make sure jobs still waiting in the pool are never started."""
        for queue in np.unique(queues.astype(str)):
            self.claims.cancel(queue, job_ids[queues == queue].tolist())


def pool_state(reg) -> PoolState | None:
    """The registry's pool state, or None if it never used workers (one ``stat``)."""
    state = getattr(reg, "_pool", None)
    if state is None:
        if not reg.layout.pool_state.exists():
            return None
        state = reg._pool = PoolState(reg)
    return state


def sync_pool(reg) -> int:
    state = pool_state(reg)
    return state.apply_claims() if state is not None else 0
