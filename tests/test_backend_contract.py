"""The backend contract (core/contract/backend.py): its members are grouped, documented from the code, and
none is inert."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import re
from pathlib import Path

import pytest

import batchtools as bt
from batchtools.core.contract.backend import GROUPS, members

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "batchtools"


def _contract_ext():
    spec = importlib.util.spec_from_file_location("contract", ROOT / "docs" / "_ext" / "contract.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_custom_backend_page_shows_the_contract_as_the_code_has_it():
    ext = _contract_ext()
    page = ext.PAGE.read_text()
    shown = page.split(ext.BEGIN, 1)[1].split(ext.END, 1)[0].strip()
    assert shown == ext.render(), "docs/backends/custom.md is out of date: run `make docs` to render it again"
    for f in members() + members("capability"):
        assert f"| `{f.name}` |" in shown


def test_every_member_is_in_a_group_with_its_text():
    fields = dataclasses.fields(bt.ClusterFunctions)
    assert sorted(f.name for f in fields) == sorted(f.name for g in GROUPS for f in members(g))
    for f in fields:
        assert f.metadata["group"] in GROUPS and (f.metadata["doc"] or f.metadata["returns"]), f.name
    for f in dataclasses.fields(bt.Capabilities):
        assert f.metadata["doc"], f.name
    assert [f.name for f in members("required")] == ["name", "submit_job"]
    with pytest.raises(ValueError, match="group: one of"):
        members("hooks")


def test_make_cluster_functions_takes_every_member_by_its_name():
    """Every argument is a member of the same name (R's two listing calls combine into list_jobs), and
    every member a backend declares is an argument; R's arguments come first and may be positional."""
    params = inspect.signature(bt.make_cluster_functions).parameters
    given = set(params) - {"list_jobs_queued", "list_jobs_running"}
    assert given == {f.name for f in members()} - {"spec"}
    r_args = ["name", "submit_job", "kill_job", "list_jobs_queued", "list_jobs_running", "array_var",
              "store_job_collection", "store_job_files", "scheduler_latency", "fs_latency", "hooks"]
    positional = [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == r_args


def test_no_capability_is_inert():
    """Each declared capability is read by the code (set by backends and read by nothing is dead weight)."""
    code = "\n".join(p.read_text() for p in SRC.rglob("*.py"))
    for f in dataclasses.fields(bt.Capabilities):
        assert re.search(rf"(capabilities|caps)\.{f.name}\b|\"capabilities\".*\"{f.name}\"", code), f.name


def test_ping_and_flush_default_to_nothing_and_ping_runs_before_anything_is_written(tmp_path):
    calls = []

    def submit(reg, jc):
        calls.append("submit")
        bt.do_job_collection(jc, output=jc.log_file)
        return bt.make_submit_job_result(0, "local")

    plain = bt.make_cluster_functions("Plain", submit)
    assert plain.ping() is None and plain.flush() is None

    def ping():
        calls.append("ping")
        raise ConnectionError("the server at tcp://nowhere does not answer")

    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions("Remote", submit, ping=ping, flush=lambda: calls.append("flush"))
    bt.batch_map(lambda x: x, x=[1, 2], reg=reg)
    with pytest.raises(ConnectionError, match="does not answer"):
        bt.submit_jobs(reg=reg)
    assert calls == ["ping"]
    assert bt.find_submitted(reg=reg).empty
    calls.clear()
    reg.cluster_functions.ping = lambda: calls.append("ping")
    bt.submit_jobs(reg=reg)
    assert calls[0] == "ping" and calls[-1] == "flush" and calls.count("ping") == 1


def test_a_bad_hook_is_refused_by_name():
    with pytest.raises(TypeError, match="ping: must be callable"):
        bt.make_cluster_functions("X", lambda reg, jc: None, ping=3)
    with pytest.raises(TypeError, match="from 2 to 11 positional arguments"):
        bt.make_cluster_functions("X", lambda reg, jc: None, None, None, None, None, False, False, 0, 0, None, 1.0)


def test_the_backend_list_is_the_backends_folder():
    """backends/<name>.py with make_cluster_functions_<name> is a backend: exported, and documented on
    its own page that docs/backends/index.md lists in its table and its table of contents."""
    from batchtools.backends import shipped, template_names

    names = shipped()
    assert len(names) >= 13 and "slurm" in names and "commands" not in names
    assert {n for n in bt.__all__ if n.startswith("make_cluster_functions_")} == {
        f"make_cluster_functions_{n}" for n in names}
    assert set(template_names()) <= set(names)
    docs = ROOT / "docs" / "backends"
    index = (docs / "index.md").read_text()
    toctree = index.split("```{toctree}", 1)[1].split("```", 1)[0].split()
    pages = {p.stem for p in docs.glob("*.md")} - {"index", "custom"}
    assert pages == set(names), "a backend without its page in docs/backends/ (or a page without a backend)"
    assert set(toctree) - {":maxdepth:", "1"} == set(names) | {"custom"}
    for n in names:
        assert f"{{doc}}`{n}`" in index, f"docs/backends/index.md: no row for {n}"
