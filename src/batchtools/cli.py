"""The ``batchtools`` command: look at a registry from the shell (read-only).

    batchtools status   [REGISTRY]              job counts, as get_status() prints them
    batchtools errors   [REGISTRY]              error message of every failed job
    batchtools log      REGISTRY JOB_ID         the log of one job
    batchtools workers  [REGISTRY]              the worker pool (submit_workers)
    batchtools timeline [REGISTRY] -o FILE      timeline figure (PNG, PDF or SVG by suffix);
                                                --color-by COLUMN colours jobs by a parameter

REGISTRY defaults to ./registry. The registry is opened read-only, so this is safe to run
while a session is submitting to it. Times are shown in local time, to the second. No
configuration file is run (the registry remembers its cluster functions); ``--conf FILE`` runs one.
"""

from __future__ import annotations

import argparse
import sys


def _load(path: str, conf: str | None):
    from .registry import load_registry

    return load_registry(path, make_default=False, writeable=False, conf_file=conf)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="batchtools", description="Inspect a pybatchtools registry.")
    ap.add_argument("--conf", metavar="FILE", default=None,
                    help="run this configuration file (batchtools.conf.py); by default none is run")
    sub = ap.add_subparsers(dest="command", required=True)
    for name, text in (("status", "job counts"), ("errors", "error messages of failed jobs"),
                       ("workers", "the worker pool")):
        p = sub.add_parser(name, help=text)
        p.add_argument("registry", nargs="?", default="registry")
    p = sub.add_parser("log", help="the log of one job")
    p.add_argument("registry")
    p.add_argument("job_id", type=int)
    p = sub.add_parser("timeline", help="timeline figure of the jobs (rows: concurrent slots, or pool workers)")
    p.add_argument("registry", nargs="?", default="registry")
    p.add_argument("-o", "--output", default="timeline.png", help="image file to write (default timeline.png)")
    p.add_argument("--color-by", default=None, metavar="COLUMN",
                   help="colour the jobs by a job parameter or experiment column, e.g. algorithm")
    args = ap.parse_args(argv)

    import pandas as pd

    from .api import logs, status, workers
    from .core.display import for_people

    try:
        reg = _load(args.registry, args.conf)
    except (FileNotFoundError, ValueError, PermissionError) as e:
        print(f"batchtools: {e}", file=sys.stderr)
        return 1
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60):
        if args.command == "status":
            print(status.get_status(reg=reg))
        elif args.command == "errors":
            df = logs.get_error_messages(reg=reg)
            df = df[df["error"]]
            with pd.option_context("display.max_colwidth", None):
                print(df[["job_id", "message"]].to_string(index=False, justify="left") if len(df) else "no errors")
        elif args.command == "log":
            try:
                print("\n".join(logs.get_log(args.job_id, reg=reg)))
            except (ValueError, FileNotFoundError) as e:
                print(f"batchtools: {e}", file=sys.stderr)
                return 1
        elif args.command == "workers":
            df = workers.get_workers(reg=reg)
            print(for_people(df.drop(columns=["log_file"])).to_string(index=False) if len(df) else "no pool workers")
        elif args.command == "timeline":
            import matplotlib

            matplotlib.use("Agg")
            from .plot import plot_timeline

            try:
                fig = plot_timeline(reg=reg, color_by=args.color_by)
            except ValueError as e:
                print(f"batchtools: {e}", file=sys.stderr)
                return 1
            fig.savefig(args.output, dpi=120)
            print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
