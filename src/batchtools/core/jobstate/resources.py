"""Resources: validation (before anything is written) and the resource table."""

from __future__ import annotations

import hashlib
import math
import pickle
from typing import Any

import numpy as np
import pandas as pd

from .retry import RetryPolicy

INNER_BACKENDS = ("loky", "threading", "multiprocessing")
POSITIVE_INT = ("ncpus", "ntasks", "omp_threads", "blas_threads", "max_concurrent_jobs", "memory", "gpus_per_job")
NON_NEGATIVE_INT = ("gpus",)
POSITIVE_NUM = ("walltime", "checkpoint_warning", "stall_timeout")
FLAGS = ("measure_memory", "chunks_as_arrayjobs")
# resources an ``ids`` frame of submit_jobs may set per job (R's batchtools$resources$per.job);
# any other column of the frame (job parameters, status, ...) is not a resource and is ignored
PER_JOB = ("walltime", "memory", "ncpus", "omp_threads", "blas_threads")


def validate_resources(res: Any, arg: str = "resources") -> dict[str, Any]:
    """The resources ``res`` checked and normalised (whole seconds, ints, device lists): known ones
    are validated, unknown ones pass through to templates untouched. (A backend's own refusals
    are ``ClusterFunctions.check_resources``.)"""
    if res is None:
        return {}
    if not isinstance(res, dict):
        raise TypeError(f"{arg}: must be a dict like {{'walltime': 3600, 'memory': 1024}}, got {type(res).__name__}")
    out = dict(res)
    for key, value in out.items():
        if not isinstance(key, str):
            raise TypeError(f"{arg}: names must be strings, got {key!r}")
        if value is None:
            continue
        if key in POSITIVE_INT:
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{arg}: {key} must be a positive integer, got {value!r}")
            out[key] = int(value)
        elif key in NON_NEGATIVE_INT:
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{arg}: {key} must be a non-negative integer (a number of devices, 0 for none), "
                                 f"got {value!r}")
            out[key] = int(value)
        elif key == "gpu_devices":
            out[key] = check_devices(value, f"{arg}: gpu_devices")
        elif key == "retry":
            out[key] = RetryPolicy.coerce(value, f"{arg}: retry").as_dict()
        elif key in POSITIVE_NUM:
            if (isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value > 0
                    or not math.isfinite(value)):
                raise ValueError(f"{arg}: {key} must be a finite positive number of seconds, got {value!r}")
            # whole seconds, rounded up: schedulers read 0 as "no limit"; templates round up to minutes if they must
            out[key] = int(math.ceil(value))
        elif key in FLAGS:
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{arg}: {key} must be True or False, got {value!r}")
            out[key] = bool(value)
        elif key == "inner_backend" and value not in INNER_BACKENDS:
            raise ValueError(f"{arg}: inner_backend must be one of {INNER_BACKENDS}, got {value!r}")
        try:  # resources are stored with the registry and travel to the nodes
            pickle.dumps(value, protocol=4)
        except Exception as e:
            raise TypeError(f"{arg}: {key} cannot be stored ({type(e).__name__}: {e}); give plain values "
                            "(numbers, strings, lists, dicts)") from None
    return out


def check_devices(value: Any, arg: str) -> list[str]:
    """A list of GPU device ids (as ``CUDA_VISIBLE_DEVICES`` names them: "0", "1", or UUIDs).

    >>> check_devices([0, "1"], "gpus")
    ['0', '1']
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError(f"{arg}: must be a list of device ids such as ['0', '1'], got {value!r}")
    out = []
    for d in value:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer, str)) or str(d) == "" or \
                any(c in str(d) for c in ", \t\n") or (isinstance(d, (int, np.integer)) and d < 0):
            raise ValueError(f"{arg}: {d!r} is not a device id; give ids such as 0, 1 or 'GPU-<uuid>'")
        out.append(str(d))
    if len(set(out)) != len(out):
        raise ValueError(f"{arg}: device ids must be distinct, got {out}")
    return out


def resource_id(reg, resources: dict[str, Any]) -> int:
    """Id of ``resources`` in the resource table, adding it if new (saved by the caller)."""
    digest = hashlib.md5(pickle.dumps(sorted(resources.items(), key=lambda kv: kv[0]), protocol=4)).hexdigest()
    table = reg.tables["resources"]
    hit = table.index[table["resource_hash"] == digest]
    if len(hit):
        return int(table.loc[hit[0], "resource_id"])
    new_id = int(table["resource_id"].max()) + 1 if len(table) else 1
    row = pd.DataFrame({"resource_id": [new_id], "resource_hash": [digest], "resources": [resources]})
    row["resources"] = row["resources"].astype(object)
    reg.tables["resources"] = pd.concat([table, row], ignore_index=True) if len(table) else row
    reg.mark_dirty("resources")
    return new_id


def _by_id(reg) -> dict[int, dict[str, Any]]:
    table = reg.tables["resources"]
    return dict(zip(table["resource_id"].tolist(), table["resources"].tolist()))


def resource_sets(reg) -> list[dict[str, Any]]:
    """Every resource set the registry's jobs were ever submitted with."""
    return [r for r in reg.tables["resources"]["resources"].tolist() if isinstance(r, dict)]


def resources_by_id(reg, rid) -> list[dict[str, Any] | None]:
    """The resource dicts of resource ids ``rid`` (a status or attempts column; None where NaN):
    the one lookup of the resource table by id."""
    lookup = _by_id(reg)
    return [lookup.get(int(r)) if r == r else None for r in list(rid)]


def asked_numbers(reg, rid, keys: tuple[str, ...] = ("walltime", "memory", "ncpus")) -> dict[str, np.ndarray]:
    """Per job (resource ids ``rid``), the number each of ``keys`` was asked with: NaN where the
    job has no resources or the key is not set, 0 (a scheduler's "no limit") or not a finite
    number. One lookup per distinct resource set.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> rid = resource_id(reg, {"walltime": 60, "memory": 0})
    >>> asked_numbers(reg, np.array([rid, np.nan]), ("walltime", "memory"))
    {'walltime': array([60., nan]), 'memory': array([nan, nan])}
    """
    rid = np.asarray(rid, dtype=float)
    out = {key: np.full(rid.size, np.nan) for key in keys}
    lookup = _by_id(reg)
    for r in np.unique(rid[~np.isnan(rid)]).tolist():
        given = lookup.get(int(r)) or {}
        hit = rid == r
        for key in keys:
            out[key][hit] = _positive(given.get(key))
    return out


def _positive(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return np.nan
    return x if math.isfinite(x) and x > 0 else np.nan
