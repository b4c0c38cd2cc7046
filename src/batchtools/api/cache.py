"""The shared cache of results, seen from a registry: why a job missed it, and pruning it.

A registry uses a cache when it has a ``cache_dir`` (``make_registry(..., cache_dir=...)``, the
configuration key ``cache_dir``, or ``reg.cache_dir = ...``): ``submit_jobs`` takes the jobs whose
result the cache holds from it, and finished jobs add theirs (:mod:`batchtools.core.cached`).
"""

from __future__ import annotations

import dataclasses

from ..core.cache import CacheExplanation, CachePruned, explain
from ..core.cache_key import job_keys
from ..core.cached import cache_of
from ..core.config import KEYS
from ..core.registry import RegistryState, resolve


def _cache(reg: RegistryState):
    if reg.cache_dir is None:
        raise ValueError(f"reg: the registry {str(reg.file_dir)!r} has no cache; give it one with "
                         "make_registry(..., cache_dir=PATH) or reg.cache_dir = PATH")
    return cache_of(reg)


def explain_cache(id: int, reg: RegistryState | None = None) -> CacheExplanation:
    """Whether the result of job ``id`` is in the registry's cache, and if not, why: which parts of
    its key differ from the nearest cached result (the function or the code it uses changed, a
    parameter, the seed, ``more_args``, an export, a package version). ``print()`` it; its
    ``differences`` map each part to what it means.

    >>> import batchtools as bt, tempfile
    >>> cache = tempfile.mkdtemp()
    >>> a = bt.make_registry(file_dir=None, seed=1, cache_dir=cache)
    >>> a.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = a.batch_map(lambda x, y: x + y, x=[1, 2], more_args={"y": 10}); _ = a.submit_jobs()
    >>> b = bt.make_registry(file_dir=None, seed=1, cache_dir=cache)
    >>> _ = b.batch_map(lambda x, y: x + y, x=[1, 5], more_args={"y": 10})
    >>> print(bt.explain_cache(1, reg=b))  # doctest: +ELLIPSIS
    job 1: hit: the cache holds this job's result (job 1 of ...)
    >>> print(bt.explain_cache(2, reg=b))  # doctest: +ELLIPSIS
    job 2: miss: of 2 cached results the nearest (job 2 of ...) differs in 1 part(s):
      - parameter `x` changed
    """
    reg = resolve(reg)
    reg.sync()
    cache = _cache(reg)
    sel = reg.ids(id, arg="id")
    if sel.size != 1:
        raise ValueError(f"id: expected exactly one job id, got {sel.size}")
    job_id = int(sel[0])
    taken = reg.status["cached_from"].to_numpy()[reg.pos(sel)[0]]
    key = job_keys(reg, [job_id])[0]
    if key is None:
        raise ValueError(f"id: job {job_id} reads a result of another registry that is missing, so its key (and "
                         "whether the cache holds its result) is not known yet; run that job first")
    return dataclasses.replace(explain(key, cache), job=f"job {job_id}", taken_from=taken)


def prune_cache(max_size: int | str | None = None, reg: RegistryState | None = None) -> CachePruned:
    """Remove the least recently used results from the registry's cache until the rest take at
    most ``max_size`` bytes (or a size such as ``"20G"``; default: the registry's
    ``cache_max_size``, and without one only what dead writers left), and what writers that died
    left. The cache keeps itself within ``cache_max_size`` as results are added; this prunes now,
    or to another size. Returns what was removed and kept (``removed``, ``freed``, ``kept``, ``size``).

    >>> import batchtools as bt, tempfile
    >>> reg = bt.make_registry(file_dir=None, cache_dir=tempfile.mkdtemp())
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = reg.batch_map(lambda x: "x" * 10_000, x=[1, 2, 3]); _ = reg.submit_jobs()
    >>> bt.prune_cache("25K", reg=reg).kept
    2
    """
    reg = resolve(reg)
    cache = _cache(reg)
    try:
        limit = KEYS["cache_max_size"].check(max_size)
    except (TypeError, ValueError) as e:
        raise type(e)(f"max_size: {e}") from None
    return cache.prune(limit)
