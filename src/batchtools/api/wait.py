"""Waiting for jobs, resetting and killing them."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from ..backends.base import run_hook
from ..core.pool import pool_state
from ..core.registry import Registry, resolve
from ..progress import progress
from .find import find_on_system, find_submitted
from .status import masks, on_system
from .submit import forget_runs, remove_results, sleep_function

log = logging.getLogger("batchtools")


def wait_for_jobs(ids=None, sleep=None, timeout: float = 604800, expire_after: int | None = None,
                  stop_on_error: bool = False, stop_on_expire: bool = False,
                  reg: Registry | None = None) -> bool:
    """Block until the jobs ``ids`` (default: all submitted) have left the system.

    Returns True if all of them finished without error. A job that is neither
    on the system nor terminated for ``expire_after`` polls (default 3; a
    backend with a file-system latency waits that long too) counts as expired.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> _ = bt.batch_map(lambda x: x, x=[1, 2]); _ = bt.submit_jobs()
    >>> bt.wait_for_jobs()
    True
    """
    reg = resolve(reg)
    for name, flag in (("stop_on_error", stop_on_error), ("stop_on_expire", stop_on_expire)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name}: must be True or False")
    if not isinstance(timeout, (int, float)) or timeout < 0:
        raise ValueError(f"timeout: must be a number of seconds >= 0, got {timeout!r}")
    if expire_after is None:
        expire_after = 3
    if isinstance(expire_after, bool) or not isinstance(expire_after, int) or expire_after < 1:
        raise ValueError(f"expire_after: must be a positive int (number of polls), got {expire_after!r}")
    cf = reg.cluster_functions
    sleep_fn = sleep_function(sleep, lambda i: min(cf.poll * 1.25**i, cf.poll_max))
    reg.sync()
    sel = find_submitted(reg=reg)["job_id"].to_numpy() if ids is None else reg.ids(ids)
    pos = reg.pos(sel)
    missing = np.zeros(sel.size, dtype=np.int64)
    gone_since = np.full(sel.size, np.nan)
    deadline = time.time() + timeout
    i = 0
    with progress(total=sel.size, desc="Waiting") as bar:
        while True:
            reg.sync()
            m = masks(reg, pos, on_system(reg))
            now = time.time()
            absent = m["submitted"] & ~m["terminated"] & ~m["system"]
            missing = np.where(absent, missing + 1, 0)
            gone_since = np.where(absent, np.where(np.isnan(gone_since), now, gone_since), np.nan)
            expired = absent & (missing >= expire_after) & (now - gone_since >= cf.fs_latency)
            unsubmitted = ~m["submitted"]
            finished = m["terminated"] | expired | unsubmitted
            bar.update(int(finished.sum()) - bar.n)
            if stop_on_error and m["error"].any():
                log.warning("wait_for_jobs: stopping, %d job(s) failed", int(m["error"].sum()))
                return False
            if stop_on_expire and expired.any():
                log.warning("wait_for_jobs: stopping, %d job(s) expired", int(expired.sum()))
                return False
            if finished.all():
                if expired.any():
                    log.warning("wait_for_jobs: %d job(s) expired (gone from the system without a result); "
                                "see find_expired()", int(expired.sum()))
                return bool(m["done"].all())
            if now >= deadline:
                log.warning("wait_for_jobs: timeout after %.0fs with %d job(s) unfinished",
                            timeout, int((~finished).sum()))
                return False
            pause = min(sleep_fn(i), max(deadline - now, 0))
            if cf.wait is not None:
                cf.wait(pause)
            else:
                time.sleep(pause)
            i += 1


def reset_jobs(ids=None, reg: Registry | None = None) -> pd.DataFrame:
    """Forget the computational state of jobs (default: none), removing their results,
    so they can be submitted again. Jobs still on the system must be killed first."""
    reg = resolve(reg)
    reg.assert_writeable("reset jobs")
    reg.sync()
    if ids is None:
        return pd.DataFrame({"job_id": np.empty(0, np.int64)})
    sel = reg.ids(ids)
    pos = reg.pos(sel)
    busy = sel[masks(reg, pos)["system"]]
    if busy.size:
        raise ValueError(f"ids: job(s) {busy[:5].tolist()} are still on the system; kill_jobs() them first")
    _forget(reg, sel)
    return pd.DataFrame({"job_id": sel})


def _forget(reg: Registry, sel: np.ndarray) -> None:
    forget_runs(reg, reg.pos(sel), results=False)
    reg.save(("status",), meta=False)
    remove_results(reg, sel.tolist())  # after the status: a crash leaves a stray file, not a lost result


def kill_jobs(ids=None, kill_timeout: float = 60, reg: Registry | None = None) -> pd.DataFrame:
    """Kill jobs on the system (default: all of them), wait up to ``kill_timeout`` seconds for
    them to leave it, and reset them.

    Returns ``job_id``, ``batch_id`` and ``killed`` per job."""
    reg = resolve(reg)
    reg.assert_writeable("kill jobs")
    cf = reg.cluster_functions
    if cf.kill_job is None:
        raise NotImplementedError(f"cluster functions {cf.name} cannot kill jobs")
    sel = find_on_system(ids, reg=reg)["job_id"].to_numpy()
    if sel.size == 0:
        return pd.DataFrame({"job_id": sel, "batch_id": np.empty(0, object), "killed": np.empty(0, bool)})
    batch = reg.status["batch_id"].to_numpy()[reg.pos(sel)]
    run_hook(reg, "pre_kill", sel)
    pool = pool_state(reg)
    waiting = np.isin(batch.astype(str), list(pool.queues)) if pool is not None else np.zeros(sel.size, bool)
    if waiting.any():
        # jobs still waiting in the worker pool: cancel them (a worker claiming one meanwhile
        # skips it), then kill the workers of those claimed before the cancellation
        pool.cancel(sel[waiting], batch[waiting])
        reg.sync()
        batch = reg.status["batch_id"].to_numpy()[reg.pos(sel)]
        cancelled = sel[waiting & (batch == reg.status["job_hash"].to_numpy()[reg.pos(sel)])]
        _forget(reg, cancelled)
        keep = ~np.isin(sel, cancelled)
        result_cancelled = pd.DataFrame({"job_id": cancelled, "batch_id": "cancelled", "killed": True})
        sel, batch = sel[keep], batch[keep]
    else:
        result_cancelled = None
    killed = {}
    for b in pd.unique(batch):
        try:
            cf.kill_job(reg, b)
            killed[b] = True
        except Exception as e:  # report, keep going with the others
            log.warning("could not kill batch job %s: %s", b, e)
            killed[b] = False
    run_hook(reg, "post_kill", sel)
    time.sleep(cf.scheduler_latency)
    ok = np.array([killed[b] for b in batch], dtype=bool)
    # schedulers take a moment to clean up (Slurm's "completing"): wait until they are gone
    deadline = time.time() + kill_timeout
    i = 0
    while True:
        reg.sync()
        still = masks(reg, reg.pos(sel[ok]))["system"] if ok.any() else np.zeros(0, bool)
        if not still.any() or time.time() >= deadline:
            break
        time.sleep(min(cf.poll * 1.5**i, 2.0))
        i += 1
    reset_ids = sel[ok][~still]
    if reset_ids.size:
        reset_jobs(reset_ids, reg=reg)
    out = pd.DataFrame({"job_id": sel, "batch_id": batch, "killed": ok})
    if result_cancelled is not None:
        out = pd.concat([out, result_cancelled]).sort_values("job_id", ignore_index=True)
    return out
