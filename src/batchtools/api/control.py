"""Controlling jobs: resetting them (forgetting their runs) and killing them."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from ..core.checks import check_number
from ..core.contract.backend import run_hook
from ..core.jobstate import attempts
from ..core.jobstate.cleanup import drop_unused_resources, obsolete_logs, remove_dirs
from ..core.jobstate.state import forget_runs, masks, select
from ..core.persistence.files import unlink_quietly
from ..core.registry import RegistryState, resolve
from ..core.workerpool.pool import pool_state

log = logging.getLogger("batchtools")


def reset_jobs(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """Forget the computational state of jobs (default: none), removing their results,
    checkpoints, external folders (``job.external_dir``) and the record of their attempts, so they
    can be submitted again from scratch; logs and resource rows no job refers to any more go too
    (R sweeps the registry after a reset). Jobs still on the system must be killed first."""
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


def _forget(reg: RegistryState, sel: np.ndarray) -> None:
    with reg.mutation("reset jobs"):
        forget_runs(reg, reg.pos(sel))
        attempts.drop(reg, sel)
        drop_unused_resources(reg)
        reg.save(("status", "attempts", "resources"), meta=False)
        # after the status: a crash leaves a stray file, not a lost result
        reg.after_commit(lambda: reg.store.delete(sel.tolist()))
        reg.delete_after(reg.layout.checkpoint(i) for i in sel.tolist())
        # what R's sweep after a reset removes: the jobs' external folders, logs no job refers to any more
        reg.after_commit(lambda: remove_dirs(reg.layout.external_dir(i) for i in sel.tolist()))
        reg.after_commit(lambda: unlink_quietly(obsolete_logs(reg)))


def kill_jobs(ids=None, kill_timeout: float = 60, reg: RegistryState | None = None) -> pd.DataFrame:
    """Kill jobs on the system (default: all of them), wait up to ``kill_timeout`` seconds for
    them to leave it, and reset them.

    Returns ``job_id``, ``batch_id`` and ``killed`` per job."""
    reg = resolve(reg)
    check_number("kill_timeout", kill_timeout, 0)
    reg.assert_writeable("kill jobs")
    cf = reg.cluster_functions
    if not cf.can_kill:
        raise NotImplementedError(f"cluster functions {cf.name} cannot kill jobs")
    reg.sync()
    sel = select(reg, "system", None if ids is None else reg.ids(ids))
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
