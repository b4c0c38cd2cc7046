"""What a report says, gathered from a registry: per-job facts in columns, then each section as
plain values (text, numbers, tables of cells) for the page template.

Nothing here fills in a value it does not have: a missing measurement, request or log is a cell
or a note that says so and how to get it, never a zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..api.logs import error_groups, read_job_log
from ..core.jobstate import attempts
from ..core.jobstate.kinds import BENCHMARK_WORDS
from ..core.jobstate.resources import asked_numbers
from ..core.jobstate.state import masks
from ..core.presentation.clock import local_time
from ..core.presentation.progress import eta_from_runtimes, format_duration
from ..core.registry import RegistryState
from ..core.workerpool.pool import pool_state

FAR_OFF = 0.10  # a request of which less than this share was used is flagged
MAX_GROUPS = 500  # rows of the group table; more groups are counted, not listed
MAX_LEVELS = 20  # distinct values of a grouping column before it is binned (numbers) or cut (text)
MAX_DEFAULT_GROUPS = 60  # the default grouping of a batch_map registry stays below this many groups
NUMBER_BINS = 8  # ranges of equal count for a numeric column with many values
MAX_ERROR_GROUPS = 30  # kinds of error shown with their log; the rest are counted
MAX_IDS = 40  # job ids listed per kind of error, expired jobs, ...
LOG_HEAD, LOG_TAIL = 6, 24  # lines of a log shown: its beginning and its end (the traceback)
ALIASES = BENCHMARK_WORDS  # benchmark registries' names for the experiment columns
STATE_ORDER = ("done", "error", "expired", "running", "queued", "held", "not submitted")
MEMORY_HINT = ("submit with resources={'measure_memory': True} to measure each job's peak memory "
               "(batchtools submit -r measure_memory=true)")


# ------------------------------------------------------------------ cells and tables
@dataclass
class Cell:
    """One table cell: ``text`` shown, ``sort`` the value the column sorts by (None: sorts last),
    ``flag`` a CSS class (``bad``, ``warn``, ``missing``), ``title`` a tooltip."""

    text: str
    sort: float | str | None = None
    flag: str | None = None
    title: str | None = None

    @property
    def sort_text(self) -> str:
        if self.sort is None or (isinstance(self.sort, float) and not math.isfinite(self.sort)):
            return ""
        return repr(float(self.sort)) if isinstance(self.sort, (int, float, np.number)) else str(self.sort)


@dataclass
class Column:
    title: str
    numeric: bool = False
    help: str | None = None


@dataclass
class Table:
    columns: list[Column]
    rows: list[list[Cell]] = field(default_factory=list)
    more: str | None = None  # rows left out, said in words


@dataclass
class Flag:
    """A request that was far off in one group: ``topic`` (walltime, memory, ncpus: less than
    10 % used; timeout, oom: runs killed at the limit), ``bad`` (killed) or only wasteful."""

    topic: str
    bad: bool
    text: str
    runs: int = 0
    group: str = ""

    @property
    def detail(self) -> str:
        """The text without its ``walltime: `` (etc.) prefix, for a list of one kind of flag."""
        return self.text.removeprefix(f"{self.topic}: ")


FLAG_TITLES = {"timeout": "runs killed at the walltime (timeout)", "oom": "runs killed at the memory limit (oom)",
               "walltime": "walltime requested 10x or more above the longest run",
               "memory": "memory requested 10x or more above the peak used",
               "ncpus": "CPUs requested 10x or more above what was used"}


def summarize(flags: list[Flag], examples: int = 4) -> list[tuple[str, str]]:
    """One finding per kind of flag: (css class, text), the killed ones first."""
    out = []
    for topic in FLAG_TITLES:
        mine = [f for f in flags if f.topic == topic]
        if not mine:
            continue
        if len(mine) == 1:
            text = f"{mine[0].group}: {mine[0].text}"
        else:
            head = (f"{plural(sum(f.runs for f in mine), 'run')} in" if mine[0].runs else "in")
            shown = "; ".join(f"{f.group}: {f.detail}" for f in mine[:examples])
            text = (f"{FLAG_TITLES[topic]}: {head} {len(mine)} groups ({shown}"
                    + (f"; and {len(mine) - examples} more" if len(mine) > examples else "") + ")")
        out.append(("bad" if mine[0].bad else "warn", text))
    return out


def num(value: float, text: str | None = None, flag: str | None = None, title: str | None = None) -> Cell:
    missing = value is None or (isinstance(value, float) and not math.isfinite(value))
    return Cell(text if text is not None else ("" if missing else f"{value:,}"), None if missing else float(value),
                flag, title)


def missing(text: str, title: str | None = None) -> Cell:
    return Cell(text, None, "missing", title)


def duration(seconds: float | None) -> str:
    """Seconds for people, to the millisecond below a minute (job run times are often short).

    >>> [duration(s) for s in (0.00031, 0.0123, 2.5, 125, 7300)]
    ['0.3ms', '12ms', '2.50s', '2m05s', '2h01m']
    """
    if seconds is None or not math.isfinite(seconds):
        return "?"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    return format_duration(seconds)


def mebibytes(mib: float) -> str:
    """>>> [mebibytes(x) for x in (0.4, 57.25, 2048)]
    ['0.4 MiB', '57 MiB', '2.0 GiB']"""
    if mib < 10:
        return f"{mib:.1f} MiB"
    if mib < 1024:
        return f"{mib:.0f} MiB"
    return f"{mib / 1024:.1f} GiB"


def share(used: float, requested: float) -> str:
    pct = 100 * used / requested
    return f"{pct:.2g} %" if pct < 10 else f"{pct:.0f} %"


def id_list(ids, limit: int = MAX_IDS) -> str:
    """>>> id_list([1, 2, 3], limit=2)
    '1, 2 and 1 more'"""
    ids = list(ids)
    text = ", ".join(str(int(i)) for i in ids[:limit])
    return text + (f" and {len(ids) - limit:,} more" if len(ids) > limit else "")


def plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


# ------------------------------------------------------------------ per-job facts
def job_facts(reg: RegistryState, sel: np.ndarray) -> pd.DataFrame:
    """One row per job of ``sel``: state, times, measurements, requests (columns, no per-job objects)."""
    pos = reg.pos(sel)
    st = reg.status
    m = masks(reg, pos)
    state = np.full(sel.size, "not submitted", dtype=object)
    for name in ("held", "queued", "running", "expired", "error", "done"):
        state[m[name]] = name
    col = lambda c: st[c].to_numpy()[pos]  # noqa: E731
    started, done = col("started"), col("done")
    ended = ~np.isnan(started) & ~np.isnan(done) & (m["done"] | m["error"])
    runtime = np.where(ended, done - started, np.nan)
    mem_used, max_rss = col("mem_used"), col("max_rss")
    out = pd.DataFrame({
        "job_id": sel, "state": state, "submitted": col("submitted"), "started": started, "done": done,
        "ended": ended, "runtime": runtime, "mem_used": mem_used, "max_rss": max_rss,
        "cpu_time": col("cpu_time"), "attempt": np.where(np.isnan(col("attempt")), 1.0, col("attempt")),
        "reason": col("reason"), "error": col("error"), "batch_id": col("batch_id"), "job_hash": col("job_hash"),
    })
    # what was asked for
    for key, values in asked_numbers(reg, col("resource_id"), ("walltime", "memory", "ncpus")).items():
        out[f"req_{key}"] = values
    pool = pool_state(reg)
    queues = list(pool.queues) if pool is not None else []
    out["pooled"] = np.isin(out["job_hash"].to_numpy().astype(str), queues) if queues else False
    return out


# ------------------------------------------------------------------ the run at a glance
def glance(reg: RegistryState, facts: pd.DataFrame, now: float) -> dict[str, Any]:
    """Counts, backend, when, elapsed, ETA."""
    counts = {s: int((facts["state"] == s).sum()) for s in STATE_ORDER}
    n = len(facts)
    submitted = facts["submitted"].to_numpy()
    started = facts["started"].to_numpy()
    done = facts["done"].to_numpy()
    left = facts["state"].isin(["queued", "running"]).to_numpy()
    first_sub = np.nanmin(submitted) if (~np.isnan(submitted)).any() else None
    first_start = np.nanmin(started) if (~np.isnan(started)).any() else None
    last_end = np.nanmax(done) if (~np.isnan(done)).any() else None
    elapsed = None
    if first_sub is not None:
        elapsed = (now if left.any() or last_end is None else last_end) - first_sub
    eta = None
    if left.any():
        eta = eta_from_runtimes(started, np.where(facts["ended"].to_numpy(), done, np.nan), left,
                                (facts["state"] == "running").to_numpy(), now)
    cf = reg.cluster_functions
    backend = repr(cf).removeprefix("ClusterFunctions") if cf is not None else "(none set)"
    bar = [(s, counts[s], 100.0 * counts[s] / n if n else 0.0) for s in STATE_ORDER if counts[s]]
    kind = "experiments" if reg.kind == "experiment" else "batch_map"
    return {
        "n": n, "n_registry": len(reg.status), "counts": counts, "bar": bar, "kind": kind,
        "backend": backend.strip("(), ") or "(none set)", "file_dir": str(reg.file_dir), "seed": reg.seed,
        "first_submitted": local_time(first_sub) if first_sub is not None else None,
        "first_started": local_time(first_start) if first_start is not None else None,
        "last_ended": local_time(last_end) if last_end is not None else None,
        "elapsed": format_duration(elapsed) if elapsed is not None else None,
        "running": bool(left.any()), "left": int(left.sum()),
        "eta": (format_duration(eta) if eta is not None else None),
        "generated": local_time(now),
    }


# ------------------------------------------------------------------ errors
def errors(reg: RegistryState, facts: pd.DataFrame) -> dict[str, Any]:
    """Failed jobs grouped by message, each kind with the first lines and the end of one log;
    expired jobs with their reasons."""
    failed = facts[facts["state"] == "error"]
    groups = error_groups(failed["job_id"].tolist(), failed["error"].tolist())
    reason_of = dict(zip(failed["job_id"].tolist(), failed["reason"].tolist()))
    kinds = []
    for g in groups[:MAX_ERROR_GROUPS]:
        reasons = pd.Series([reason_of.get(j) or "not recorded" for j in g.job_ids]).value_counts()
        kinds.append({"n": len(g.job_ids), "ids": id_list(g.job_ids), "message": g.text,
                      "reasons": ", ".join(f"{r} {k:,}" for r, k in reasons.items()),
                      "log": _log_excerpt(reg, g.job_ids[0])})
    rest = groups[MAX_ERROR_GROUPS:]
    expired = facts[facts["state"] == "expired"]
    exp_reasons = expired["reason"].map(lambda r: r or "not recorded").value_counts()
    return {
        "n": len(failed), "kinds": kinds, "n_kinds": len(groups),
        "more": (f"and {plural(len(rest), 'more kind')} of error in {plural(sum(len(g.job_ids) for g in rest), 'job')}"
                 " (see batchtools errors)") if rest else None,
        "expired": {"n": len(expired), "ids": id_list(expired["job_id"].tolist()),
                    "reasons": ", ".join(f"{r} {k:,}" for r, k in exp_reasons.items())},
    }


def _log_excerpt(reg: RegistryState, job_id: int) -> dict[str, Any]:
    try:
        lines = read_job_log(reg, job_id)
    except (FileNotFoundError, OSError, ValueError) as e:
        return {"job_id": job_id, "text": None, "why": str(e)}
    n = len(lines)
    if n <= LOG_HEAD + LOG_TAIL + 1:
        return {"job_id": job_id, "text": "\n".join(lines), "what": f"all {plural(n, 'line')}"}
    text = "\n".join(lines[:LOG_HEAD] + [f"[... {n - LOG_HEAD - LOG_TAIL:,} lines left out ...]"] + lines[-LOG_TAIL:])
    return {"job_id": job_id, "text": text, "what": f"lines 1-{LOG_HEAD} and {n - LOG_TAIL + 1}-{n} of {n:,}"}


# ------------------------------------------------------------------ groups
def choices(reg: RegistryState, pars: pd.DataFrame) -> list[str]:
    names = [c for c in pars.columns if c != "job_id"] + ["job_name", "batch_id", "reason"]
    if reg.kind == "experiment":
        names += list(ALIASES)
    return names


def grouping(reg: RegistryState, sel: np.ndarray, by) -> tuple[pd.DataFrame, dict[str, str]]:
    """(one column of labels per grouping column, {column: how it was binned or cut}). ``by``:
    None for the default, a column name or a sequence of them."""
    pars = reg.definitions.pars_frame(sel).reset_index(drop=True)
    if by is None:
        by = default_by(reg, pars)
    else:
        by = [by] if isinstance(by, str) else list(by)
    labels = pd.DataFrame(index=range(len(sel)))
    notes: dict[str, str] = {}
    for name in by:
        source = ALIASES.get(name, name) if name not in pars.columns else name
        if source in pars.columns and source != "job_id":
            values = pars[source]
        elif source in ("job_name", "batch_id", "reason"):
            values = pd.Series(reg.status[source].to_numpy()[reg.pos(sel)])
        else:
            raise ValueError(f"by: {name!r} is neither a job parameter nor one of job_name, batch_id, reason; "
                             f"choose among {choices(reg, pars)}")
        labels[name], note = _levels(name, values)
        if note:
            notes[name] = note
    return labels, notes


def default_by(reg: RegistryState, pars: pd.DataFrame) -> list[str]:
    """problem x algorithm for experiments; for batch_map the mapped arguments with few values
    (at most 20, and groups of two jobs or more on average), as long as their product stays
    small; else the first argument with many values (then cut into ranges or its most
    frequent values)."""
    if reg.kind == "experiment":
        return ["problem", "algorithm"]
    cols = [c for c in pars.columns if c != "job_id"]
    levels = {c: _nunique(pars[c]) for c in cols}
    limit = min(MAX_DEFAULT_GROUPS, len(pars) / 2)
    out, product = [], 1
    for c in cols:
        k = levels[c]
        if 2 <= k <= MAX_LEVELS and product * k <= limit:
            out.append(c)
            product *= k
    if not out:
        many = [c for c in cols if levels[c] > MAX_LEVELS]
        out = many[:1]
    return out


def _nunique(values: pd.Series) -> int:
    try:
        return int(values.nunique(dropna=False))
    except TypeError:  # unhashable values (lists, dicts)
        return int(values.map(repr).nunique(dropna=False))


def _levels(name: str, values: pd.Series) -> tuple[pd.Series, str | None]:
    """Labels of a grouping column: the values themselves, or (many values) ranges of equal count
    for numbers, the most frequent values and 'other' for the rest."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    k = _nunique(values)
    if k <= MAX_LEVELS:
        return values.map(_label), None
    if numeric:
        x = values.astype(float)
        edges = np.unique(np.nanquantile(x, np.linspace(0, 1, NUMBER_BINS + 1))) if x.notna().any() else []
        whole = pd.api.types.is_integer_dtype(values)
        if whole:  # ranges of whole numbers: [lo, next lo - 1], the last one up to the maximum
            edges = np.unique(np.round(edges))
        if len(edges) > 2:
            codes = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
            last = len(edges) - 2
            names = [f"{_label(edges[i])} – {_label(edges[i + 1] - (whole and i < last))}"
                     for i in range(len(edges) - 1)]
            # sortable labels: the range's lower end first
            label = pd.Series([names[c] if v == v else "NA" for c, v in zip(codes, x)])
            return label, (f"{name}: {k:,} distinct values, shown in {len(edges) - 1} ranges of about equal "
                           "count (pass by= to group otherwise)")
    text = values.map(_label)
    top = text.value_counts().index[: MAX_LEVELS - 1]
    return text.where(text.isin(top), "other"), (f"{name}: {k:,} distinct values; the {MAX_LEVELS - 1} most "
                                                 "frequent are shown, the rest as 'other'")


def _label(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "NA"
    if isinstance(v, (float, np.floating)):
        return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{float(v):.6g}"
    return str(v)


def groups(reg: RegistryState, facts: pd.DataFrame, labels: pd.DataFrame, notes: dict[str, str]) -> dict[str, Any]:
    """The table per group: counts, run times, memory and walltime used vs requested, CPU
    efficiency, attempts and deaths, with far-off requests flagged."""
    keys = list(labels.columns)
    df = pd.concat([facts.reset_index(drop=True), labels.add_prefix("by:")], axis=1)
    deaths = _deaths(reg, facts)
    by_cols = [f"by:{k}" for k in keys]
    grouped = df.groupby(by_cols, sort=False, dropna=False) if keys else [((), df)]
    if keys:  # numbers (and ranges) in numeric order, text alphabetically, NA and 'other' last
        grouped = sorted(grouped, key=lambda kv: [_order(k) for k in (kv[0] if isinstance(kv[0], tuple)
                                                                       else (kv[0],))])
    has_mem = bool(df["mem_used"].notna().any())
    has_rss = bool(df["max_rss"].notna().any())
    # a grouping column of numbers (or ranges of numbers) sorts as numbers
    columns = [Column(k, all(not isinstance(_sort_key(v), str) for v in labels[k].unique() if v != "NA"))
               for k in keys] + [
        Column("n", True), Column("done", True), Column("error", True), Column("expired", True),
        Column("left", True, "queued, running, held or not submitted"),
        Column("run time min", True), Column("median", True), Column("max", True),
        Column("walltime used / requested", True, "the longest run against the walltime asked for"),
        Column("peak memory", True, "the largest peak of the group's jobs"),
        Column("memory used / requested", True, "that peak against the memory asked for (MB)"),
        Column("CPU efficiency", True, "CPU time / (run time x ncpus), over the group's jobs"),
        Column("retried", True, "jobs that ran more than once (retries, requeues, lost workers)"),
        Column("deaths", False, "how earlier and failed attempts ended"),
        Column("flags", False, "requests that were far off: used < 10 % of the request, or killed at the limit"),
    ]
    rows: list[list[Cell]] = []
    all_flags: list[Flag] = []
    n_groups = 0
    for key, g in grouped:
        n_groups += 1
        if n_groups > MAX_GROUPS:
            continue
        key = key if isinstance(key, tuple) else (key,)
        name = " × ".join(str(k) for k in key) or "all jobs"
        row, flags = _group_row(g, deaths)
        row[-1] = Cell("; ".join(f.text for f in flags), len(flags), "bad" if any(f.bad for f in flags) else
                       ("warn" if flags else None))
        rows.append([Cell(str(k), _sort_key(str(k))) for k in key] + row)
        for f in flags:
            f.group = name
        all_flags += flags
    memory_note = None
    if not has_mem and not has_rss:
        memory_note = "No memory was measured for these jobs: " + MEMORY_HINT + "."
    elif not has_mem:
        memory_note = ("Peak memory is the resident set of the process that ran the job (getrusage); for jobs "
                       "that shared a process (a chunk, a pool worker) it is that process's peak so far, an "
                       "upper bound. For each job's own peak, " + MEMORY_HINT + ".")
    table = Table(columns, rows, f"and {n_groups - MAX_GROUPS:,} more groups (pass fewer columns as by=)"
                  if n_groups > MAX_GROUPS else None)
    return {"by": keys, "table": table, "notes": list(notes.values()), "binned": set(notes), "memory_note": memory_note, "findings": summarize(all_flags),
            "n_groups": n_groups, "pooled": bool(df["pooled"].any())}


def _order(label: str) -> tuple:
    key = _sort_key(label)
    number = not isinstance(key, str)
    return (label in ("NA", "other"), not number, key if number else 0.0, "" if number else key)


def _sort_key(label: str) -> float | str:
    """Numbers and ranges sort as numbers, other labels as text."""
    head = label.split(" – ")[0]
    try:
        return float(head)
    except ValueError:
        return label


def _deaths(reg: RegistryState, facts: pd.DataFrame) -> pd.DataFrame:
    """(job_id, reason) of every attempt that did not succeed: earlier attempts and current ones
    (failed, or expired with a reason the scheduler gave, e.g. cancelled)."""
    t = attempts.table(reg)
    past = t.loc[t["job_id"].isin(facts["job_id"]), ["job_id", "reason"]] if len(t) else None
    over = facts["ended"] | (facts["state"] == "expired")
    cur = facts.loc[over & facts["reason"].notna(), ["job_id", "reason"]]
    out = pd.concat([past, cur], ignore_index=True) if past is not None and len(past) else cur
    return out.assign(reason=out["reason"].fillna("unknown"))


def _group_row(g: pd.DataFrame, deaths: pd.DataFrame) -> tuple[list[Cell], list[Flag]]:
    flags: list[Flag] = []
    n = len(g)
    states = g["state"].value_counts()
    cells = [num(n), num(int(states.get("done", 0))),
             num(int(states.get("error", 0)), flag="bad" if states.get("error", 0) else None),
             num(int(states.get("expired", 0)), flag="bad" if states.get("expired", 0) else None),
             num(int(states.get("queued", 0) + states.get("running", 0) + states.get("held", 0)
                     + states.get("not submitted", 0)))]
    rt = g.loc[g["ended"], "runtime"].to_numpy()
    if rt.size:
        cells += [num(float(rt.min()), duration(rt.min())), num(float(np.median(rt)), duration(np.median(rt))),
                  num(float(rt.max()), duration(rt.max()))]
    else:
        cells += [missing("no run ended")] + [missing("")] * 2
    pooled = bool(g["pooled"].all())
    mine = deaths[deaths["job_id"].isin(g["job_id"])]
    reasons = mine["reason"].value_counts()
    # walltime: the longest run against the request (a pool worker's walltime is for all its jobs: not flagged)
    cell, flag = _against_request("walltime", float(rt.max()) if rt.size else None, g["req_walltime"].to_numpy(),
                                  duration, pooled)
    cells.append(cell)
    flags += [flag] if flag else []
    timeouts = int(reasons.get("timeout", 0))
    if timeouts:
        flags.append(Flag("timeout", True, f"{plural(timeouts, 'run')} killed at the walltime (timeout)", timeouts))
    # memory: the sampled per-job peak where measured, else the process's peak RSS
    mem = g["mem_used"].where(g["mem_used"].notna(), g["max_rss"]).to_numpy()
    mem = mem[~np.isnan(mem)]
    source = "sampled peak" if g["mem_used"].notna().any() else "peak RSS of the process"
    peak = float(mem.max()) if mem.size else np.nan
    if mem.size:
        cells.append(num(peak, mebibytes(peak), title=source))
    else:
        hint = "set the resource measure_memory=True" if g["ended"].any() else "no run ended"
        cells.append(missing("not measured" if g["ended"].any() else "", hint))
    cell, flag = _against_request("memory", peak if mem.size else None, g["req_memory"].to_numpy(), mebibytes)
    cells.append(cell)
    flags += [flag] if flag else []
    ooms = int(reasons.get("memory", 0))
    if ooms:
        flags.append(Flag("oom", True, f"{plural(ooms, 'run')} killed at the memory limit (oom)", ooms))
    # CPU efficiency
    ok = g["ended"].to_numpy() & g["cpu_time"].notna().to_numpy() & (g["runtime"].to_numpy() > 0)
    if ok.any():
        ncpus = g["req_ncpus"].to_numpy()[ok]
        asked_cpus = np.where(np.isnan(ncpus), 1.0, ncpus)
        eff = float(g["cpu_time"].to_numpy()[ok].sum() / (g["runtime"].to_numpy()[ok] * asked_cpus).sum())
        flag = None
        top = float(asked_cpus.max())
        if top > 1 and eff < FAR_OFF:
            flag = "warn"
            flags.append(Flag("ncpus", False, f"ncpus: {eff * 100:.0f} % of {top:.0f} CPUs used"))
        note = "ncpus not requested: counted as 1" if np.isnan(ncpus).all() else f"ncpus {top:.0f}"
        cells.append(num(eff, f"{eff * 100:.0f} %", flag, note))
    else:
        cells.append(missing("not measured" if rt.size else "", "no CPU time was recorded" if rt.size else None))
    retried = int((g["attempt"] > 1).sum())
    cells.append(num(retried, flag="warn" if retried else None,
                     title=f"at most {int(g['attempt'].max())} attempts" if retried else None))
    cells.append(Cell(", ".join(f"{r} {k:,}" for r, k in reasons.items()), int(reasons.sum()) if len(reasons) else None))
    cells.append(Cell(""))  # flags, filled in by the caller
    return cells, flags


def _against_request(resource: str, used: float | None, requested: np.ndarray, fmt, pooled: bool = False
                     ) -> tuple[Cell, Flag | None]:
    """The cell of a group's largest use against its largest request of ``resource``, and the flag if
    less than 10 % of it was used (``pooled``: a worker's request, for all its jobs: no flag)."""
    if used is None:
        return missing(""), None
    asked = requested[~np.isnan(requested)]
    if not asked.size:
        return missing("not requested", f"no {resource} resource was set"), None
    top = float(asked.max())
    flag = None
    if used / top < FAR_OFF and not pooled:
        flag = Flag(resource, False, f"{resource}: used at most {fmt(used)} of {fmt(top)} ({share(used, top)})")
    text = f"{fmt(used)} / {fmt(top)}" + (" (a worker's)" if pooled else "")
    return num(used / top, text, "warn" if flag else None, f"{share(used, top)} of the request"), flag


# ------------------------------------------------------------------ running jobs
def running(reg: RegistryState, facts: pd.DataFrame, now: float) -> dict[str, Any] | None:
    """The jobs running now (the longest-running first, at most MAX_IDS) with their last sign of
    life (``job.progress`` / ``job.heartbeat``), or None if none runs."""
    run = facts[facts["state"] == "running"].sort_values(["started", "job_id"])
    if not len(run):
        return None
    pos = reg.pos(run["job_id"].to_numpy()[:MAX_IDS])
    st = reg.status
    at, value, message = (st[c].to_numpy()[pos] for c in ("progress_at", "progress", "progress_message"))
    columns = [Column("job", True), Column("running for", True), Column("last progress", True,
                                                                        "when the job last called job.progress or "
                                                                        "job.heartbeat"),
               Column("progress", True), Column("message")]
    rows = []
    for k, r in enumerate(run.head(MAX_IDS).itertuples()):
        began = r.started if np.isfinite(r.started) else None
        said = at[k] if np.isfinite(at[k]) else None
        rows.append([
            num(int(r.job_id)),
            num(now - began, duration(now - began)) if began is not None else missing("?"),
            num(said, f"{format_duration(now - said)} ago") if said is not None else missing(
                "none reported", "the job does not call job.progress() or job.heartbeat()"),
            num(float(value[k]), f"{value[k]:.3g}") if np.isfinite(value[k]) else missing(""),
            Cell(str(message[k])) if isinstance(message[k], str) else missing(""),
        ])
    more = f"and {len(run) - MAX_IDS:,} more running" if len(run) > MAX_IDS else None
    return {"table": Table(columns, rows, more), "n": len(run)}


# ------------------------------------------------------------------ the worker pool
def workers(reg: RegistryState, facts: pd.DataFrame, now: float) -> dict[str, Any] | None:
    """The pool's workers with what they ran, or None if the registry has no pool."""
    if pool_state(reg) is None:
        return None
    from ..api.workers import get_workers  # the verb: its table is the pool's truth

    w = get_workers(reg=reg)
    if not len(w):
        return None
    columns = [Column("worker"), Column("batch id"), Column("state"), Column("submitted", True),
               Column("last beat", True), Column("claimed", True), Column("done", True), Column("error", True),
               Column("busy", True, "time its jobs ran"), Column("span", True, "first start to last end of its jobs"),
               Column("busy share", True, "busy / span: how much of its time the worker spent running jobs"),
               Column("log file")]
    rows = []
    batch = facts["batch_id"].to_numpy().astype(str)
    for r in w.itertuples():
        mine = facts[(batch == str(r.batch_id)) & facts["ended"].to_numpy()]
        busy = float(mine["runtime"].sum()) if len(mine) else None
        span = float(mine["done"].max() - mine["started"].min()) if len(mine) else None
        sub = r.submitted.timestamp() if pd.notna(r.submitted) else None
        beat = r.last_beat.timestamp() if pd.notna(r.last_beat) else None
        rows.append([
            Cell(str(r.worker_id)), Cell(str(r.batch_id)),
            Cell(str(r.state), flag="bad" if r.state in ("stale", "gone") else None),
            num(sub, local_time(sub)) if sub else missing("?"),
            num(beat, f"{format_duration(now - beat)} ago") if beat else missing("none yet"),
            num(int(r.claimed)),
            num(int(r.done)) if pd.notna(r.done) else num(int((mine["state"] == "done").sum()),
                                                          title="counted from the jobs: the worker is still at work"),
            num(int(r.error)) if pd.notna(r.error) else num(int((mine["state"] == "error").sum())),
            num(busy, duration(busy)) if busy is not None else missing("no job ended"),
            num(span, duration(span)) if span is not None else missing(""),
            num(busy / span, f"{100 * busy / span:.0f} %") if busy is not None and span else missing(""),
            Cell(str(r.log_file or "")),
        ])
    return {"table": Table(columns, rows), "n": len(w)}


# ------------------------------------------------------------------ ML benchmarks
def benchmark(reg: RegistryState, sel: np.ndarray) -> dict[str, Any] | None:
    """The aggregate score table of a benchmark registry (None for other registries)."""
    if reg.kind != "experiment":
        return None
    from ..api.benchmark import reduce_results_batchmark
    from ..api.benchmark_result import BenchmarkResult

    try:
        res = reduce_results_batchmark(reg=reg)
    except Exception as e:  # e.g. a learner that cannot be unpickled here: say so, report the rest
        return {"error": f"{type(e).__name__}: {e}", "n": 0}
    if not res.scorers:
        return None
    scores = res.scores[res.scores["job_id"].isin(sel)].reset_index(drop=True) if len(res.scores) else res.scores
    res = BenchmarkResult(scores, res.scorers, res.info)
    agg = res.aggregate()
    columns = [Column(c, pd.api.types.is_numeric_dtype(agg[c])) for c in agg.columns]
    rows = []
    for rec in agg.itertuples(index=False):
        cells = []
        for c, v in zip(agg.columns, rec):
            if isinstance(v, (int, float, np.number)) and not isinstance(v, bool):
                cells.append(num(float(v), "" if v != v else (f"{v:,}" if float(v).is_integer() and c == "n"
                                                              else f"{v:.4g}")))
            else:
                cells.append(Cell(str(v), str(v)))
        rows.append(cells)
    return {"result": res, "table": Table(columns, rows), "n": len(scores), "error": None}
