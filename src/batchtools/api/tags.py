"""Job tags and job names."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.checks import check_tags
from ..core.persistence.tables import set_rows, tags_by_job
from ..core.registry import RegistryState, resolve


def add_job_tags(ids=None, tags=(), reg: RegistryState | None = None) -> pd.DataFrame:
    """Tag jobs (default: all). Returns the tagged job ids.

    >>> import batchtools as bt
    >>> reg = bt.make_registry(file_dir=None)
    >>> _ = bt.batch_map(lambda x: x, x=[1, 2, 3])
    >>> _ = bt.add_job_tags([1, 2], "slow")
    >>> bt.find_tagged("slow")["job_id"].tolist()
    [1, 2]
    """
    reg = resolve(reg)
    tags = check_tags(tags)
    sel = reg.ids(ids)
    with reg.mutation("tag jobs"):
        new = pd.DataFrame({"job_id": np.repeat(sel, len(tags)),
                            "tag": np.tile(np.array(tags, dtype=object), len(sel))})
        t = pd.concat([reg.tables["tags"], new], ignore_index=True).drop_duplicates()
        reg.tables["tags"] = t.sort_values(["job_id", "tag"], kind="stable").reset_index(drop=True)
        reg.save(("tags",), meta=False)
    return pd.DataFrame({"job_id": sel})


def remove_job_tags(ids=None, tags=(), reg: RegistryState | None = None) -> pd.DataFrame:
    """Remove ``tags`` (default: all tags) from jobs. Returns the affected job ids."""
    reg = resolve(reg)
    sel = reg.ids(ids)
    t = reg.tables["tags"]
    hit = t["job_id"].isin(sel)
    if tags:
        hit &= t["tag"].isin(check_tags(tags))
    affected = np.unique(t.loc[hit, "job_id"].to_numpy())
    with reg.mutation("untag jobs"):
        reg.tables["tags"] = t.loc[~hit].reset_index(drop=True)
        reg.save(("tags",), meta=False)
    return pd.DataFrame({"job_id": affected.astype(np.int64)})


def get_used_job_tags(ids=None, reg: RegistryState | None = None) -> list[str]:
    """All distinct tags in use (among ``ids``)."""
    reg = resolve(reg)
    sel = reg.ids(ids)
    t = reg.tables["tags"]
    return sorted(set(t.loc[t["job_id"].isin(sel), "tag"]))


def get_job_tags(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """``job_id`` and ``tags`` (comma-separated string, or None)."""
    reg = resolve(reg)
    sel = reg.ids(ids)
    return pd.DataFrame({"job_id": sel, "tags": pd.Series(tags_by_job(reg.tables["tags"], sel), dtype=object)})


def get_job_names(ids=None, reg: RegistryState | None = None) -> pd.DataFrame:
    """``job_id`` and ``job_name`` (None where unset; backends then use the job hash)."""
    reg = resolve(reg)
    sel = reg.ids(ids)
    return pd.DataFrame({"job_id": sel, "job_name": reg.status["job_name"].to_numpy()[reg.pos(sel)]})


def set_job_names(ids=None, names=None, reg: RegistryState | None = None) -> None:
    """Give jobs names (shown to the scheduler); ``names=None`` removes them, and so does a None
    in ``names`` for its job (R's ``NA``)."""
    reg = resolve(reg)
    sel = reg.ids(ids)
    reg.assert_writeable("name jobs")
    if names is None:
        values = np.full(len(sel), None, dtype=object)
    else:
        names = [names] if isinstance(names, str) else list(names)
        if len(names) != len(sel):
            raise ValueError(f"names: need one name per job ({len(sel)}), got {len(names)}")
        if not all(n is None or (isinstance(n, str) and n) for n in names):
            raise TypeError("names: must be non-empty strings (or None: no name)")
        values = np.array(names, dtype=object)
    with reg.mutation("name jobs"):
        set_rows(reg.status, reg.pos(sel), "job_name", values)
        reg.mark_dirty("status")
        reg.save(("status",), meta=False)
