"""Interactive: run each job collection right away, in this process or a fresh one."""

from __future__ import annotations

import subprocess
import sys
import uuid

from ..core.contract.backend import Capabilities, ClusterFunctions, SubmitJobResult, make_cluster_functions, restorable
from ..core.persistence.files import open_append, write_pickle
from ..node.node import do_job_collection


@restorable
def make_cluster_functions_interactive(external: bool = False, write_logs: bool = True,
                                      fs_latency: float = 0) -> ClusterFunctions:
    """Run jobs as they are submitted; ``submit_jobs`` blocks until they are done.

    ``external=True`` runs each collection in a new interpreter
    (``python -m batchtools.worker``), which isolates crashes and global state.
    ``write_logs=False`` prints the jobs' output to this console instead of log files.
    ``fs_latency``: seconds a job may be missing before it counts as expired (as every backend).

    >>> import batchtools as bt
    >>> bt.make_cluster_functions_interactive()
    ClusterFunctions(Interactive)
    """
    if not isinstance(external, bool) or not isinstance(write_logs, bool):
        raise TypeError("external, write_logs: must be True or False")

    # in-process jobs of one session append to one log (get_log cuts out each job's part):
    # creating a file per job costs more than running a small job
    session_log = f"interactive-{uuid.uuid4().hex[:12]}.log"
    handle: dict = {}  # the session log, kept open while this backend runs jobs into one registry

    def submit_job(reg, jc) -> SubmitJobResult:
        if external:
            path = reg.layout.job_collection(jc.job_hash)
            write_pickle(path, jc)
            subprocess.run([sys.executable, "-m", "batchtools.worker", str(path)], check=False)
            return SubmitJobResult(0, "cfInteractive", jc.log_file, "OK")
        out = log_file = None
        if write_logs:
            log_file, out = handle.get(reg.file_dir) or (None, None)
            if out is None or out.closed:
                close_log(reg)
                log_file = str(reg.layout.log_named(session_log))
                out = open_append(log_file)
                handle[reg.file_dir] = (log_file, out)
        # the master is running the jobs itself: status rows go straight to its sync queue
        try:
            do_job_collection(jc, output=out, sink=reg.pending_updates)
        finally:
            if out is not None:
                out.flush()
        return SubmitJobResult(0, "cfInteractive", log_file, "OK")

    def close_log(reg) -> None:  # after a submission: no file of the registry stays open
        for _, out in handle.values():
            out.close()
        handle.clear()

    return make_cluster_functions(
        "Interactive", submit_job, store_job_collection=external, fs_latency=fs_latency, poll=0.05, poll_max=1.0,
        info="external" if external else "", capabilities=Capabilities(in_process=not external, blocking=True),
        hooks={"post_submit": close_log},
    )
