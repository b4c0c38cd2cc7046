"""Registries written before the relayout (jobs/ -> node/, core/ grouped) name old module paths: they still load."""

from __future__ import annotations

import importlib
import pickle

import pytest

from batchtools._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_path_is_the_module_at_its_new_place(old):
    assert importlib.import_module(old) is importlib.import_module(MOVED[old])


def test_a_store_spec_naming_the_old_path_still_loads(tmp_path):
    from batchtools.core.results.store import FolderStore, store_from_spec

    store = store_from_spec({"constructor": "batchtools.core.store:FolderStore", "kwargs": {}}, tmp_path)
    assert type(store) is FolderStore


def test_a_pickle_naming_the_old_path_still_loads():
    from batchtools.core.jobstate.retry import RetryPolicy

    data = pickle.dumps(RetryPolicy(), protocol=2)
    assert b"batchtools.core.jobstate.retry" in data
    old = data.replace(b"batchtools.core.jobstate.retry", b"batchtools.core.retry")
    assert pickle.loads(old) == RetryPolicy()


def test_multicore_sees_a_job_of_a_fork_server_started_under_the_old_module_name(tmp_path):
    """A fork server started before the relayout runs as ``-m batchtools.jobs.forkserver``: its
    children still count as this registry's running jobs for a new session, never as expired."""
    import subprocess
    import sys
    import time

    import batchtools as bt
    from batchtools.backends.multicore import other_sessions_jobs

    reg = bt.make_registry(file_dir=tmp_path / "reg", conf_file=None, make_default=False, seed=1)
    bt.batch_map(lambda x: x, x=[1, 2], reg=reg)
    log = reg.layout.log("oldhash")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        procs = {name: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", name], stdout=out)
                 for name in ("batchtools.jobs.forkserver", "batchtools.something.else")}
    try:
        st = reg.status
        st.loc[st.index[:2], "submitted"] = time.time()
        st.loc[st.index[:2], "batch_id"] = [str(p.pid) for p in procs.values()]
        assert other_sessions_jobs(reg, set()) == [str(procs["batchtools.jobs.forkserver"].pid)]
    finally:
        for p in procs.values():
            p.kill()
            p.wait()


def test_a_node_environment_naming_the_old_path_still_loads():
    """A collection names its node environment ``"module:qualname"``; the node imports the module."""
    from batchtools.node import environment

    module, _, qualname = "batchtools.jobs.environment:NodeEnvironment".partition(":")
    assert getattr(importlib.import_module(module), qualname) is environment.NodeEnvironment
