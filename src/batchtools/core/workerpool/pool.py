"""The master's view of the worker pool: which jobs each worker claimed, which workers live.

Only the master runs this. It replays the claim log (see :mod:`.claims`) into the status table
(a claimed job's ``batch_id`` and ``log_file`` become its worker's), and it adjusts the
scheduler's answer for status queries: jobs waiting in the pool count as queued while a worker
is alive, and a worker that stopped beating counts as gone, so its unfinished job is expired.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

import numpy as np
import pandas as pd

from ..persistence.files import read_pickle, read_table, table_error
from ..persistence.layout import is_data_file
from ..persistence.lease import FILE as LEASE_FILE
from ..persistence.tables import set_rows
from ..persistence.txn import committed_versions
from .claims import ClaimLog, fs_now, slot_of, worker_of

log = logging.getLogger("batchtools")

QUEUE_PREFIX = "pool"
# a worker that has not started yet and cannot be seen on the scheduler counts as alive this long
START_GRACE = 60.0
ALIVE = frozenset({"queued", "running"})
FINAL = frozenset({"exited", "stale", "cancelled"})  # a worker in one of these states stays in it


class PoolState:
    """Master-side state of ``reg``'s pool, kept in ``pool/state.pkl`` (read unless ``read`` is
    False: an empty state, as :func:`rebuild` fills from the pool's evidence)."""

    def __init__(self, reg, *, read: bool = True):
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
        # read-only sessions: worker -> (heartbeat time, when this session first saw it), to see it not change
        self._beats_seen: dict[str, tuple[float, float]] = {}
        if not read:
            return
        try:
            state = read_table(self.layout.pool_state, "pool state", reg.file_dir)
        except FileNotFoundError:
            return
        if not (isinstance(state, dict) and isinstance(state.get("workers"), dict)
                and isinstance(state.get("queues"), dict)):
            raise table_error(self.layout.pool_state, "pool state", "cannot be read (it holds no pool state)",
                              reg.file_dir)
        self.workers, self.queues = state["workers"], state["queues"]
        self.plan = state.get("plan")
        if self.plan is None and state.get("heal"):  # written before plans: a healing pool
            self.plan = {**state["heal"], "heal": True, "owed": 0, "max_workers": None}

    def live_workers(self) -> set[str]:
        """Ids of the workers not in a final state (their files are still in use)."""
        return {w for w, info in self.workers.items() if info.get("state") not in FINAL}

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
        states: dict[str, str] = {}
        beats: dict[str, float | None] = {}  # worker -> when its heartbeat file was last touched
        for wid, w in self.workers.items():
            if w.get("state") in FINAL:
                states[wid] = w["state"]
            elif self.layout.worker_exit(wid).exists():
                states[wid] = w["state"] = "exited"
            else:
                try:
                    beats[wid] = os.stat(self.layout.worker_beat(wid)).st_mtime
                except FileNotFoundError:
                    beats[wid] = None
        if not beats:
            return states
        now = self._fs_now(beats)
        for wid, mtime in beats.items():
            w = self.workers[wid]
            listed = w["batch_id"] in q or w["batch_id"] in r
            if mtime is None:  # not started yet
                alive = listed if can_list else now - w["submitted"] < START_GRACE
                states[wid] = "queued" if alive else "gone"
            elif self._beat_age(wid, mtime, now) > 3 * w["heartbeat"] + fs_latency + 1.0:
                states[wid] = "stale"
            else:
                states[wid] = "running" if (listed or not can_list) else "gone"
        return states

    def _fs_now(self, beats: dict[str, float | None]) -> float:
        """The file server's clock, never this machine's (whose clock may be off: a reader minutes
        ahead took every running worker for stale). The writeable session touches a probe and reads
        its time; a read-only one writes nothing, so it takes the newest time of the files that live
        sessions and workers keep touching (heartbeats, the master's probe, its lease, the claim log,
        the folder of status updates): the file server's clock was at least there."""
        if self.reg.writeable:
            return fs_now(self.layout.fs_clock)
        newest = max((t for t in beats.values() if t is not None), default=0.0)
        for path in (self.layout.fs_clock, self.layout.file_dir / LEASE_FILE, self.claims.path,
                     self.layout.dir("updates")):
            try:
                newest = max(newest, os.stat(path).st_mtime)
            except OSError:
                pass
        return newest

    def _beat_age(self, wid: str, mtime: float, now: float) -> float:
        """How long the heartbeat of ``wid`` has not changed: by the file server's clock, and, in a
        read-only session (whose ``now`` is only a lower bound), also by how long this session has
        watched it not change (elapsed time needs no agreeing clocks). Never more than the truth."""
        age = now - mtime
        if self.reg.writeable:
            return age
        seen = self._beats_seen.get(wid)
        if seen is None or seen[0] != mtime:
            self._beats_seen[wid] = (mtime, time.monotonic())
            return age
        return max(age, time.monotonic() - seen[1])

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
    """The registry's pool state, or None if it never used workers (one ``stat``). A damaged state,
    or a missing one while the pool has queues, is an error naming ``pool/state.pkl`` (which
    ``repair_registry`` rebuilds from the pool's evidence, :func:`rebuild`)."""
    state = reg.session.pool
    if state is None:
        if not reg.layout.pool_state.exists():
            if committed_queues(reg.layout):
                raise table_error(reg.layout.pool_state, "pool state", "is missing (the pool's queues are in "
                                  f"{reg.layout.pool / 'queue'})", reg.file_dir)
            return None
        state = reg.session.pool = PoolState(reg)
    return state


def committed_queues(layout) -> list[str]:
    """Names of the pool's queue files, except those of a change still under way (or rolled back
    by the next writeable load)."""
    try:
        with os.scandir(layout.pool / "queue") as it:
            names = [e.name for e in it if is_data_file(e.name)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    if not names:
        return []
    pending = {p for p, backup in committed_versions(layout.file_dir).items() if backup is None}
    return [n[:-4] for n in names if str(layout.pool / "queue" / n) not in pending]


WORKER_ID = re.compile(r"^(worker[0-9a-f]{32})")


def rebuild(reg) -> tuple[PoolState, list[str]]:
    """The pool state of ``reg`` rebuilt from the pool's evidence, for ``repair_registry`` (whose
    status table is already repaired): the queues from their files, the workers from the claim
    log, their heartbeat and goodbye files, job collections and logs, a worker's batch id and log
    from the status rows of jobs it claimed. A worker that has not said goodbye and whose batch id
    cannot be found cannot be followed: it is fenced (it claims nothing more; a job it runs now
    is not accepted) and its jobs count as expired. Returns the state (not saved) and notes on
    what could not be rebuilt."""
    lay = reg.layout
    state = PoolState(reg, read=False)
    notes = ["the pool's healing settings (submit_workers(heal=True)), if it had any, are not known: "
             "call submit_workers(0, heal=True, ...) to heal it again"]
    for queue in committed_queues(lay):
        try:
            state.queues[queue] = np.asarray(read_pickle(lay.pool_queue(queue)).job_ids, dtype=np.int64)
        except Exception as e:
            notes.append(f"queue {queue}: its file cannot be read ({type(e).__name__}); its unfinished jobs count "
                         "as expired")
    st = reg.status
    hashes = st["job_hash"].to_numpy()
    queued_hashes = {h for h in pd.unique(hashes[pd.notna(hashes)]) if str(h).startswith(QUEUE_PREFIX)}
    for queue in sorted(queued_hashes - set(state.queues)):
        notes.append(f"queue {queue}: its file is lost; its unfinished jobs count as expired")
    # every worker the evidence names, with what the status says of the jobs it claimed
    found: dict[str, dict[str, Any]] = {}
    state.claims.refresh()
    batch, logs = st["batch_id"].to_numpy(), st["log_file"].to_numpy()
    for c in state.claims.take_claims():
        w = found.setdefault(worker_of(c.worker), {})
        ids = state.queues.get(c.queue)
        if ids is None:
            continue
        pos = reg.pos(ids[c.start:c.start + c.count])
        pos = pos[(hashes[pos] == c.queue) & (batch[pos] != c.queue) & pd.notna(batch[pos])]
        if pos.size:
            w.setdefault("batch_id", str(batch[pos[0]]))
            if slot_of(c.worker) is None:
                w.setdefault("log_file", logs[pos[0]])
    for folder, pattern in ((lay.pool / "workers", None), (lay.dir("jobs"), ".pkl"), (lay.dir("logs"), ".log")):
        try:
            with os.scandir(folder) as it:
                for e in it:
                    m = WORKER_ID.match(e.name)
                    if m and (pattern is None or e.name.endswith(pattern)):
                        found.setdefault(m.group(1), {})
        except FileNotFoundError:
            pass
    for wid, seen in sorted(found.items()):
        try:
            settings = read_pickle(lay.job_collection(wid)).pool or {}
        except Exception:
            settings = {}
        times = []
        for path in (lay.job_collection(wid), lay.log(wid), lay.worker_beat(wid)):
            try:
                times.append(os.stat(path).st_mtime)
            except OSError:
                pass
        w = {"batch_id": seen.get("batch_id"), "log_file": seen.get("log_file") or f"{wid}.log",
             "submitted": min(times) if times else time.time(), "heartbeat": float(settings.get("heartbeat", 10.0)),
             "state": "submitted"}
        if lay.worker_exit(wid).exists():
            w["state"] = "exited"
        elif "heartbeat" not in settings and w["batch_id"] is not None:
            notes.append(f"worker {wid}: its heartbeat interval is not known; taken as 10 s (if it beats less often "
                         "it is declared dead, and its jobs expire)")
        elif w["batch_id"] is None:
            w["state"] = "stale"
            state.claims.fence([wid])
            notes.append(f"worker {wid}: its batch id is not known; fenced (it claims nothing more and a job it runs "
                         "now is not accepted), its unfinished jobs count as expired")
        state.workers[wid] = w
    return state, notes


def sync_pool(reg) -> int:
    state = pool_state(reg)
    return state.apply_claims() if state is not None else 0
