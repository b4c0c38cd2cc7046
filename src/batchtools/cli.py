"""The ``batchtools`` command: look at a registry, and act on it, from the shell.

Looking (read-only, safe while a session works on the registry; no configuration file is run
unless ``--conf FILE``):

    batchtools status   [REGISTRY] [--check] [--json]   job counts
    batchtools watch    [REGISTRY] [--interval S] [--notify TARGET]
                                                        live counts, running jobs, workers, ETA
    batchtools errors   [REGISTRY] [--list]             errors grouped by message
    batchtools log      [REGISTRY] JOB_ID               the log of one job (a typo gets the nearest command or option)
    batchtools workers  [REGISTRY]                      the worker pool
    batchtools timeline [REGISTRY] -o FILE [--ids IDS]  timeline figure (PNG, PDF or SVG)
    batchtools report   [REGISTRY] -o FILE              the run report: one self-contained HTML page

Acting (takes the registry's writeable lease; refused while another live session holds it,
unless ``--force``; the configuration file is found as ``load_registry`` finds it):

    batchtools submit   [REGISTRY] [--ids IDS] [chunks, resources] [--wait [--notify TARGET]]
    batchtools resubmit [REGISTRY] --errors/--expired/--ids IDS [chunks, resources] [--wait [--notify TARGET]]
    batchtools kill     [REGISTRY] [--ids IDS]
    batchtools reset    [REGISTRY] --errors/--expired/--ids IDS/--all

REGISTRY defaults to ./registry. Exit status: see :data:`EXIT_CODES`.
"""

from __future__ import annotations

import argparse
import os
import sys

OK, FAILED, USAGE, JOBS_FAILED, JOBS_LEFT, BUSY, INTERRUPTED = 0, 1, 2, 3, 4, 5, 130
EXIT_CODES = {
    OK: "success (status --check, watch, --wait: every job done)",
    FAILED: "the command failed (no registry, unknown job, refused by the backend, ...); the reason is on stderr",
    USAGE: "wrong usage (unknown command or option)",
    JOBS_FAILED: "status --check, watch, --wait: some jobs failed (error) or expired",
    JOBS_LEFT: "status --check: no job failed, but some are not done (not submitted, queued or running)",
    BUSY: "an action was refused: another live session holds the registry's writeable lease (see --force)",
    INTERRUPTED: "interrupted (Ctrl-C)",
}
DEFAULT_REGISTRY = "registry"


def say(*values, file=None, flush: bool = False) -> None:
    """``print``, with what a terminal would act on (escape sequences, carriage returns) shown
    literally: the command shows text from the registry (job names, tags, error messages, logs)."""
    from .core.presentation.text import printable

    print(*(printable(str(v)) for v in values), file=sys.stdout if file is None else file, flush=flush)


class CliError(Exception):
    """A failure to report on stderr with an exit code."""

    def __init__(self, message: str, code: int = FAILED):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- arguments
def parse_ids(text: str) -> list[int]:
    """``"1,3,5-8"`` -> ``[1, 3, 5, 6, 7, 8]``.

    >>> parse_ids("1,3,5-8")
    [1, 3, 5, 6, 7, 8]
    """
    out: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        a, sep, b = part.partition("-")
        try:
            if sep:
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                out.extend(range(lo, hi + 1))
            else:
                out.append(int(a))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not a job id or a range like 5-8") from None
    if not out:
        raise argparse.ArgumentTypeError("no job ids given; e.g. --ids 1,3,5-8")
    return out


def parse_resource(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE a number, true/false, none or text.

    >>> parse_resource("walltime=3600"), parse_resource("partition=short"), parse_resource("exclusive=true")
    (('walltime', 3600), ('partition', 'short'), ('exclusive', True))
    """
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. partition=short")
    v = value.strip()
    low = v.lower()
    if low in ("true", "false"):
        return key.strip(), low == "true"
    if low in ("none", "null"):
        return key.strip(), None
    for conv in (int, float):
        try:
            return key.strip(), conv(v)
        except ValueError:
            pass
    return key.strip(), v


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1")
    return n


def _seconds(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        x = -1.0
    if not 0 < x < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds > 0")
    return x


def _threshold(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        x = -1.0
    if not (0 < x < 1 or (x >= 1 and x == int(x))):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of jobs (1, 2, ...) or a share (0.1 = 10%)")
    return int(x) if x >= 1 else x


def notifying(p: argparse.ArgumentParser, when: str) -> None:
    p.add_argument("--notify", metavar="TARGET",
                   help=f"send one message {when}: a web hook URL (JSON POST; Slack, Mattermost), "
                        "ntfy://HOST/TOPIC, or a shell command (the message on its standard input and in "
                        "$BATCHTOOLS_MESSAGE)")
    p.add_argument("--notify-failures", type=_threshold, metavar="N",
                   help="with --notify: also one message as soon as N jobs failed or expired (or a share, e.g. 0.1)")


def _notifier(args):
    """The --notify target (None without one)."""
    target, failures = getattr(args, "notify", None), getattr(args, "notify_failures", None)
    if target is None:
        if failures is not None:
            raise CliError("--notify-failures needs --notify TARGET", USAGE)
        return None
    from .core.presentation.notify import Notifier

    try:
        return Notifier.parse({"to": target, "failures": failures} if failures is not None else target, "--notify")
    except (TypeError, ValueError) as e:
        raise CliError(str(e), USAGE) from None


def nearest(word: str, choices) -> str | None:
    """The choice nearest to a mistyped ``word`` (options compared without their dashes), or None.

    >>> nearest("stauts", ["status", "watch"]), nearest("--erors", ["--errors", "--verbose"]), nearest("--x", ["--ids"])
    ('status', '--errors', None)
    """
    import difflib

    choices = list(choices)
    bare = {c.lstrip("-"): c for c in choices}
    close = difflib.get_close_matches(word.lstrip("-"), list(bare), n=1, cutoff=0.75)
    return bare[close[0]] if close else None


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors suggest the nearest command for a mistyped one."""

    def error(self, message: str):
        import re

        m = re.search(r"invalid choice: '([^']*)'", message)
        if m:
            choices = next((a.choices for a in self._actions if isinstance(a, argparse._SubParsersAction)), None)
            if choices:
                near = nearest(m.group(1), choices)
                message = (message.split(" (choose from")[0] + (f"; did you mean {near!r}?" if near else "") +
                           f" The commands: {', '.join(choices)}")
        super().error(message)


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return [o for a in parser._actions for o in a.option_strings]


def build_parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {k:>3}  {v}" for k, v in EXIT_CODES.items())
    ap = _Parser(
        prog="batchtools", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Look at a pybatchtools registry, and act on it, from the shell.",
        epilog=f"REGISTRY defaults to ./registry.\n\nexit status:\n{codes}")
    conf = argparse.ArgumentParser(add_help=False)
    conf.add_argument("--conf", metavar="FILE", default=argparse.SUPPRESS,
                      help="run this configuration file (batchtools.conf.py) when opening the registry")
    conf.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                      help="also show the library's informational messages")
    ap.add_argument("--conf", metavar="FILE", default=None,
                    help="run this configuration file (batchtools.conf.py) when opening the registry")
    ap.add_argument("-v", "--verbose", action="store_true", help="also show the library's informational messages")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text, parents=[conf])
        return p

    def registry_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("registry", nargs="?", default=DEFAULT_REGISTRY, metavar="REGISTRY",
                       help="the registry's folder (default ./registry)")

    p = command("status", "job counts, as print(get_status()) shows them")
    registry_arg(p)
    p.add_argument("--check", action="store_true",
                   help=f"exit {OK} if every job is done, {JOBS_FAILED} if some failed or expired, "
                        f"{JOBS_LEFT} if some are not done yet")
    p.add_argument("--json", action="store_true", help="print the counts as one JSON object")

    p = command("watch", "a live view of the counts, running jobs, pool workers and an ETA, until no job "
                         "is queued or running")
    registry_arg(p)
    p.add_argument("-n", "--interval", type=_seconds, default=2.0, metavar="SECONDS",
                   help="seconds between two refreshes (default 2)")
    notifying(p, "when no job is left queued or running")

    p = command("errors", "error messages of failed jobs, grouped by message")
    registry_arg(p)
    p.add_argument("--list", action="store_true", help="one line per failed job instead of groups")

    p = command("log", "the log of one job")
    registry_arg(p)
    p.add_argument("job_id", nargs="?", default=None, metavar="JOB_ID", help="the job's id")

    p = command("workers", "the worker pool's workers")
    registry_arg(p)

    p = command("timeline", "timeline figure of the jobs (rows: concurrent slots, or pool workers)")
    registry_arg(p)
    p.add_argument("-o", "--output", default="timeline.png", metavar="FILE",
                   help="image file to write, PNG, PDF or SVG by its suffix (default timeline.png)")
    p.add_argument("--color-by", default=None, metavar="COLUMN",
                   help="colour the jobs by a job parameter or experiment column, e.g. algorithm "
                        "(in an ML benchmark also task or learner)")
    p.add_argument("--ids", type=parse_ids, metavar="IDS", help="only these jobs, e.g. 1,3,5-8")
    p.add_argument("--keep-gaps", action="store_true",
                   help="draw idle stretches (between sessions, in a queue) as they were, not cut out")

    p = command("report", "the run report: one self-contained HTML page (errors, groups of jobs with "
                          "resources used vs requested, timeline, worker pool, benchmark scores)")
    registry_arg(p)
    p.add_argument("-o", "--output", default="report.html", metavar="FILE",
                   help="the HTML file to write (default report.html)")
    p.add_argument("--by", action="append", default=None, metavar="COLUMN",
                   help="group jobs by this job parameter (repeatable; default: problem and algorithm, or "
                        "the mapped arguments with few values)")

    def acting(p: argparse.ArgumentParser) -> None:
        registry_arg(p)
        p.add_argument("--force", action="store_true",
                       help="take the writeable lease from a live session (which turns read-only)")
        p.add_argument("--no-conf", action="store_true", help="run no configuration file")

    def submitting(p: argparse.ArgumentParser) -> None:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--chunk-size", type=_positive_int, metavar="N", help="run N jobs per scheduler job")
        g.add_argument("--n-chunks", type=_positive_int, metavar="N", help="run the jobs as N scheduler jobs")
        p.add_argument("--array", action="store_true", help="submit each chunk as an array job "
                                                            "(resource chunks_as_arrayjobs)")
        p.add_argument("--walltime", type=_positive_int, metavar="SECONDS", help="resource walltime, in seconds")
        p.add_argument("--memory", type=_positive_int, metavar="MB", help="resource memory, in MB")
        p.add_argument("--ncpus", type=_positive_int, metavar="N", help="resource ncpus")
        p.add_argument("-r", "--resource", type=parse_resource, action="append", default=[], metavar="KEY=VALUE",
                       help="any other resource, e.g. -r partition=short (repeatable)")
        p.add_argument("--wait", action="store_true", help="wait for the jobs to finish, with progress")
        notifying(p, "when the wait ends (with --wait)")

    p = command("submit", "submit the jobs not submitted yet (or --ids)")
    acting(p)
    p.add_argument("--ids", type=parse_ids, metavar="IDS", help="these jobs instead, e.g. 1,3,5-8")
    submitting(p)

    p = command("resubmit", "submit failed or expired jobs again (their previous run is forgotten once the "
                            "backend accepted the new one)")
    acting(p)
    p.add_argument("--errors", action="store_true", help="the jobs that failed")
    p.add_argument("--expired", action="store_true", help="the jobs that expired (gone from the system without "
                                                          "a result)")
    p.add_argument("--ids", type=parse_ids, metavar="IDS", help="these jobs, e.g. 1,3,5-8")
    submitting(p)

    p = command("kill", "kill queued and running jobs (default: all of them) and reset them")
    acting(p)
    p.add_argument("--ids", type=parse_ids, metavar="IDS", help="only these jobs, e.g. 1,3,5-8")

    p = command("reset", "forget the runs of jobs (status and results), so they can be submitted again")
    acting(p)
    p.add_argument("--errors", action="store_true", help="the jobs that failed")
    p.add_argument("--expired", action="store_true", help="the jobs that expired")
    p.add_argument("--ids", type=parse_ids, metavar="IDS", help="these jobs, e.g. 1,3,5-8")
    p.add_argument("--all", action="store_true", help="every job that is not queued or running")
    return ap


# ------------------------------------------------------------------ opening
def _state_class(kind: str):
    """The registry's state without the public classes: the command starts faster without them
    (the verbs are called as functions with ``reg=``)."""
    from .core.registry import RegistryState

    def make(file_dir, writeable):
        reg = RegistryState(file_dir, writeable=writeable, kind=kind)
        reg.show_partial = False  # a lost table fails the command (exit 1), naming it
        return reg

    return make


def _open(args, writeable: bool = False):
    from .api.setup import open_registry
    from .core.errors import LeaseError, RegistryNotFoundError

    path = args.registry
    if not os.path.isdir(path):
        where = "./registry (the default)" if path == DEFAULT_REGISTRY else repr(path)
        raise CliError(f"no registry at {where}: the folder does not exist. Pass the registry's folder, "
                       f"e.g. `batchtools {args.command} path/to/registry`, or run this where ./registry is")
    if writeable:
        conf = None if args.no_conf else (args.conf if args.conf else ...)
    else:
        conf = args.conf
    try:
        classes = {kind: _state_class(kind) for kind in ("map", "experiment")}
        return open_registry(classes, path, conf_file=conf, make_default=False, writeable=writeable,
                             force=bool(getattr(args, "force", False)))
    except LeaseError as e:
        from .core.persistence.lease import describe, read_lease

        info = read_lease(path)
        why = (f"the registry at {path} is open for writing in another session: {describe(info)}"
               if info and not info.get("corrupt") else str(e))
        raise CliError(f"{why}. `batchtools {args.command}` needs it writeable: try again once that session "
                       "ended, or pass --force to take the lease over (that session then turns read-only)",
                       BUSY) from None
    except RegistryNotFoundError as e:
        raise CliError(str(e)) from None


def _check_code(status) -> int:
    if status.error or status.expired:
        return JOBS_FAILED
    return OK if status.done == status.defined else JOBS_LEFT


# ----------------------------------------------------------------- commands
def cmd_status(args) -> int:
    import time

    from .core.jobstate.counts import counts_from_summary

    # a configuration file asked for runs, as when the table is read
    status = counts_from_summary(args.registry, time.time()) if args.conf is None else None
    if status is None:  # the table must be read (and the backend asked)
        from .api.status import get_status

        status = get_status(reg=_open(args))
    if args.json:
        import json

        say(json.dumps({**status.to_dict(), "timestamp": status.timestamp}))
    else:
        say(status)
    return _check_code(status) if args.check else OK


def cmd_watch(args) -> int:
    from .watch import Watcher, notify_snapshot, render, status_line

    notifier = _notifier(args)
    reg = _open(args)
    watcher = Watcher(reg)
    interactive = sys.stdout.isatty()
    snap = watcher.snapshot()
    if interactive:
        from rich.console import Console
        from rich.live import Live

        console = Console()
        with Live(render(snap, args.registry, args.interval), console=console, auto_refresh=False,
                  transient=False) as live:
            while snap.left:
                notify_snapshot(notifier, reg, snap)
                _sleep(args.interval)
                snap = watcher.snapshot()
                live.update(render(snap, args.registry, args.interval), refresh=True)
    else:
        say(status_line(snap), flush=True)
        while snap.left:
            notify_snapshot(notifier, reg, snap)
            _sleep(args.interval)
            snap = watcher.snapshot()
            say(status_line(snap), flush=True)
    notify_snapshot(notifier, reg, snap)
    return JOBS_FAILED if snap.status.error or snap.status.expired else OK


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


def cmd_errors(args) -> int:
    from .api.logs import get_error_messages

    reg = _open(args)
    df = get_error_messages(reg=reg)
    df = df[df["error"]]
    if not len(df):
        say("no errors")
        return OK
    if args.list:
        for job_id, msg in zip(df["job_id"].tolist(), df["message"].tolist()):
            say(f"{job_id}: {msg}")
        return OK
    for line in group_errors(df["job_id"].tolist(), df["message"].tolist()):
        say(line)
    return OK


def group_errors(job_ids: list[int], messages: list[str], examples: int = 5) -> list[str]:
    """Lines describing failed jobs grouped by message, the most frequent first. Messages that
    differ only in numbers are one group, shown with ``<n>`` for them.

    >>> print("\\n".join(group_errors([1, 2, 3], ["ValueError: x = 1", "ValueError: x = 2", "KeyError: 'a'"])))
    3 failed jobs, 2 kinds of error:
    <BLANKLINE>
    2 jobs (1, 2):
        ValueError: x = <n>
    <BLANKLINE>
    1 job (3):
        KeyError: 'a'
    """
    from .api.logs import error_groups

    order = error_groups(job_ids, messages)
    n = len(job_ids)
    out = [f"{n} failed job{'s' if n != 1 else ''}, {len(order)} kind{'s' if len(order) != 1 else ''} of error:"]
    for g in order:
        ids = g.job_ids
        shown = ", ".join(map(str, ids[:examples])) + (f", ... ({len(ids) - examples} more)"
                                                        if len(ids) > examples else "")
        out += ["", f"{len(ids)} job{'s' if len(ids) != 1 else ''} ({shown}):"]
        out += [f"    {line}" for line in g.text.splitlines() or [""]]
    return out


def cmd_log(args) -> int:
    from .api.logs import get_log

    if args.job_id is None:  # one word: a job id of ./registry, or a registry without the job
        if args.registry.isdigit() and not os.path.isdir(args.registry):
            args.registry, args.job_id = DEFAULT_REGISTRY, args.registry
        else:
            raise CliError(f"log: which job? Give its id after the registry: `batchtools log {args.registry} JOB_ID` "
                           f"(`batchtools errors {args.registry} --list` lists the failed ones)", USAGE)
    try:
        job_id = int(args.job_id)
    except ValueError:
        raise CliError(f"log: JOB_ID must be a job id (a whole number), got {args.job_id!r}", USAGE) from None
    reg = _open(args)
    try:
        lines = get_log(job_id, reg=reg)
    except (ValueError, FileNotFoundError) as e:
        raise CliError(str(e)) from None
    say("\n".join(lines))
    return OK


def cmd_workers(args) -> int:
    import time

    from .api.workers import get_workers
    from .core.presentation.display import local_times
    from .watch import ago

    reg = _open(args)
    df = get_workers(reg=reg)
    if not len(df):
        say("no pool workers")
        return OK
    import pandas as pd

    now = time.time()
    out = pd.DataFrame({
        "worker": df["worker_id"], "batch_id": df["batch_id"], "state": df["state"],
        "submitted": local_times(df["submitted"]),
        "last beat": [ago(now - t.timestamp()) if pd.notna(t) else "-" for t in df["last_beat"]],
        "claimed": df["claimed"], "done": df["done"], "error": df["error"],
        "start-up": [f"{t.total_seconds():.1f}s" if pd.notna(t) else "-" for t in df["time_startup"]],
        "log": df["log_file"]})
    say(out.to_string(index=False))
    return OK


def cmd_timeline(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .plot import plot_timeline

    reg = _open(args)
    try:
        fig = plot_timeline(args.ids, reg=reg, color_by=args.color_by, gaps="keep" if args.keep_gaps else "cut")
    except ValueError as e:
        raise CliError(str(e)) from None
    fig.savefig(args.output, dpi=120)
    say(f"wrote {args.output}")
    return OK


def cmd_report(args) -> int:
    import matplotlib

    matplotlib.use("Agg")
    from .reports import report

    reg = _open(args)
    rep = report(args.output, by=args.by, reg=reg)
    print(f"wrote {args.output} ({rep.size / 1e6:.2f} MB, {rep.n_jobs:,} jobs)")
    return OK


def _chunked(args, ids):
    """``ids`` with the chunking asked for (a DataFrame with a chunk column), and the resources."""
    resources = dict(args.resource)
    for key in ("walltime", "memory", "ncpus"):
        if getattr(args, key) is not None:
            resources[key] = getattr(args, key)
    if args.array:
        resources["chunks_as_arrayjobs"] = True
    if args.chunk_size or args.n_chunks:
        import pandas as pd

        from .api.chunking import chunk

        ids = pd.DataFrame({"job_id": ids, "chunk": chunk(ids, n_chunks=args.n_chunks, chunk_size=args.chunk_size)})
    return ids, resources or None


def _submit(args, reg, ids, what: str) -> int:
    from .api.submit import submit_jobs

    if len(ids) == 0:
        say(f"nothing to submit: {what}")
        return OK
    plan, resources = _chunked(args, ids)
    notify = _notifier(args)
    if notify is not None and not args.wait:
        raise CliError("--notify tells when the wait ends: add --wait", USAGE)
    out = submit_jobs(plan, resources=resources, reg=reg)
    n_chunks = out["chunk"].nunique()
    say(f"submitted {len(out)} job{'s' if len(out) != 1 else ''} in {n_chunks} "
          f"scheduler job{'s' if n_chunks != 1 else ''} ({reg.cluster_functions.name})")
    if args.wait:
        from .api.status import get_status
        from .api.wait import wait_for_jobs

        wait_for_jobs(out["job_id"], notify=notify, reg=reg)
        status = get_status(out["job_id"], reg=reg)
        say(status)
        return JOBS_FAILED if status.error or status.expired else OK
    return OK


def _select(args, reg, allow_all: bool = False):
    """The ids chosen by --errors/--expired/--ids (--all), or None if no option was given."""
    import numpy as np

    from .core.jobstate.state import select

    parts = []
    if getattr(args, "errors", False):
        parts.append(select(reg, "error"))
    if getattr(args, "expired", False):
        parts.append(select(reg, "expired"))
    if args.ids is not None:
        parts.append(reg.ids(args.ids))
    if allow_all and args.all:
        parts.append(reg.job_ids)
    if not parts:
        return None
    return np.unique(np.concatenate(parts)).astype(np.int64)


def cmd_submit(args) -> int:
    from .core.jobstate.state import select

    reg = _open(args, writeable=True)
    reg.sync()
    ids = reg.ids(args.ids) if args.ids is not None else select(reg, "submitted", negate=True)
    return _submit(args, reg, ids, f"all {len(reg.status)} jobs were submitted already "
                                   "(see `batchtools resubmit` for failed or expired ones)")


def cmd_resubmit(args) -> int:
    reg = _open(args, writeable=True)
    reg.sync()
    ids = _select(args, reg)
    if ids is None:
        raise CliError("resubmit: say which jobs: --errors, --expired and/or --ids IDS", USAGE)
    return _submit(args, reg, ids, "no job matches")


def cmd_kill(args) -> int:
    from .api.control import kill_jobs

    reg = _open(args, writeable=True)
    out = kill_jobs(args.ids, reg=reg)
    if not len(out):
        say("nothing to kill: no job is queued or running" + (" among those ids" if args.ids else ""))
        return OK
    ok = int(out["killed"].sum())
    say(f"killed {ok} job{'s' if ok != 1 else ''} (reset, ready to submit again)")
    if ok < len(out):
        bad = out.loc[~out["killed"], "job_id"].tolist()
        raise CliError(f"could not kill {len(bad)} job(s), e.g. {bad[:5]}; see the warnings above")
    return OK


def cmd_reset(args) -> int:
    from .api.control import reset_jobs
    from .core.jobstate.state import select

    reg = _open(args, writeable=True)
    reg.sync()
    ids = _select(args, reg, allow_all=True)
    if ids is None:
        raise CliError("reset: say which jobs: --errors, --expired, --ids IDS or --all", USAGE)
    if args.all:  # every job that can be reset
        import numpy as np

        ids = ids[~np.isin(ids, select(reg, "system"))]
    out = reset_jobs(ids, reg=reg)
    say(f"reset {len(out)} job{'s' if len(out) != 1 else ''}")
    return OK


COMMANDS = {"status": cmd_status, "watch": cmd_watch, "errors": cmd_errors, "log": cmd_log,
            "workers": cmd_workers, "timeline": cmd_timeline, "report": cmd_report, "submit": cmd_submit, "resubmit": cmd_resubmit,
            "kill": cmd_kill, "reset": cmd_reset}


def _setup_logging(verbose: bool):
    """Show the package's log on the standard error (escaped); returns what undoes it, so that
    ``main`` run inside a Python process (a test, a notebook) leaves that process's logging as it was."""
    import logging

    from .core.presentation.text import printable

    class Printable(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            return printable(super().format(record))

    class CurrentStderr(logging.StreamHandler):
        """Writes to ``sys.stderr`` as it is when a record comes, never to a stream since closed."""

        @property
        def stream(self):
            return sys.stderr

        @stream.setter
        def stream(self, value) -> None:
            pass

    log = logging.getLogger("batchtools")
    saved = (list(log.handlers), log.propagate, log.level)
    if not log.handlers:
        handler = CurrentStderr()
        handler.setFormatter(Printable("batchtools: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    log.setLevel(logging.INFO if verbose else logging.WARNING)

    def undo() -> None:
        log.handlers[:] = saved[0]
        log.propagate = saved[1]
        log.setLevel(saved[2])

    return undo


def main(argv: list[str] | None = None) -> int:
    """Run the ``batchtools`` command with ``argv`` (default: the process's arguments); the exit status.

    >>> main(["status", "no/such/folder"])
    1
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # options the command does not know: name the nearest ones
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[args.command]
        near = [n for n in (nearest(x.split("=")[0], _options(sub)) for x in extra if x.startswith("-")) if n]
        sub.error(f"unrecognized arguments: {' '.join(extra)}" + (f"; did you mean {', '.join(near)}?" if near else ""))
    undo_logging = _setup_logging(getattr(args, "verbose", False))
    try:
        return COMMANDS[args.command](args)
    except CliError as e:
        say(f"batchtools: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        say("batchtools: interrupted", file=sys.stderr)
        return INTERRUPTED
    except (ValueError, TypeError, OSError, NotImplementedError, RuntimeError) as e:
        say(f"batchtools: {e}", file=sys.stderr)
        return FAILED
    except Exception as e:  # nothing above names it (a bug, or damage no check knows): still no traceback
        if getattr(args, "verbose", False):
            import traceback

            traceback.print_exc()
        say(f"batchtools: {args.command} failed: {type(e).__name__}: {e}. If the registry's files were damaged, "
            f"repair_registry({args.registry!r}) rebuilds its state; run with -v to see where it failed "
            "(and please report it if the registry is fine)", file=sys.stderr)
        return FAILED
    finally:
        undo_logging()


if __name__ == "__main__":
    sys.exit(main())
