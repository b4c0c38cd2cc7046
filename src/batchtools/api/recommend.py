"""Resources learned from what jobs really used: :func:`recommend_resources`.

The evidence is the registry's own: the done jobs of each group (``by``), their run time
(``done - started`` on the node; the scheduler's ``elapsed`` of a job alone in its scheduler
job, start-up included, where the scheduler accounted it), their peak memory (``max_rss``: the
scheduler's accounting where it has it, the node's ``getrusage`` otherwise; ``mem_used`` if that
is all there is) and their CPU time. Jobs of a group that died at a limit (``timeout``,
``memory``) and never succeeded raise the recommendation to at least twice that limit. A group
without a done job gets its walltime from :func:`~batchtools.estimate_runtimes` (a forest over
the job parameters, learned from the done jobs of other groups) and no memory; it is named in a
warning, as is a group with fewer than :data:`MIN_EVIDENCE` done jobs. Values are rounded as the
backend's scheduler counts them (``Capabilities.walltime_unit``: whole minutes for Slurm and LSF)
and memory up to a round number of MB (:func:`round_memory`).

This verb orchestrates: it uses ``estimate_runtimes`` (api/runtimes.py) for groups without evidence.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from ..core.jobstate.kinds import BENCHMARK_WORDS
from ..core.jobstate.resources import asked_numbers
from ..core.jobstate.usage import record_usage
from ..core.registry import RegistryState, resolve

log = logging.getLogger("batchtools")
MIN_EVIDENCE = 3  # done jobs a group needs for its recommendation to count as well founded
START_ALLOWANCE = 10.0  # seconds added to a walltime for the node's start-up, which a job's run time leaves out
LIMIT_FACTOR = 2.0  # a group whose jobs died at a limit gets at least this times that limit
MIN_CPU_SECONDS = 1.0  # a job's CPU efficiency counts only if it ran at least this long
CPU_SLACK = 0.1  # CPUs used above a whole number by less than this do not ask for one more
DEFAULT_BY = ("problem", "algorithm")


def round_memory(mb: float) -> int:
    """MB rounded up to a round unit: 16 MB below 1 GB, 128 MB below 8 GB, 1 GB above.

    >>> round_memory(60), round_memory(1030), round_memory(9000)
    (64, 1152, 9216)
    """
    unit = 16 if mb <= 1024 else 128 if mb <= 8192 else 1024
    return int(max(unit, math.ceil(mb / unit) * unit))


def round_walltime(seconds: float, unit: int) -> int:
    """Seconds rounded up to whole ``unit``\\ s (at least one).

    >>> round_walltime(12.4, 60), round_walltime(12.4, 1), round_walltime(61, 60)
    (60, 13, 120)
    """
    return int(max(unit, math.ceil(seconds / unit) * unit))


class ResourceRecommendation(pd.DataFrame):
    """What :func:`recommend_resources` returns: an ids frame (``job_id``, ``chunk`` if the ids
    had one, ``walltime`` in seconds, ``memory`` in MB, and ``ncpus`` where CPU efficiency asked
    for a change), submittable as it is, plus ``groups`` (per group: its keys, ``jobs``,
    ``done``, what the done jobs used at the quantile ``q`` (``runtime``, ``memory_used``,
    ``cpus_used``), what they had asked for (``walltime_asked``, ``memory_asked``), where the
    evidence came from (``evidence``: ``scheduler``, ``node``, ``scheduler+node``,
    ``estimated`` or ``none``), the recommendation, and a ``note``) and ``too_little`` (the
    labels of groups with fewer than ``MIN_EVIDENCE`` done jobs). Derived frames are plain
    DataFrames."""

    _metadata = ["groups", "too_little"]

    @property
    def _constructor(self):
        return pd.DataFrame

    def __repr__(self) -> str:
        groups = getattr(self, "groups", None)
        head = f"Resources for {len(self)} jobs from {0 if groups is None else len(groups)} group(s)"
        if getattr(self, "too_little", None):
            head += f"; too little evidence: {', '.join(self.too_little)}"
        return head + "\n" + pd.DataFrame(self).__repr__()

    __str__ = __repr__


def _check(q, margin, by) -> list[str]:
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 < q <= 1:
        raise ValueError(f"q: must be a quantile in (0, 1], e.g. 0.95 (what 95% of the jobs needed), got {q!r}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 1 <= margin < math.inf:
        raise ValueError(f"margin: must be a finite factor >= 1 (1.2: 20% more than used), got {margin!r}")
    if by is None:
        return []
    if isinstance(by, str):
        return [by]
    try:
        cols = list(by)
    except TypeError:
        raise TypeError(f"by: column names, e.g. ('problem', 'algorithm') or ['n'], or None; got {by!r}") from None
    if not all(isinstance(c, str) for c in cols):
        raise TypeError(f"by: column names must be strings, got {cols!r}")
    return cols


def _groups(reg: RegistryState, by: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """Group number of every job of the registry (status order) and the groups' keys."""
    ids = reg.job_ids
    if reg.kind == "map" and tuple(by) == DEFAULT_BY:
        by = []  # batch_map's jobs have no problem or algorithm: one group, unless asked otherwise
    if not by:
        return np.zeros(ids.size, np.int64), pd.DataFrame(index=range(1 if ids.size else 0))
    frame = reg.definitions.pars_frame(ids)
    cols = [BENCHMARK_WORDS.get(b, b) if b not in frame.columns else b for b in by]
    missing = [b for b, c in zip(by, cols) if c not in frame.columns]
    if missing:
        raise ValueError(f"by: unknown column(s) {missing}; available: {[c for c in frame.columns if c != 'job_id']}")
    keys = frame[cols]
    try:
        number = keys.groupby(cols, sort=True, dropna=False).ngroup().to_numpy()
    except TypeError:
        raise ValueError(f"by: the columns {cols} hold values that cannot be grouped (lists or dicts); "
                         "group by other columns") from None
    first = pd.Series(np.arange(ids.size)).groupby(number).first().to_numpy()
    out = keys.iloc[first].reset_index(drop=True)
    out.columns = by
    return number.astype(np.int64), out


def _asked(reg: RegistryState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(walltime, memory, ncpus) each job's current run was submitted with (NaN: not set)."""
    asked = asked_numbers(reg, reg.status["resource_id"].to_numpy(), ("walltime", "memory", "ncpus"))
    return asked["walltime"], asked["memory"], asked["ncpus"]


def _quantile(values: np.ndarray, q: float) -> float:
    values = values[~np.isnan(values)]
    return float(np.quantile(values, q, method="higher")) if values.size else math.nan


def _label(keys: pd.DataFrame, g: int) -> str:
    if not len(keys.columns):
        return "all jobs"
    return ", ".join(f"{c}={v}" for c, v in keys.iloc[g].items())


def recommend_resources(ids=None, by=DEFAULT_BY, q: float = 0.95, margin: float = 1.2,
                        reg: RegistryState | None = None) -> ResourceRecommendation:
    """Resources for the jobs ``ids`` (default: all), learned from what the done jobs of their
    group used: an ids frame ``job_id``, ``walltime`` (seconds), ``memory`` (MB) and, where the
    jobs' CPU efficiency says so, ``ncpus``, to give to :func:`submit_jobs` as it is:
    ``bt.submit_jobs(bt.recommend_resources(bt.find_not_done()))``.

    Per group (``by``: columns of the job parameters, default problem and algorithm; a
    ``batch_map`` registry groups all its jobs unless ``by`` names mapped arguments; None: one
    group), the ``q`` quantile of the done jobs' run time and peak memory, times ``margin``,
    rounded up as the scheduler counts them (walltime: whole minutes on Slurm and LSF, plus
    ``START_ALLOWANCE`` seconds for the node's start-up; memory: a round number of MB, per CPU
    where the backend's memory is per CPU, as Slurm's ``--mem-per-cpu``); ``ncpus`` the CPUs
    the jobs kept busy (CPU time / run time, at the quantile ``q``) where that differs from what
    they asked for. The evidence: the scheduler's accounting where it has it (Slurm's ``sacct``,
    asked once here), the node's measurement otherwise. With an ids frame that has a ``chunk``
    column, the jobs of a chunk get one walltime (the sum of theirs), the largest memory and
    ``ncpus`` of theirs, and the column is kept.

    Groups without a done job get a walltime estimated with :func:`estimate_runtimes` and no
    memory (it stays as the default resources say); they and groups with fewer than three done
    jobs are named in a warning and in ``.too_little``; ``.groups`` shows the evidence per group.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None, seed=1)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: x * 2, x=range(5))
    >>> _ = bt.submit_jobs([1, 2, 3], resources={"walltime": 3600, "memory": 4096})
    >>> rec = bt.recommend_resources(bt.find_not_done())
    >>> rec.columns.tolist(), rec["job_id"].tolist(), rec["walltime"].tolist()
    (['job_id', 'walltime', 'memory'], [4, 5], [11, 11])
    >>> _ = bt.submit_jobs(rec); bt.find_not_done()["job_id"].tolist()
    []
    """
    reg = resolve(reg)
    by = _check(q, margin, by)
    chunk = ids["chunk"].to_numpy() if isinstance(ids, pd.DataFrame) and "chunk" in ids.columns else None
    sel = reg.ids(ids, keep_order=chunk is not None)
    if chunk is not None:
        order = np.argsort(sel, kind="stable")
        sel, chunk = sel[order], chunk[order]
    reg.sync()
    record_usage(reg)  # the latest of the scheduler's accounting (one call) for the jobs that ended, if it keeps any
    number, keys = _groups(reg, by)
    st = reg.status
    started, done = st["started"].to_numpy(), st["done"].to_numpy()
    ok = ~np.isnan(done) & st["error"].isna().to_numpy()
    runtime = np.fmax(done - started, st["elapsed"].to_numpy())
    memory = st["max_rss"].to_numpy()
    memory = np.where(np.isnan(memory), st["mem_used"].to_numpy(), memory)
    cpu = st["cpu_time"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):  # CPUs kept busy, over the same span as the CPU time
        cores = np.where(runtime >= MIN_CPU_SECONDS, cpu / runtime, np.nan)
    accounted = ~np.isnan(st["elapsed"].to_numpy())
    wall_asked, mem_asked, cpus_asked = _asked(reg)
    reason = st["reason"].to_numpy()
    cf = reg.cluster_functions
    caps = cf.capabilities if cf is not None else None
    unit = caps.walltime_unit if caps is not None else 1
    per_cpu = bool(caps.memory_per_cpu) if caps is not None else False
    default_cpus = float(reg.default_resources.get("ncpus") or 1)

    n_groups = len(keys)
    rows = []
    need_wall = np.full(n_groups, np.nan)  # seconds, before rounding
    need_mem = np.full(n_groups, np.nan)  # MB in all, before rounding
    rec_cpus = np.full(n_groups, np.nan)
    change_cpus = False
    too_little = []
    for g in range(n_groups):
        mine = number == g
        good = mine & ok
        n_done = int(good.sum())
        wall = _quantile(runtime[good], q)
        mem = _quantile(memory[good], q)
        used_cpus = _quantile(cores[good], q)
        asked_cpus = _quantile(cpus_asked[good], 0.5) if n_done else math.nan
        asked_cpus = default_cpus if asked_cpus != asked_cpus else asked_cpus
        note = []
        need_wall[g] = wall * margin if wall == wall else math.nan
        need_mem[g] = mem * margin if mem == mem else math.nan
        if used_cpus == used_cpus:
            rec_cpus[g] = max(1.0, math.ceil(used_cpus - CPU_SLACK))
            change_cpus |= rec_cpus[g] != asked_cpus
        # deaths at a limit of jobs that never succeeded: at least twice that limit
        for why, asked, need, what in (("timeout", wall_asked, need_wall, "walltime"),
                                       ("memory", mem_asked, need_mem, "memory")):
            died = mine & ~ok & (reason == why) & ~np.isnan(asked)
            if died.any():
                limit = float(np.max(asked[died] * (np.where(np.isnan(cpus_asked[died]), 1, cpus_asked[died])
                                                    if what == "memory" and per_cpu else 1)))
                if not need[g] >= LIMIT_FACTOR * limit:
                    need[g] = LIMIT_FACTOR * limit
                    note.append(f"{int(died.sum())} died at the {what} limit")
        n_acc = int((good & accounted).sum())
        evidence = ("none" if not n_done else "scheduler" if n_acc == n_done else "node" if not n_acc
                    else "scheduler+node")
        if n_done < MIN_EVIDENCE:
            too_little.append(_label(keys, g))
            note.append(f"{n_done} done job(s)")
        rows.append({"jobs": int(mine.sum()), "done": n_done, "runtime": wall, "memory_used": mem,
                     "cpus_used": used_cpus, "walltime_asked": _quantile(wall_asked[good], 0.5),
                     "memory_asked": _quantile(mem_asked[good], 0.5), "evidence": evidence, "note": "; ".join(note)})

    pos = reg.pos(sel)
    gsel = number[pos]
    job_wall = need_wall[gsel]
    # groups without a run time: the forest of estimate_runtimes, learned from the other groups' done jobs
    blind = np.isnan(job_wall)
    if blind.any() and ok.any():
        est = _estimated(reg, sel[blind])
        if est is not None:
            job_wall[blind] = est * margin
            for g in np.unique(gsel[blind][~np.isnan(est)]).tolist():
                rows[g]["evidence"] = "estimated" if rows[g]["evidence"] == "none" else rows[g]["evidence"]
    out_cpus = rec_cpus[gsel] if change_cpus else None
    cpus_for_mem = out_cpus if out_cpus is not None else np.full(sel.size, default_cpus)
    job_mem = need_mem[gsel]
    if chunk is not None:
        frame = pd.DataFrame({"chunk": chunk, "wall": job_wall, "mem": job_mem,
                              "cpus": out_cpus if out_cpus is not None else np.nan})
        agg = frame.groupby("chunk")
        job_wall = agg["wall"].transform(lambda s: s.sum(min_count=len(s))).to_numpy()
        job_mem = agg["mem"].transform("max").to_numpy()
        if out_cpus is not None:
            out_cpus = agg["cpus"].transform("max").to_numpy()
            cpus_for_mem = np.where(np.isnan(out_cpus), default_cpus, out_cpus)
    if per_cpu:
        job_mem = job_mem / np.where(np.isnan(cpus_for_mem), 1, cpus_for_mem)
    walltime = [None if w != w else round_walltime(w + START_ALLOWANCE, unit) for w in job_wall.tolist()]
    mem_mb = [None if m != m else round_memory(m) for m in job_mem.tolist()]
    out = ResourceRecommendation({"job_id": sel})
    if chunk is not None:
        out["chunk"] = chunk
    out["walltime"] = pd.array(walltime, dtype="Int64")
    out["memory"] = pd.array(mem_mb, dtype="Int64")
    if out_cpus is not None:
        out["ncpus"] = pd.array([None if c != c else int(c) for c in out_cpus.tolist()], dtype="Int64")
    summary = pd.concat([keys.reset_index(drop=True), pd.DataFrame(rows)], axis=1)
    summary["walltime"] = [None if w != w else round_walltime(w + START_ALLOWANCE, unit) for w in need_wall.tolist()]
    group_cpus = np.where(change_cpus & ~np.isnan(rec_cpus), rec_cpus, default_cpus) if per_cpu else np.ones(n_groups)
    summary["memory"] = [None if m != m else round_memory(m / c) for m, c in zip(need_mem.tolist(), group_cpus.tolist())]
    summary["ncpus"] = rec_cpus
    out.groups = summary
    shown = sorted({_label(keys, g) for g in np.unique(gsel).tolist()} & set(too_little))
    out.too_little = shown
    if shown:
        log.warning("recommend_resources: too little evidence (fewer than %d done jobs) for %d group(s): %s; "
                    "see .groups (walltime estimated from the parameters where none is done, memory left to "
                    "the default resources)", MIN_EVIDENCE, len(shown), "; ".join(shown[:10]))
    return out


def _estimated(reg: RegistryState, ids: np.ndarray) -> np.ndarray | None:
    """Run times of ``ids`` estimated from the job parameters (None if they cannot be)."""
    from .runtimes import estimate_runtimes

    try:
        est = estimate_runtimes(reg.definitions.pars_frame(reg.job_ids), reg=reg, n_estimators=100)
    except (ImportError, ValueError) as e:
        log.info("recommend_resources: no run time estimate for jobs without evidence (%s)", e)
        return None
    lookup = pd.Series(est["runtime"].to_numpy(), index=est["job_id"].to_numpy())
    return lookup.reindex(ids).to_numpy(dtype=float)
