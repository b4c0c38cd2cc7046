"""Grouping jobs into chunks: equal sizes (``chunk``), balanced run times (``lpt``), capacity (``binpack``)."""

from __future__ import annotations

import heapq

import numpy as np


def _as_vector(x, arg: str = "x") -> np.ndarray:
    if hasattr(x, "to_numpy"):
        x = x.to_numpy()
    if isinstance(x, (str, bytes)) or not hasattr(x, "__iter__"):
        raise TypeError(f"{arg}: must be a list, array or Series (one element per job), got {type(x).__name__} "
                        f"{x!r}; e.g. chunk(ids['job_id'], n_chunks=10)")
    arr = np.asarray(list(x) if not isinstance(x, np.ndarray) else x)
    if arr.ndim != 1:
        raise ValueError(f"{arg}: must be one-dimensional")
    return arr


def _weights(x, arg: str = "x") -> np.ndarray:
    arr = _as_vector(x, arg)
    try:
        w = arr.astype(float)
    except (TypeError, ValueError):
        raise TypeError(f"{arg}: weights must be numbers (e.g. estimated run times in seconds), got "
                        f"{arr[:5].tolist()}") from None
    if np.isnan(w).any() or (w < 0).any() or np.isinf(w).any():
        raise ValueError(f"{arg}: weights must be finite non-negative numbers")
    return w


def chunk(x, n_chunks: int | None = None, chunk_size: int | None = None, shuffle: bool = True) -> np.ndarray:
    """Chunk number (1-based) for each element of ``x``, making ``n_chunks`` chunks or
    chunks of at most ``chunk_size`` elements, of sizes differing by at most one.

    >>> chunk(range(5), n_chunks=2, shuffle=False).tolist()
    [1, 1, 1, 2, 2]
    """
    arr = _as_vector(x)
    n = arr.size
    if (n_chunks is None) == (chunk_size is None):
        raise ValueError("n_chunks, chunk_size: give exactly one of them")
    for name, v in (("n_chunks", n_chunks), ("chunk_size", chunk_size)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1):
            raise ValueError(f"{name}: must be a positive int, got {v!r}")
    if n == 0:
        return np.empty(0, dtype=np.int64)
    k = min(int(n_chunks), n) if n_chunks is not None else -(-n // int(chunk_size))
    out = (np.arange(n) * k // n + 1).astype(np.int64)
    if shuffle:
        out = np.random.permutation(out)
    return out


def lpt(x, n_chunks: int = 1) -> np.ndarray:
    """Longest-processing-time-first: chunk numbers for weights ``x`` (e.g. estimated run
    times) so the chunks' sums are balanced.

    >>> lpt([5, 1, 4, 2, 3], n_chunks=2).tolist()
    [1, 1, 2, 1, 2]
    """
    if isinstance(n_chunks, bool) or not isinstance(n_chunks, (int, np.integer)) or n_chunks < 1:
        raise ValueError(f"n_chunks: must be a positive int, got {n_chunks!r}")
    w = _weights(x)
    out = np.zeros(w.size, dtype=np.int64)
    heap = [(0.0, c) for c in range(1, int(n_chunks) + 1)]
    for i in np.argsort(-w, kind="stable"):
        load, c = heapq.heappop(heap)
        out[i] = c
        heapq.heappush(heap, (load + w[i], c))
    return out


def binpack(x, chunk_size: float | None = None) -> np.ndarray:
    """First-fit decreasing: chunk numbers so that each chunk's sum of ``x`` stays at
    most ``chunk_size`` (default: the largest element).

    >>> binpack([3, 3, 2, 2, 1], chunk_size=5).tolist()
    [1, 2, 1, 2, 3]
    """
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, float, np.number))
                                   or not np.isfinite(chunk_size)):
        raise TypeError(f"chunk_size: must be a finite number (the capacity of a chunk), got {chunk_size!r}")
    w = _weights(x)
    cap = float(w.max()) if chunk_size is None and w.size else float(chunk_size or 0)
    if w.size and cap < w.max():
        raise ValueError(f"chunk_size: must be at least the largest element ({w.max()}), got {chunk_size}")
    out = np.zeros(w.size, dtype=np.int64)
    loads: list[float] = []
    for i in np.argsort(-w, kind="stable"):
        for c, load in enumerate(loads):
            if load + w[i] <= cap:
                loads[c] += w[i]
                out[i] = c + 1
                break
        else:
            loads.append(w[i])
            out[i] = len(loads)
    return out
