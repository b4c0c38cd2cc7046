"""On the node: what a job used of its GPUs, sampled with ``nvidia-smi`` where the node has it.

A job that asked for GPUs (the ``gpus`` or ``gpus_per_job`` resource) on a node with
``nvidia-smi`` is sampled once a second while it runs: the devices it sees
(``CUDA_VISIBLE_DEVICES``, by index or UUID; all of the node's if unset) are summed, and its status
row gets the peak memory in use on them (``gpu_mem``, MiB) and their mean utilization
(``gpu_util``, percent). Where nothing can be sampled (no ``nvidia-smi``, no GPU asked for, or no
answer) the fields stay empty: no GPU use is reported that was not seen.

>>> parse("0, GPU-1a2b, 1024, 50\\n1, GPU-3c4d, 2048, 100\\n", ["1"])
(2048.0, 100.0)
>>> parse("0, GPU-1a2b, 1024, 50\\n1, GPU-3c4d, 2048, 100\\n", None)
(3072.0, 75.0)
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import threading
from typing import Any

SAMPLE_EVERY = 1.0  # seconds
QUERY = ["--query-gpu=index,uuid,memory.used,utilization.gpu", "--format=csv,noheader,nounits"]


@functools.lru_cache(maxsize=4)
def _which(path: str | None) -> str | None:
    return shutil.which("nvidia-smi", path=path)


def nvidia_smi() -> str | None:
    """The ``nvidia-smi`` on this process's PATH, or None (looked up once per PATH)."""
    return _which(os.environ.get("PATH"))


def parse(text: str, visible: list[str] | None) -> tuple[float, float] | None:
    """(memory used in MiB summed over the devices, mean utilization in percent) of the devices
    ``visible`` (indices or UUIDs; None: all), from ``nvidia-smi`` CSV output; None if none is listed."""
    mem, util = 0.0, []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 4:
            continue
        index, uuid, used, busy = parts[:4]
        if visible is not None and index not in visible and uuid not in visible:
            continue
        try:
            mem += float(used)
            util.append(float(busy))
        except ValueError:  # "[N/A]", "[Not Supported]"
            continue
    return (mem, sum(util) / len(util)) if util else None


class GpuSampler:
    """Samples the job's devices in a thread until :meth:`stop`."""

    def __init__(self, exe: str, visible: list[str] | None):
        self.cmd = [exe, *QUERY]
        self.visible = visible
        self.peak = float("nan")
        self.utils: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="batchtools-gpu", daemon=True)
        self._thread.start()

    def sample(self) -> None:
        try:
            out = subprocess.run(self.cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return
        got = parse(out.stdout, self.visible) if out.returncode == 0 else None
        if got is not None:
            self.peak = got[0] if not self.peak >= got[0] else self.peak
            self.utils.append(got[1])

    def _loop(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(SAMPLE_EVERY):
                return

    def stop(self) -> dict[str, Any]:
        """The fields of the job's status row (empty if no sample was taken)."""
        self._stop.set()
        self._thread.join()
        if not self.utils:
            return {}
        return {"gpu_mem": self.peak, "gpu_util": sum(self.utils) / len(self.utils)}


def sampler_for(resources: dict[str, Any]) -> GpuSampler | None:
    """A sampler for a job with these resources, or None (no GPU asked for, or no ``nvidia-smi``)."""
    if not (resources.get("gpus") or resources.get("gpus_per_job")):
        return None
    exe = nvidia_smi()
    if exe is None:
        return None
    devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    visible = None if devices is None else [d.strip() for d in devices.split(",") if d.strip()]
    return GpuSampler(exe, visible)
