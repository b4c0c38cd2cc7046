"""Waiting for jobs to leave the system."""

from __future__ import annotations

import logging
import time

import numpy as np

from ..core.dependencies import blocked_mask
from ..core.jobstate.state import masks, on_system, select
from ..core.jobstate.usage import record_usage
from ..core.presentation.notify import Notifier, message
from ..core.presentation.progress import job_detail, progress
from ..core.registry import RegistryState, resolve
from ..core.submission import sleep_function
from .heal import heal, release, wanted

log = logging.getLogger("batchtools")
# how often wait_for_jobs looks at the nodes' reports (a listing of updates/, only read when it changed)
EVIDENCE_POLL = 0.05
# the loop waits at least this many times as long as its last turn took (<= 1/10 of a CPU)
BUSY_RATIO = 9


def wait_for_jobs(ids=None, sleep=None, timeout: float = 604800, expire_after: int | None = None,
                  stop_on_error: bool = False, stop_on_expire: bool = False, notify=None,
                  reg: RegistryState | None = None) -> bool:
    """Block until the jobs ``ids`` (default: all submitted) have left the system.

    The jobs' own reports are looked at every 50 ms (or when the backend says a job ended, but
    then at most once per nine times what the last look took), so the wait ends at once when the
    last job finishes; the scheduler is asked every ``sleep`` seconds (a number, or a function of the poll
    number; default: the configuration's ``sleep``, else the backend's interval, growing) what is
    still queued or running. Waits at most ``timeout`` seconds (default a week; then it returns
    False). ``stop_on_error`` / ``stop_on_expire`` return False as soon as a job fails / expires.
    Returns True if all of them finished without error. A job that is neither on the system nor
    terminated for ``expire_after`` polls of the scheduler (default: the configuration's
    ``expire_after``, else 3; a backend with a file-system latency waits that long too) counts as
    expired. Jobs that were never submitted are left out with a warning (as in R).
    Held jobs (``submit_jobs(after=)``) are submitted as soon as their dependencies are done,
    so one call runs a chain of map and reduce jobs to the end; a job held on a dependency that
    failed or expired (reason ``dependency``) counts as finished, not done.
    While it waits, jobs with a :class:`~batchtools.RetryPolicy` that died are resubmitted as
    it says, jobs that checkpointed go on, and the worker pool is looked after: workers the
    scheduler refused so far (a cap on jobs per user) are submitted as it accepts them, a pool
    submitted with ``heal=True`` is kept going, and workers still queued once no job is left to
    claim are cancelled.

    ``notify`` sends one message when the wait ends (every job done, some failed, or it stopped
    waiting), and, with a failure threshold, one as soon as that many jobs failed: a web hook
    URL (a JSON POST that Slack and Mattermost show), an ntfy topic (``ntfy://ntfy.sh/TOPIC``), a
    command (the message on its standard input and in ``BATCHTOOLS_MESSAGE``), or ``{"to": ...,
    "failures": N}`` (N jobs, or a share if below 1). A message that cannot be sent is a warning
    (see the monitoring guide, "Told when it ends").

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> _ = bt.batch_map(lambda x: x, x=[1, 2]); _ = bt.submit_jobs()
    >>> bt.wait_for_jobs()
    True
    """
    reg = resolve(reg)
    notifier = Notifier.parse(notify)
    for name, flag in (("stop_on_error", stop_on_error), ("stop_on_expire", stop_on_expire)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name}: must be True or False")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
        raise ValueError(f"timeout: must be a number of seconds >= 0 (inf: no limit), got {timeout!r}")
    if expire_after is None:
        expire_after = reg.expire_after or 3
    if isinstance(expire_after, bool) or not isinstance(expire_after, int) or expire_after < 1:
        raise ValueError(f"expire_after: must be a positive int (number of polls), got {expire_after!r}")
    cf = reg.cluster_functions
    sleep_fn = sleep_function(reg.sleep if sleep is None else sleep, lambda i: min(cf.poll * 1.25**i, cf.poll_max))
    reg.sync()
    sel = select(reg, "submitted") if ids is None else reg.ids(ids)
    unsubmitted = np.isnan(reg.status["submitted"].to_numpy()[reg.pos(sel)])
    if unsubmitted.any():
        log.warning("wait_for_jobs: cannot wait for %d unsubmitted job(s) (e.g. %s); removing them from ids",
                    int(unsubmitted.sum()), sel[unsubmitted][:5].tolist())
        sel = sel[~unsubmitted]
    if sel.size == 0:
        return True
    pos = reg.pos(sel)

    def told(event: str, m: dict, expired: np.ndarray, ok: bool) -> bool:
        if notifier is not None:
            _tell(notifier, event, reg, sel, pos, m, expired)
        return ok

    missing = np.zeros(sel.size, dtype=np.int64)
    gone_since = np.full(sel.size, np.nan)
    deadline = time.time() + timeout
    # the nodes' reports (update files) are watched all the time, so completion is seen within
    # EVIDENCE_POLL; the scheduler, which only says what is queued or running (and so what expired),
    # is asked at the backend's growing polling interval
    system = on_system(reg)
    if release(reg, system).size:  # held jobs whose dependencies are done already
        system = on_system(reg)
    next_ask = None  # set (from sleep(i)) when the loop first has to pause after a poll
    asked, i = True, 0
    # jobs ended when this turn's poll asked the accounting (None: it did not): the end asks again
    # only if more ended since (a report merged after the poll)
    accounted = None
    healing = wanted(reg)  # retry policies, checkpoints, a healing pool (api/heal.py)
    busy_since = time.perf_counter()
    with progress(total=sel.size, desc="Waiting", reg=reg) as bar:
        while True:
            m = masks(reg, pos, system)
            now = time.time()
            if asked:
                absent = m["submitted"] & ~m["terminated"] & ~m["system"] & ~m["held"]
                missing = np.where(absent, missing + 1, 0)
                gone_since = np.where(absent, np.where(np.isnan(gone_since), now, gone_since), np.nan)
            expired = (missing >= expire_after) & (now - gone_since >= cf.fs_latency) & ~m["terminated"]
            if healing or m["error"].any():
                again = np.isin(sel, heal(reg, pos, m["error"] | expired))
                if again.any():  # resubmitted: they wait for their next attempt
                    missing[again], gone_since[again] = 0, np.nan
                    healing, system = True, on_system(reg)
                    continue
            # a job held on a dependency that failed or expired waits for a fix, not for the backend
            finished = m["terminated"] | expired | ~m["submitted"]
            if m["held"].any():
                finished |= m["held"] & blocked_mask(reg, pos)
            bar.set(int(finished.sum()), lambda: job_detail(reg, pos, m, ~finished, expired))
            if notifier is not None and notifier.crossed(int((m["error"] | expired).sum()), sel.size):
                _tell(notifier, "failures", reg, sel, pos, m, expired)
            if stop_on_error and m["error"].any():
                log.warning("wait_for_jobs: stopping, %d job(s) failed", int(m["error"].sum()))
                return told("stopped", m, expired, False)
            if stop_on_expire and expired.any():
                log.warning("wait_for_jobs: stopping, %d job(s) expired", int(expired.sum()))
                return told("stopped", m, expired, False)
            if finished.all():
                if accounted != _ended(reg):
                    record_usage(reg)  # what the last jobs used, if the scheduler accounted it already
                if reg.writeable and reg.is_dirty("status"):
                    reg.save_state()  # what the jobs reported is on disk when the wait returns
                if expired.any():
                    log.warning("wait_for_jobs: %d job(s) expired (gone from the system without a result); "
                                "see find_expired()", int(expired.sum()))
                ok = bool(m["done"].all())
                return told("done" if ok else "failed", m, expired, ok)
            if now >= deadline:
                log.warning("wait_for_jobs: timeout after %.0fs with %d job(s) unfinished",
                            timeout, int((~finished).sum()))
                return told("timeout", m, expired, False)
            if next_ask is None:
                next_ask = now + sleep_fn(i)
                i += 1
            pause = max(0.0, min(EVIDENCE_POLL, next_ask - now, deadline - now))
            # a backend's wait wakes the loop at every job's end; a loop over many jobs costs
            # milliseconds, so it takes a turn at most once per BUSY_RATIO times its own cost
            calm = min(pause, BUSY_RATIO * (time.perf_counter() - busy_since))
            woke = time.perf_counter()
            if cf.wait is not None:
                cf.wait(pause)
                time.sleep(max(0.0, calm - (time.perf_counter() - woke)))
            else:
                time.sleep(pause)
            busy_since = time.perf_counter()
            reg.sync()
            asked = time.time() >= next_ask
            accounted = None
            if asked:
                system = on_system(reg)
            again = np.isin(sel, release(reg, system))  # held jobs whose dependencies are done now
            if again.any():
                missing[again], gone_since[again] = 0, np.nan
                system = on_system(reg)
            if asked:
                record_usage(reg)  # one accounting call per poll, for the jobs that ended
                accounted = _ended(reg)
                next_ask = None



def _ended(reg: RegistryState) -> int:
    """How many of the registry's jobs have ended (record_usage asks about ended jobs)."""
    return int(np.count_nonzero(~np.isnan(reg.status["done"].to_numpy())))


def _tell(notifier: Notifier, event: str, reg: RegistryState, sel: np.ndarray, pos: np.ndarray, m: dict,
          expired: np.ndarray) -> None:
    """Send ``notifier`` the message of ``event`` about the jobs ``sel`` (masks ``m``, ``expired``)."""
    failed = m["error"]
    counts = {"total": int(sel.size), "done": int(m["done"].sum()), "error": int(failed.sum()),
              "expired": int(expired.sum()), "running": int(m["running"].sum()),
              "queued": int((m["queued"] & ~expired).sum())}
    first = None
    if failed.any():
        k = int(np.flatnonzero(failed)[0])
        first = f"job {int(sel[k])}: {reg.status['error'].to_numpy()[pos[k]]}"
    # how long the run took so far: from the jobs' first submission
    elapsed = time.time() - float(np.nanmin(reg.status["submitted"].to_numpy()[pos])) if event != "failures" else None
    title, text = message(event, counts, str(reg.file_dir), elapsed, first)
    notifier.send(event, title, text, {"registry": str(reg.file_dir), **counts})
