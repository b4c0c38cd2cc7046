"""``python -m batchtools.node.isolated JC_FILE OUT_FILE``: run the single job of a
collection in a fresh interpreter for ``test_job(external=True)``; write
``{"result": ..., "error": ...}`` to OUT_FILE. Output goes to the console."""

from __future__ import annotations

import sys
import traceback

from ..core.persistence.files import read_pickle, write_pickle
from .runners import make_job, make_runner


def main(argv: list[str]) -> int:
    jc_path, out_path = argv
    jc = read_pickle(jc_path)
    try:
        job = make_job(jc, jc.jobs[0])
        job.seed_rngs()
        result = make_runner(jc)(job)
        write_pickle(out_path, {"result": result, "error": None})
        return 0
    except Exception:
        err = traceback.format_exc()
        print(err, file=sys.stderr)
        write_pickle(out_path, {"result": None, "error": err})
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
