"""The shared cache of results in use (issue 29): the jobs a submission takes from the cache, and
the results finished jobs add to it.

A registry with a ``cache_dir`` (:class:`~.cache.ResultCache`) looks up, while ``submit_jobs``
plans (:class:`~.submission.Submission`, nothing written), the key (:mod:`.cache_key`) of every
job it was asked to submit that has not finished successfully (:func:`lookup`). The jobs whose key
has a result in the cache are not handed to the backend; once every other chunk was handed over,
:func:`take` makes them done in one mutation (a failed call leaves the registry as it was): their
results go to the result store as results (packed, under a hash of their own), their status rows
say submitted, started and done now, ``cached_from`` names the registry and job the result came
from, and a log (``logs/cache<hex>.log``) says so in each job's marked section. A damaged entry is
a miss with a :class:`~.cache.CacheWarning` (the job runs), never a result.

The master's sync adds the results of the jobs it finds done to the cache
(:func:`publish_done`): not those taken from it, not failed ones, and only in a registry with a
``cache_dir`` (otherwise sync does not look). A job's key as its submission computed it is kept in
the session (``reg.session.cache_keys``), so a sync computes keys only for jobs another session
submitted. Adding to the cache never fails a sync: a cache that cannot be written is one warning.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass

import numpy as np

from .._version import __version__
from .cache import Hit, ResultCache
from .cache_key import JobKey, job_keys
from .contract.protocol import BANNER, MARK, job_ended, job_started
from .jobstate import attempts
from .jobstate.state import forget_runs
from .persistence.files import unlink_quietly
from .persistence.tables import null_mask, set_rows

log = logging.getLogger("batchtools")

PREFIX = "cache"  # the job hash of the jobs one submission took from the cache: cache<hex>


def cache_of(reg) -> ResultCache | None:
    """The registry's cache (one per session and setting), or None without ``cache_dir``."""
    if reg.cache_dir is None:
        return None
    cache = reg.session.cache
    if cache is None or cache.dir != reg.cache_dir or cache.max_size != reg.cache_max_size:
        cache = reg.session.cache = ResultCache(reg.cache_dir, reg.cache_max_size, reg.compress)
    return cache


def origin_text(origin: dict) -> str:
    """Where a cached result was computed, as ``cached_from`` says it: ``<registry folder>:<job id>``."""
    return f"{origin.get('registry', '?')}:{origin.get('job_id', '?')}"


@dataclass
class Found:
    """What a submission's plan found in the cache: ``taken`` (a mask over the planned jobs) and,
    for those jobs, their ids, status rows and hits."""

    taken: np.ndarray
    ids: np.ndarray
    pos: np.ndarray
    hits: list[Hit]


def lookup(reg, ids: np.ndarray, pos: np.ndarray, after=None) -> Found | None:
    """The jobs of ``ids`` (status rows ``pos``) whose result the cache holds; None without a cache.
    Jobs done without error are not looked up (a resubmission of those runs them again). ``after``:
    the dependencies the submitting call gives its jobs (None: the stored ones); a job that waits
    for jobs without a result yet has no key (it is looked up once they are done)."""
    if reg.cache_dir is None or ids.size == 0:
        return None
    try:
        cache = cache_of(reg)
    except OSError as e:
        log.warning("cache_dir %s cannot be used (%s); the jobs are submitted as if there were no cache",
                    reg.cache_dir, e)
        return None
    st = reg.status
    ok = np.isnan(st["done"].to_numpy()[pos]) | ~null_mask(st["error"].to_numpy()[pos])
    look = np.flatnonzero(ok)
    try:
        keys = job_keys(reg, ids[look], after=after)
    except Exception as e:  # a key that cannot be computed takes nothing from the cache: the jobs run
        log.warning("the cache keys of the jobs cannot be computed (%s: %s); they are submitted as if there were "
                    "no cache", type(e).__name__, e)
        return None
    taken = np.zeros(ids.size, dtype=bool)
    hits: list[Hit] = []
    for k, key in zip(look.tolist(), keys):
        if key is None:
            continue
        reg.session.cache_keys[int(ids[k])] = key
        hit = cache.get(key)
        if hit is not None:
            taken[k] = True
            hits.append(hit)
    return Found(taken, ids[taken], pos[taken], hits)


def take(reg, found: Found) -> None:
    """Make the jobs ``found`` done from the cache: results, status, log, saved; all or nothing."""
    ids, pos = found.ids, found.pos
    if ids.size == 0:
        return
    tag = f"{PREFIX}{uuid.uuid4().hex}"
    store = reg.store
    now = time.time()
    with reg.mutation("take jobs from the cache"):
        moved = store.stash(ids.tolist(), tag)  # what an earlier run left (a result of an expired job)
        try:
            writer = store.packed(tag)
            try:
                for i, hit in zip(ids.tolist(), found.hits):
                    writer.put_raw(i, hit.data)
            finally:
                writer.close()
            log_path = reg.layout.log(tag)
            reg.write_bytes(log_path, _log_text(reg, ids, found.hits).encode())
            st = reg.status
            forget_runs(reg, pos)
            for col in ("submitted", "started", "done"):
                set_rows(st, pos, col, now)
            set_rows(st, pos, "job_hash", tag)
            set_rows(st, pos, "log_file", log_path.name)
            origins = np.empty(ids.size, dtype=object)
            origins[:] = [origin_text(h.origin) for h in found.hits]
            set_rows(st, pos, "cached_from", origins)
            attempts.on_submitted(reg, pos)
            reg.mark_dirty("status")
            reg.save(meta=False)
        except BaseException:
            store.delete(ids.tolist())
            packs = reg.layout.dir("packs")
            unlink_quietly(packs / n for n in (os.listdir(packs) if packs.is_dir() else ()) if n.startswith(tag))
            store.restore(moved, tag)
            raise
    store.drop(moved, tag)
    log.info("submit_jobs: %d job(s) taken from the cache %s (not submitted)", ids.size, reg.cache_dir)


def _log_text(reg, ids: np.ndarray, hits: list[Hit]) -> str:
    lines = [f"{MARK}{BANNER}{__version__} (Python {sys.version.split()[0]})",
             f"{MARK}Results taken from the shared cache {reg.cache_dir}: these jobs did not run here"]
    for i, hit in zip(ids.tolist(), hits):
        lines += [MARK + job_started(i),
                  f"{MARK}Taken from the cache: the result of job {hit.origin.get('job_id', '?')} of registry "
                  f"{hit.origin.get('registry', '?')} (entry {hit.path})",
                  MARK + job_ended(i, True)]
    return "\n".join(lines) + "\n"


def publish_done(reg, was_done: np.ndarray) -> int:
    """Add to the cache the results of the jobs done without error now that were not done before
    (``was_done``: a mask over the status rows) or that were seen done before their reports were
    merged (from their results: ``state.adopt_results``, ``reg.session.adopted``) or that this
    session submitted and has not added yet, and did not come from the cache; how many were
    added. A read-only session adds nothing; a cache that cannot be written is a warning."""
    if not reg.writeable:
        return 0
    st = reg.status
    done = ~np.isnan(st["done"].to_numpy())
    new = done & ~was_done
    known = reg.session.cache_keys
    job_ids = st["job_id"].to_numpy()
    adopted = reg.session.adopted
    if known or adopted:  # also those seen done before (adopted: result before status), by any session
        seen = np.fromiter([*known, *adopted], np.int64, len(known) + len(adopted))
        new |= done & np.isin(job_ids, seen)
        adopted.clear()
    if not new.any():
        return 0
    ok = new & null_mask(st["error"].to_numpy()) & null_mask(st["cached_from"].to_numpy())
    for i in job_ids[new & ~ok].tolist():  # ended without a result to add
        known.pop(i, None)
    ids = job_ids[ok].tolist()
    try:
        cache = cache_of(reg)
        keys: dict[int, JobKey | None] = {i: known.pop(i, None) for i in ids}
        missing = [i for i, k in keys.items() if k is None]
        if missing:
            keys.update(zip(missing, job_keys(reg, missing)))
        added = 0
        ids = [i for i in ids if keys[i] is not None]
        where = str(reg.file_dir)
        for i, data in zip(ids, reg.store.raw_many(ids)):
            if data is None:  # no readable result (a lost one is said when it is read)
                log.debug("job %d: no result to add to the cache", i)
                continue
            added += cache.put_raw(keys[i], data, {"registry": where, "job_id": int(i)})
    except Exception as e:  # the cache is an addition: a sync never fails for it
        log.warning("could not add the results of %d finished job(s) to the cache %s: %s: %s", len(ids),
                    reg.cache_dir, type(e).__name__, e)
        return 0
    log.debug("added %d result(s) to the cache %s", added, reg.cache_dir)
    return added
