"""Shared by the tests (tests/) and the docstring examples (src/batchtools, run as doctests)."""

import os

import pytest

os.environ["BATCHTOOLS_PROGRESS"] = "0"

import batchtools as bt  # noqa: E402
from batchtools.core import registry as core  # noqa: E402


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch):
    """Each test and example in its own working directory, with no configuration file and no default registry."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BATCHTOOLS_CONF", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    core._default = None
    yield
    core._default = None


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace):
    """Docstring examples may use ``bt`` without importing it."""
    doctest_namespace["bt"] = bt
