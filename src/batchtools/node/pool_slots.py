"""A pool worker with several GPUs: one claimer per device group, running at once.

A worker whose resources give it GPUs (``gpus``, with the devices the scheduler or the Multicore
backend made visible, or an explicit ``gpu_devices`` list) splits them into groups of
``gpus_per_job`` (default 1). With more than one group it forks one child per group; each child
sees only its devices (``CUDA_VISIBLE_DEVICES``), logs to ``logs/<worker>-<k>.log`` and claims
jobs as ``<worker>.s<k>`` (the master books them to the worker, and a fence on the worker stops
all its slots). The parent keeps the worker's heartbeat, passes a SIGTERM on to the children and
writes the worker's goodbye once all have ended.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sys
import time

from ..core.contract.collection import JobCollection
from ..core.persistence.files import atomic_write_bytes, make_dir
from ..core.persistence.layout import Layout
from ..core.workerpool.claims import SLOT
from . import checkpoint
from .devices import VAR, slots, visible_devices
from .environment import environment_of
from .session import TERMINATING, redirect_output, say


def device_groups(jc: JobCollection) -> list[list[str]]:
    """The worker's device groups, one per job it runs at once ([] without GPUs)."""
    res = jc.resources
    if not (res.get("gpus") or res.get("gpu_devices")):
        return []
    return slots(visible_devices(res), res.get("gpus_per_job") or 1)


def run_slots(jc: JobCollection, update_interval: float | None, groups: list[list[str]], worker_class,
              began: float | None = None) -> dict:
    """Run ``worker_class`` (the pool worker) once per device group, in forked children (each
    slot's start-up counts from ``began``, the worker's)."""
    wid = jc.pool["worker"]
    layout = Layout(jc.file_dir)
    heartbeat = float(jc.pool.get("heartbeat", 10.0))
    beat = layout.worker_beat(wid)
    make_dir(beat.parent)
    atomic_write_bytes(beat, f"{socket.gethostname()} {os.getpid()} {time.time():.3f}\n".encode())
    say(f"Pool worker {wid}: {len(groups)} device slots {groups}, each running one job at a time")
    sys.stdout.flush()
    children: dict[int, int] = {}
    for k, devices in enumerate(groups, 1):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # a slot: claim and run jobs on these devices only
            code = 1
            try:
                os.close(r)
                os.environ[VAR] = ",".join(devices)
                redirect_output(str(layout.array_log(wid, k)))
                checkpoint.arm(jc.resources, pool=True, env=environment_of(jc.node_environment, jc.array_var))
                say(f"Device slot {k} of pool worker {wid}: {VAR}={os.environ[VAR]}")
                # claims leave the other slots (of every worker) their share
                sub = dataclasses.replace(jc, pool={**jc.pool, "worker": f"{wid}{SLOT}{k}",
                                                    "n_workers": int(jc.pool.get("n_workers", 1)) * len(groups)})
                counts = worker_class(sub, update_interval, None, began).run()
                os.write(w, f"{counts['done']} {counts['error']}".encode())
                code = 0
            finally:
                sys.stdout.flush()
                os._exit(code)
        os.close(w)
        children[pid] = r

    def forward(signum, frame) -> None:
        TERMINATING.set()
        for pid in children:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    totals = {"done": 0, "error": 0}
    next_beat = time.monotonic() + heartbeat
    left = dict(children)
    while left:
        for pid in list(left):
            try:
                ended, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                ended = pid
            if ended:
                data = os.read(left.pop(pid), 64).split()
                if len(data) == 2:
                    totals["done"] += int(data[0])
                    totals["error"] += int(data[1])
        if time.monotonic() >= next_beat:
            try:
                os.utime(beat)
            except OSError:
                pass
            next_beat = time.monotonic() + heartbeat
        time.sleep(0.05)
    reason = "terminated by the scheduler" if TERMINATING.is_set() else "all device slots ended"
    say(f"Pool worker {wid} stops ({reason}): {totals['done']} done, {totals['error']} error")
    atomic_write_bytes(layout.worker_exit(wid), f"{totals['done']} {totals['error']} {reason}\n".encode())
    return totals
