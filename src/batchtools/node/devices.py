"""GPUs handed out to jobs: free devices from a configured list, through ``CUDA_VISIBLE_DEVICES``.

The Multicore backend (``make_cluster_functions_multicore(gpus=[...])``) gives each job
collection that asks for ``gpus=n`` n free devices of its list (and none to the others), and a
pool worker with several devices runs as many jobs at once as its devices allow
(``gpus_per_job`` each, default 1), each job seeing its own devices. No GPU is needed to try it:
the devices are names.

>>> pool = DevicePool(["0", "1", "2"])
>>> pool.take("a", 2), pool.take("b", 2), pool.free_count()
(['0', '1'], None, 1)
>>> pool.give_back("a"); pool.take("b", 2)
['0', '1']
>>> slots(["0", "1", "2", "3"], 1)
[['0'], ['1'], ['2'], ['3']]
"""

from __future__ import annotations

import os

VAR = "CUDA_VISIBLE_DEVICES"
# what a process that should see no device gets
NONE = ""


class DevicePool:
    def __init__(self, devices=()):
        self.devices = [str(d) for d in devices]
        self.free = list(self.devices)
        self.held: dict = {}

    def __bool__(self) -> bool:
        return bool(self.devices)

    def free_count(self) -> int:
        return len(self.free)

    def take(self, key, n: int) -> list[str] | None:
        """``n`` free devices for ``key`` (None if fewer are free)."""
        if n > len(self.free):
            return None
        got, self.free = self.free[:n], self.free[n:]
        self.held[key] = got
        return got

    def give_back(self, key) -> None:
        got = self.held.pop(key, None)
        if got:
            self.free = [d for d in self.devices if d in set(self.free) | set(got)]


def visible_devices(resources: dict) -> list[str]:
    """The devices this process may use: the ``gpu_devices`` resource, else what the scheduler or
    the Multicore backend gave it (``CUDA_VISIBLE_DEVICES``)."""
    if resources.get("gpu_devices"):
        return [str(d) for d in resources["gpu_devices"]]
    value = os.environ.get(VAR, "")
    return [d for d in value.split(",") if d.strip()]


def slots(devices: list[str], per_job: int) -> list[list[str]]:
    """Split ``devices`` into groups of ``per_job``: one group per job running at once."""
    per_job = max(1, int(per_job))
    return [devices[k:k + per_job] for k in range(0, len(devices) - per_job + 1, per_job)]
