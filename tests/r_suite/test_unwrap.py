"""R batchtools tests/testthat/test_unwrap.R, ported (1 of 1 block)."""

import pandas as pd
import pytest

import batchtools as bt

from .helper import differs


def obj(values):
    return pd.Series(values, dtype=object)


@differs("`unwrap`: a new column whose name is taken already gets the prefix",
         "`unwrap` expands the columns that hold dicts")
def test_unwrap_behaves():
    """R: test_that("unwrap behaves")"""
    x = pd.DataFrame({
        "id": [1, 2, 3],
        "nested.list": obj([{"a": 1}, {"a": 2}, {"a": 33}]),
        "nested.2dlist": obj([{"a": 1, "b": 2}, {"a": 1}, {"b": 2}]),
        "nested.df": obj([pd.DataFrame({"a": [1], "b": [2]}), pd.DataFrame({"a": [1]}), pd.DataFrame({"b": [2]})]),
        "multi.row": obj([pd.DataFrame({"a": [1, 2], "b": [1, 2]}), pd.DataFrame({"a": [3, 4], "b": [3, 4]}),
                          pd.DataFrame({"a": [1, 2], "b": [3, 4]})]),
        "empty": obj([None, None, None]),
    })
    rest = ["nested.2dlist", "nested.df", "multi.row", "empty"]

    res = bt.unwrap(x, "nested.list")
    assert res.shape == x.shape and res.columns.is_unique and not res.drop(columns="empty").isna().any().any()
    # R appends the new columns at the end; here they take the unwrapped column's place
    assert res.columns.tolist() == ["id", "a", *rest]
    assert pd.api.types.is_numeric_dtype(res["a"])

    res = bt.unwrap(x, "nested.list", sep=".")
    assert res.columns.tolist() == ["id", "nested.list.a", *rest]
    assert pd.api.types.is_numeric_dtype(res["nested.list.a"])

    res = bt.unwrap(x, "nested.2dlist")
    assert res.shape == (3, x.shape[1] + 1) and res[["a", "b"]].isna().any().any()
    assert res.columns.tolist() == ["id", "nested.list", "a", "b", "nested.df", "multi.row", "empty"]
    assert pd.api.types.is_numeric_dtype(res["a"]) and pd.api.types.is_numeric_dtype(res["b"])

    res = bt.unwrap(x, "nested.2dlist", sep="_")
    assert set(res.columns) == {"id", "nested.list", "nested.2dlist_a", "nested.2dlist_b", "nested.df", "multi.row",
                                "empty"}

    res = bt.unwrap(x, "nested.df", sep="_")
    assert res.shape == (3, x.shape[1] + 1)
    assert set(res.columns) == {"id", "nested.list", "nested.2dlist", "nested.df_a", "nested.df_b", "multi.row",
                                "empty"}
    assert pd.api.types.is_numeric_dtype(res["nested.df_a"])

    res = bt.unwrap(x, "empty")
    assert res.columns.tolist() == ["id", "nested.list", "nested.2dlist", "nested.df", "multi.row"]

    # R: "Name clash" (a of nested.list and of nested.2dlist); here the multi-row frames cannot be unwrapped
    with pytest.raises(ValueError, match="several rows"):
        bt.unwrap(x)
    # and a name that is taken gets the column's prefix; a column of missing values only holds no
    # container, so it stays (R removes its list column of NULLs)
    res = bt.unwrap(x.drop(columns="multi.row"))
    assert res.columns.tolist() == ["id", "a", "nested.2dlist.a", "b", "nested.df.a", "nested.df.b", "empty"]

    # R: list(2, 3, 5) is a list column, unwrapped to x.1; a pandas column of plain values is not a
    # container column, so unwrap expands it when it is named
    x = pd.DataFrame({"x": obj([2, 3, 5]), "y": [1, 2, 3]})
    assert bt.unwrap(x).equals(x)
    res = bt.unwrap(x, "x")
    assert res.shape == (3, 2) and not res.isna().any().any()
    assert set(res.columns) == {"y", "x.1"}
    # a column of values and lists (R: a list column) is expanded by default
    x = pd.DataFrame({"x": obj([2, [3, 4], 5]), "y": [1, 2, 3]})
    assert set(bt.unwrap(x).columns) == {"y", "x.1", "x.2"}
