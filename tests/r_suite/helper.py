"""Port of R batchtools' ``tests/testthat/helper.R``: the registries and checks every R block uses.

R's tests run on the cluster functions of the configuration (Interactive without one), so the
ported blocks use Interactive unless the R block sets other cluster functions itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import batchtools as bt

MIGRATION_GUIDE = Path(__file__).resolve().parents[2] / "docs" / "migrating-from-r.md"


def differs(*entries: str):
    """Mark a block kept different from R: each entry is quoted from the list in
    docs/migrating-from-r.md#differences-kept-on-purpose (tests/r_suite/test_differences.py checks
    that every quoted entry is there). The test asserts our documented behaviour at that point."""
    return pytest.mark.r_difference(*entries)


def make_test_registry(file_dir=None, make_default=False, seed=None, **kw):
    """R: ``makeTestRegistry(file.dir = NA, make.default = FALSE, ...)``."""
    reg = bt.make_registry(file_dir=file_dir, make_default=make_default, seed=seed, conf_file=kw.pop("conf_file", None),
                           **kw)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    return reg


def make_test_experiment_registry(file_dir=None, make_default=False, seed=None, **kw):
    """R: ``makeTestExperimentRegistry(file.dir = NA, make.default = FALSE, ...)``."""
    reg = bt.make_experiment_registry(file_dir=file_dir, make_default=make_default, seed=seed,
                                      conf_file=kw.pop("conf_file", None), **kw)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    return reg


def s_chunk(ids: pd.DataFrame) -> pd.DataFrame:
    """R: ``s.chunk(ids)``: every job in one chunk."""
    ids = ids.copy()
    ids["chunk"] = 1
    return ids


def submit_and_wait(reg, ids=None, resources=None, sleep=None):
    """R: ``submitAndWait(reg, ids, ...)``: submit the jobs (all in one chunk, unless ``ids`` has a
    ``chunk`` column) and wait for them."""
    if ids is None:
        ids = bt.find_not_submitted(reg=reg)
    if not isinstance(ids, pd.DataFrame):
        ids = bt.find_jobs(ids=ids, reg=reg)
    if "chunk" not in ids.columns:
        ids = s_chunk(ids)
    ids = bt.submit_jobs(ids, resources=resources, reg=reg)
    return bt.wait_for_jobs(ids, expire_after=10, sleep=sleep, reg=reg)


def ids_of(df: pd.DataFrame) -> list[int]:
    return df["job_id"].tolist()


def none() -> pd.DataFrame:
    """R: ``noIds()``."""
    return pd.DataFrame({"job_id": np.empty(0, np.int64)})


def assert_ids(actual: pd.DataFrame, expected) -> None:
    """R: ``expect_equal(findX(), ids)``: a job table of exactly these ids, sorted, with a default index."""
    expected = ids_of(expected) if isinstance(expected, pd.DataFrame) else list(expected)
    assert list(actual.columns) == ["job_id"]
    assert actual["job_id"].dtype == np.int64
    assert ids_of(actual) == expected
    assert isinstance(actual.index, pd.RangeIndex)


def check_tables(reg) -> None:
    """R: ``checkTables(reg)``: the tables' columns and types, keys, and how they refer to each other
    (R's columns with our names; ours has more, see the migration guide's differences)."""
    defs, st, res, tags = reg.defs, reg.status, reg.tables["resources"], reg.tables["tags"]
    assert defs["def_id"].is_unique
    assert st["job_id"].dtype == np.int64 and st["def_id"].dtype == np.int64
    assert st["job_id"].is_monotonic_increasing and st["job_id"].is_unique
    cols = ["job_id", "def_id", "submitted", "started", "done", "error", "mem_used", "resource_id", "batch_id",
            "log_file", "job_hash", "job_name"]
    if reg.kind == "experiment":
        cols.append("repl")
        assert set(defs.columns) >= {"def_id", "problem", "algorithm"}
        assert (st["repl"] >= 1).all()
        assert set(defs["problem"]) <= set(reg.problems)
        assert set(defs["algorithm"]) <= set(reg.algorithms)
    assert set(st.columns) >= set(cols)
    for c in ("submitted", "started", "done", "mem_used", "resource_id"):
        assert st[c].dtype == np.float64, c
    check_status_integrity(reg)
    assert list(res.columns) == ["resource_id", "resource_hash", "resources"]
    assert res["resource_id"].is_unique
    assert list(tags.columns) == ["job_id", "tag"]
    # every definition is used by a job and every job has one; the resource rows are the ones jobs use
    assert set(defs["def_id"]) == set(st["def_id"])
    assert set(st["resource_id"].dropna().astype(int)) == set(res["resource_id"].astype(int))
    assert set(tags["job_id"]) <= set(st["job_id"])


def check_new_registry(reg) -> None:
    """What R's makeRegistry and makeExperimentRegistry blocks expect of a new registry (R's
    ``registry.rds`` is ``registry.pkl``)."""
    assert isinstance(reg, bt.Registry)
    assert reg.file_dir.is_dir() and os.access(reg.file_dir, os.R_OK | os.W_OK)
    assert os.path.isdir(reg.work_dir)
    for sub in ("jobs", "results", "updates", "logs"):
        assert (reg.file_dir / sub).is_dir()
    assert (reg.file_dir / "registry.pkl").is_file()
    assert all(isinstance(p, str) for p in reg.packages)
    assert isinstance(reg.seed, int)
    assert reg.writeable
    assert isinstance(reg.cluster_functions, bt.ClusterFunctions)
    assert isinstance(reg.default_resources, dict)
    check_tables(reg)
    assert len(reg.status) == 0


def check_status_integrity(reg) -> None:
    """R: ``checkStatusIntegrity``: submitted <= started <= done, an error only with done."""
    st = reg.status
    code = (st["submitted"].notna().astype(int) + 2 * st["started"].notna() + 4 * st["done"].notna()
            + 8 * st["error"].notna())
    assert set(code) <= {0, 1, 3, 7, 15}, "Status Integrity"
