"""The run report: one self-contained HTML page that tells the story of a run (:func:`report`).

``evidence.py`` gathers what the page says from the registry, ``figures.py`` draws its figures,
and ``page/`` holds the jinja2 template, its styles and its sorting script, all inlined into the
one file written. The module is a user-facing extra like :mod:`batchtools.plot`: it reads the
registry through the verbs and core services and never changes it.
"""

from __future__ import annotations

import html
import os
import time
from pathlib import Path

import numpy as np

from .. import plot
from ..core.registry import RegistryState, resolve

HERE = Path(__file__).resolve().parent / "page"
STATE_COLORS = {**plot.STATE_COLORS, "queued": "#3b82c4", "held": "#b39ddb",  # the timeline's, and three more
                "not submitted": "#c9d1d6"}
MAX_PLOTS = 3  # score plots of a benchmark (one per scorer), then its critical-difference diagram


class Report:
    """What :func:`report` wrote: ``path`` (None if no file was written), ``html`` (the page),
    ``size`` (bytes) and ``seconds`` it took. Shown inline in Jupyter (in a frame of its own,
    so its styles and script do not touch the notebook)."""

    def __init__(self, html_text: str, path: Path | None, n_jobs: int, seconds: float):
        self.html = html_text
        self.path = path
        self.n_jobs = n_jobs
        self.seconds = seconds

    @property
    def size(self) -> int:
        return len(self.html.encode("utf-8"))

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "not written"
        return f"Report({where}, {self.n_jobs:,} jobs, {self.size / 1e6:.2f} MB, written in {self.seconds:.1f} s)"

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html.escape(self.html, quote=True)}" sandbox="allow-scripts" '
                'style="width: 100%; height: 820px; border: 1px solid #dfe3e6; border-radius: 4px" '
                'title="batchtools report"></iframe>')


def report(path: str | os.PathLike | None = "report.html", ids=None, by=None,
           reg: RegistryState | None = None) -> Report:
    """Write one self-contained HTML page that tells the story of the run: its state at a
    glance (counts, backend, when, elapsed, an ETA while jobs run, the jobs finished over
    time), the errors grouped by message with the first and last lines of one log each, a
    table per group of jobs with run times, peak memory and walltime as used vs requested,
    CPU efficiency, retries and how attempts died (requests far off are flagged: less than
    10 % used, or killed at the limit), the timeline, the worker pool and, for a benchmark,
    the aggregate scores and their plots. Every table sorts by any column.

    The page needs nothing else: styles, script and figures are inline and it loads nothing
    from the network, so it can be copied off a cluster (``scp``) or kept as a CI artifact.
    Evidence that is missing is said so (e.g. memory not measured: how to turn it on), never
    shown as zeros. A registry of 100,000 jobs gives a page of a few MB, written in seconds:
    jobs are aggregated, only failures are listed (capped, with a count of the rest).

    ``path``: the file to write (its folder must exist); ``None`` writes none (the page is
    still in the returned :class:`Report`, e.g. to show it in Jupyter). ``ids``: the jobs to
    report on (default all). ``by``: the column(s) to group jobs by: job parameters, or
    ``job_name``, ``batch_id``, ``reason`` (default: ``problem`` and ``algorithm`` for
    experiments, ``task`` and ``learner`` naming the same for a benchmark; for ``batch_map``
    the mapped arguments with few distinct values). A column with many values is cut into
    ranges of about equal count (numbers) or its most frequent values and "other".

    From the shell: ``batchtools report REGISTRY -o report.html``. The registry is only read.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> reg.cluster_functions = bt.make_cluster_functions_interactive()
    >>> _ = bt.batch_map(lambda x: 1 / x, x=[0, 1, 2]); _ = bt.submit_jobs()
    >>> rep = bt.report("report.html")
    >>> rep
    Report(report.html, 3 jobs, ... MB, written in ... s)
    >>> "ZeroDivisionError: division by zero" in rep.html
    True
    """
    t0 = time.perf_counter()
    reg = resolve(reg)
    target = _check_path(path)
    if by is not None and not isinstance(by, str) and not (
            isinstance(by, (list, tuple)) and all(isinstance(b, str) for b in by)):
        raise TypeError(f"by: a column name or a list of them, e.g. by=['problem'], got {by!r}")
    reg.sync()
    sel = reg.ids(ids)
    html_text = render(reg, sel, by)
    if target is not None:
        _write(target, html_text)
    return Report(html_text, target, len(sel), time.perf_counter() - t0)


def _check_path(path) -> Path | None:
    if path is None:
        return None
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: the HTML file to write, e.g. 'report.html', got {type(path).__name__}")
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"path: {str(p)!r} is a folder; name the file, e.g. {str(p / 'report.html')!r}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"path: the folder {str(parent)!r} does not exist; create it first or write elsewhere")
    return p


def _write(target: Path, text: str) -> None:
    """Atomically (a reader never sees half a page)."""
    from ..core.persistence.files import atomic_write_bytes

    atomic_write_bytes(target, text.encode("utf-8"))


def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=False, lstrip_blocks=False)


def render(reg: RegistryState, sel: np.ndarray, by=None) -> str:
    """The page for the jobs ``sel`` of ``reg`` (synced by the caller)."""
    import markupsafe

    from .._version import __version__
    from . import evidence, figures

    now = time.time()
    facts = evidence.job_facts(reg, sel)
    labels, notes = evidence.grouping(reg, sel, by)  # a bad ``by`` fails before any drawing
    g = evidence.glance(reg, facts, now)
    errs = evidence.errors(reg, facts)
    grp = evidence.groups(reg, facts, labels, notes)
    workers = evidence.workers(reg, facts, now)
    running = evidence.running(reg, facts, now)
    bench = evidence.benchmark(reg, sel)

    findings = []
    if errs["n"]:
        findings.append(("bad", f"{evidence.plural(errs['n'], 'job')} failed "
                                f"({evidence.plural(errs['n_kinds'], 'kind')} of error): see Errors"))
    if errs["expired"]["n"]:
        findings.append(("bad", f"{evidence.plural(errs['expired']['n'], 'job')} expired (left the system "
                                "without a result)"))
    findings += grp["findings"]

    curve = figures.finished_curve(facts)
    # the timeline is coloured by the last grouping column (the algorithm of experiments) if it has few
    # values of its own (a column cut into ranges would be coloured by its raw values)
    last = grp["by"][-1] if grp["by"] else None
    color_by = (evidence.ALIASES.get(last, last) if last is not None and last not in grp["binned"]
                and labels[last].nunique() <= 12 else None)
    tl, fmt = figures.timeline(reg, sel, color_by)
    timeline_uri = figures.data_uri(tl, fmt, dpi=90) if tl is not None else None
    timeline_size = (int(tl.get_figwidth() * 90), int(tl.get_figheight() * 90)) if tl is not None else None
    if bench is not None and bench["n"] and "result" in bench:
        res = bench["result"]
        bench["plots"] = [(f"Scores ({s}) of the learners on each task", f"{s}: every fold a dot, mean ± sd as a bar.",
                           figures.data_uri(res.plot(score=s))) for s in res.scorers[:MAX_PLOTS]]
        cd, bench["cd_note"] = figures.critical_difference(res)
        if cd is not None:
            bench["plots"].append((f"Critical-difference diagram of the learners ({res.scorers[0]})",
                                   f"{res.scorers[0]}: the learners' mean ranks over the tasks (1 = best); learners "
                                   "joined by a bar are within the Nemenyi critical difference (res.plot(kind='cd')).",
                                   figures.data_uri(cd)))

    env = _environment()
    g["kind"] = ("benchmark" if bench is not None and "result" in bench else
                 "experiments" if reg.kind == "experiment" else "batch_map")
    return env.get_template("report.html.j2").render(
        title=f"Run report: {Path(str(reg.file_dir)).name}", version=__version__, g=g, errors=errs, groups=grp,
        findings=findings, curve=figures.data_uri(curve) if curve is not None else None,
        timeline=timeline_uri, timeline_size=timeline_size, color_by=color_by, workers=workers, bench=bench,
        running=running,
        css=markupsafe.Markup((HERE / "report.css").read_text()),
        js=markupsafe.Markup((HERE / "report.js").read_text()))


def glance_html(reg: RegistryState) -> str:
    """The run at a glance as an HTML fragment with inline styles (a registry in Jupyter)."""
    from . import evidence

    error = g = None
    try:
        reg.sync()
        g = evidence.glance(reg, evidence.job_facts(reg, reg.job_ids), time.time())
    except Exception as e:  # a display must show something: the registry, and why its status is missing
        error = f"{type(e).__name__}: {e}"
    return _environment().get_template("glance.html.j2").render(
        cls=type(reg).__name__, g=g or {"file_dir": str(reg.file_dir), "kind": reg.kind, "backend": "?",
                                         "seed": reg.seed},
        error=error, writeable=reg.writeable, colors=STATE_COLORS)
