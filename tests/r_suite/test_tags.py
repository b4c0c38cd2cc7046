"""R batchtools tests/testthat/test_tags.R, ported (1 of 1 block)."""

import batchtools as bt

from .helper import check_tables, make_test_registry


def test_tags_work():
    """R: test_that("tags work")"""
    reg = make_test_registry()
    bt.batch_map(lambda x: x, list(range(1, 11)), reg=reg)
    assert bt.get_used_job_tags(reg=reg) == []
    assert bt.find_tagged(tags="foo", reg=reg).shape == (0, 1)
    assert bt.remove_job_tags(reg=reg, tags="foo").shape == (0, 1)

    assert len(bt.add_job_tags([1, 2, 3, 4], "walltime", reg=reg)) == 4
    assert len(bt.add_job_tags([3, 4, 5, 6, 7], "broken", reg=reg)) == 5
    assert set(bt.get_used_job_tags(reg=reg)) == {"walltime", "broken"}
    assert set(bt.get_used_job_tags([1, 2], reg=reg)) == {"walltime"}

    bt.add_job_tags(tags=["foo", "bar"], reg=reg)
    x = bt.get_job_tags(reg=reg)
    assert all("foo" in t and "bar" in t for t in x["tags"])
    x = bt.remove_job_tags(tags=["foo", "bar"], reg=reg)
    assert x.shape == (10, 1) and x["job_id"].is_monotonic_increasing
    x = bt.get_job_tags(reg=reg)
    assert not any("foo" in t or "bar" in t for t in x["tags"].dropna())

    x = bt.get_job_tags(reg=reg)
    assert x.shape == (10, 2)
    assert x["tags"].notna().sum() >= 1

    x = bt.find_tagged(tags="broken", reg=reg)
    assert x["job_id"].tolist() == [3, 4, 5, 6, 7]
    x = bt.find_tagged(tags="whoops", reg=reg)
    assert x.shape == (0, 1)

    x = bt.remove_job_tags([9, 8, 7, 6, 5, 4, 3], "walltime", reg=reg)
    assert x["job_id"].tolist() == [3, 4]
    x = bt.get_job_tags(reg=reg)
    assert x["tags"].tolist() == ["walltime"] * 2 + ["broken"] * 5 + [None] * 3
    check_tables(reg)
