import copy
import os
import shutil

import numpy as np
import pandas as pd
import pytest

import batchtools as bt
from conftest import snapshot


def test_make_and_load_roundtrip(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=7, conf_file=None)
    assert reg.seed == 7
    assert bt.get_default_registry() is reg
    bt.batch_map(lambda x: x + 1, x=[1, 2, 3])
    loaded = bt.load_registry(tmp_path / "r", conf_file=None)
    assert loaded.seed == 7
    assert not loaded.writeable
    assert bt.find_jobs(reg=loaded)["job_id"].tolist() == [1, 2, 3]
    assert bt.get_default_registry() is loaded
    assert "jobs=3" in repr(loaded)


def test_registry_is_portable(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "a", seed=3, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(lambda x: x * 10, x=[1, 2])
    bt.submit_jobs()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")
    moved = bt.load_registry(tmp_path / "b", conf_file=None)
    assert bt.reduce_results_list(reg=moved) == [10, 20]
    assert "### [bt]: Starting job [batchtools job.id=1]" in bt.get_log(1, reg=moved)


def test_temporary_registry_has_temp_dir():
    reg = bt.make_registry(file_dir=None, conf_file=None)
    assert reg.temporary
    assert reg.file_dir.is_dir()
    assert "batchtools-registry-" in reg.file_dir.name


def test_read_only_refuses_mutation(tmp_path):
    bt.make_registry(file_dir=tmp_path / "r", conf_file=None)
    bt.batch_map(lambda x: x, x=[1, 2])
    ro = bt.load_registry(tmp_path / "r", conf_file=None)
    before = snapshot(tmp_path / "r")
    for call in (lambda: bt.submit_jobs(reg=ro), lambda: bt.reset_jobs([1], reg=ro),
                 lambda: bt.add_job_tags([1], "a", reg=ro), lambda: bt.clear_registry(reg=ro),
                 lambda: bt.save_registry(reg=ro), lambda: bt.batch_export({"a": 1}, reg=ro),
                 lambda: bt.sweep_registry(reg=ro), lambda: bt.set_job_names([1], ["n"], reg=ro)):
        with pytest.raises(PermissionError, match="writeable=True"):
            call()
    assert snapshot(tmp_path / "r") == before
    rw = bt.load_registry(tmp_path / "r", writeable=True, conf_file=None)
    bt.add_job_tags([1], "a", reg=rw)
    assert bt.find_tagged("a", reg=rw)["job_id"].tolist() == [1]


def test_make_registry_bad_dirs(tmp_path):
    bt.make_registry(file_dir=tmp_path / "r", conf_file=None)
    with pytest.raises(FileExistsError, match="already holds a registry"):
        bt.make_registry(file_dir=tmp_path / "r", conf_file=None)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "data.csv").write_text("x")
    with pytest.raises(FileExistsError, match="not an empty folder"):
        bt.make_registry(file_dir=tmp_path / "other", conf_file=None)
    assert os.listdir(tmp_path / "other") == ["data.csv"]
    with pytest.raises(TypeError, match="seed"):
        bt.make_registry(file_dir=tmp_path / "s", seed="1", conf_file=None)
    assert not (tmp_path / "s").exists()
    with pytest.raises(FileNotFoundError, match="work_dir"):
        bt.make_registry(file_dir=tmp_path / "w", work_dir=tmp_path / "nope", conf_file=None)
    assert not (tmp_path / "w").exists()


def test_load_registry_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        bt.load_registry(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(bt.RegistryNotFoundError, match="holds no registry"):
        bt.load_registry(tmp_path / "empty")


def test_no_default_registry():
    with pytest.raises(ValueError, match="no default registry"):
        bt.find_jobs()
    with pytest.raises(TypeError, match="expected a Registry"):
        bt.find_jobs(reg="registry")


def test_conf_file(tmp_path, monkeypatch):
    conf = tmp_path / "batchtools.conf.py"
    conf.write_text(
        "cluster_functions = bt.make_cluster_functions_interactive()\n"
        "default_resources = {'walltime': 60, 'omp_threads': 1}\n"
        "max_concurrent_jobs = 5\n"
    )
    reg = bt.make_registry(file_dir=tmp_path / "r")  # finds ./batchtools.conf.py
    assert reg.cluster_functions.name == "Interactive"
    assert reg.default_resources == {"walltime": 60, "omp_threads": 1}
    assert reg.max_concurrent_jobs == 5
    assert reg.conf_file == str(conf)
    monkeypatch.setenv("BATCHTOOLS_CONF", str(tmp_path / "nope.py"))
    with pytest.raises(FileNotFoundError, match="BATCHTOOLS_CONF"):
        bt.make_registry(file_dir=tmp_path / "r2")
    assert not (tmp_path / "r2").exists()


def test_default_backend_is_multicore(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "r", conf_file=None)
    assert reg.cluster_functions.name == "Multicore"
    assert reg.cluster_functions.ncpus == os.cpu_count()


def test_packages_source_load_and_exports(tmp_path):
    src = tmp_path / "helpers.py"
    src.write_text("def triple(v):\n    return 3 * v\n")
    obj = tmp_path / "obj.pkl"
    import pickle

    obj.write_bytes(pickle.dumps({"offset": 100}))
    reg = bt.make_registry(file_dir=tmp_path / "r", packages=["math", "json as js"], source=[src], load=[obj],
                           conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_export({"factor": 2})

    def f(x):
        return triple(x) * factor + offset + int(math.sqrt(4)) + len(js.dumps(1))  # noqa: F821

    bt.batch_map(f, x=[1, 2])
    bt.submit_jobs()
    assert bt.reduce_results_list() == [6 + 100 + 2 + 1, 12 + 100 + 2 + 1]
    assert bt.batch_export(unexport=["factor"])["name"].tolist() == []
    with pytest.raises(FileNotFoundError, match="source"):
        bt.make_registry(file_dir=tmp_path / "r2", source=["nope.py"], conf_file=None)


def test_work_dir_is_used(tmp_path):
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "input.txt").write_text("hello")
    reg = bt.make_registry(file_dir=tmp_path / "r", work_dir=wd, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(lambda name: __import__("pathlib").Path(name).read_text(), name=["input.txt"])
    bt.submit_jobs()
    assert bt.load_result(1) == "hello"
    assert os.getcwd() == str(tmp_path)


def test_clear_sweep_remove(reg):
    bt.batch_map(lambda x: x if x != 2 else 1 / 0, x=[1, 2, 3])
    bt.submit_jobs()
    (reg.layout.dir("results") / "2.pkl").write_bytes(b"stale")
    swept = bt.sweep_registry()
    assert swept["results"] == 1
    assert os.listdir(reg.layout.dir("results")) == [] and reg.store.ids().tolist() == [1, 3]
    bt.clear_registry()
    assert len(bt.find_jobs()) == 0
    assert os.listdir(reg.layout.dir("results")) == [] and os.listdir(reg.layout.dir("packs")) == []
    bt.batch_map(lambda x: -x, x=[5])
    bt.submit_jobs()
    assert bt.reduce_results_list() == [-5]
    path = bt.remove_registry()
    assert not os.path.exists(path)


def test_methods_are_bound(reg):
    reg.batch_map(lambda x: x + 1, x=[1, 2])
    reg.submit_jobs()
    assert reg.reduce_results_list() == [2, 3]
    assert reg.get_status().done == 2
    assert reg.find_done()["job_id"].tolist() == [1, 2]


def test_a_leading_tilde_is_the_home_folder_wherever_a_path_is_taken(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "wd").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    (home / "wd" / "src.py").write_text("from_source = 5\n")
    (home / "objs.pkl").write_bytes(__import__("pickle").dumps({"from_load": 7}))
    (home / "conf.py").write_text("default_resources = {'walltime': 60}\n")
    os.chmod(home / "conf.py", 0o644)
    reg = bt.make_registry(file_dir="~/reg", work_dir="~/wd", source="~/wd/src.py", load="~/objs.pkl",
                           conf_file="~/conf.py", seed=1)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    assert reg.file_dir == home / "reg" and reg.work_dir == str(home / "wd")
    assert reg.source == (str(home / "wd" / "src.py"),) and reg.load == (str(home / "objs.pkl"),)
    assert reg.default_resources == {"walltime": 60}
    assert not (tmp_path / "~").exists()
    bt.batch_map(lambda x: x + globals()["from_source"] + globals()["from_load"], x=[1, 2])
    bt.submit_jobs([1])
    assert bt.load_result(1) == 13
    # a job collection file and an output file given with ~
    jc = bt.make_job_collection([2])
    (home / "jc.pkl").write_bytes(__import__("cloudpickle").dumps(jc))
    bt.do_job_collection("~/jc.pkl", output="~/out.log")
    assert (home / "out.log").read_text().count("Starting job") == 1
    assert bt.load_registry("~/reg", conf_file=None).file_dir == home / "reg"
    (home / "t.tmpl").write_text("#!/bin/sh\n{{ command }}\n")
    assert bt.find_template_file("~/t.tmpl") == str(home / "t.tmpl")
    (home / "in.txt").write_text("a\n")
    assert bt.run_os_command("cat", stdin="~/in.txt")["output"] == ["a"]
    assert bt.repair_registry("~/reg")  # the registry found at home
    monkeypatch.setenv("BATCHTOOLS_CONF", "~/conf.py")
    assert bt.find_conf_file() == str(home / "conf.py")


def test_relative_source_and_load_are_taken_from_the_work_dir(tmp_path):
    wd = tmp_path / "wd"
    (wd / "sub").mkdir(parents=True)
    (wd / "src.py").write_text("a = 1\n")
    (wd / "sub" / "x.pkl").write_bytes(__import__("pickle").dumps({"b": 2}))
    assert os.getcwd() == str(tmp_path)
    with pytest.raises(FileNotFoundError, match="taken from the work dir"):
        bt.make_registry(file_dir=tmp_path / "r0", source="src.py", seed=1, conf_file=None)  # not in the cwd
    assert not (tmp_path / "r0").exists()
    reg = bt.make_registry(file_dir=tmp_path / "r", work_dir=wd, source="src.py", load="sub/x.pkl", seed=1,
                           conf_file=None)
    assert reg.source == (str(wd / "src.py"),) and reg.load == (str(wd / "sub" / "x.pkl"),)


def test_failed_mutation_restores_session_state(tmp_path):
    """A failed call leaves what the session remembers as it was: every SessionState field,
    changed in place or replaced (a backend's scratch too), is restored; a call that succeeds keeps its changes."""
    import dataclasses

    import numpy as np

    from batchtools.core.registry import SessionState

    reg = bt.make_registry(file_dir=tmp_path / "r", conf_file=None)
    s = reg.session
    s.heal_seen.add((1, "h", 1))
    s.scratch("slurm")["7@1"] = 1.0
    s.merged_unsaved.append("a")

    def change_everything() -> None:
        s = reg.session
        s.pool, s.last_state_save, s.save_failed, s.next_attempt = object(), 5.0, True, {1: 2}
        s.usage_off, s.usage_given_up = True, np.array([3])
        for name in ("heal_seen", "bad_updates", "applied_updates", "unknown_runs_warned"):
            getattr(s, name).add(("new", name))
        s.merged_unsaved.append("b")
        s.scratch("slurm")["7@1"] = None
        s.scratch("sge")["x"] = 1

    def as_plain(state: SessionState) -> dict:
        d = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
        d["usage_given_up"] = d["usage_given_up"].tolist()
        return copy.deepcopy(d)

    before = as_plain(reg.session)
    assert set(before) == {f.name for f in dataclasses.fields(SessionState)}
    with pytest.raises(RuntimeError, match="boom"):
        with reg.mutation("test"):
            change_everything()
            raise RuntimeError("boom")
    after = as_plain(reg.session)
    assert after == before
    assert reg.session.scratch("slurm") == {"7@1": 1.0} and "sge" not in reg.session.backend

    with reg.mutation("test"):
        change_everything()
    assert reg.session.next_attempt == {1: 2} and reg.session.scratch("slurm") == {"7@1": None}
    assert ("new", "heal_seen") in reg.session.heal_seen and reg.session.merged_unsaved == ["a", "b"]


def test_failed_submission_restores_session_state(tmp_path):
    """A real verb: a submission refused by the backend (after the sync it starts with merged a
    node's report) leaves the session's memory as it was."""
    reg = bt.make_registry(file_dir=tmp_path / "r", conf_file=None)
    bt.batch_map(lambda x: x, x=[1, 2], reg=reg)

    def refuse(*args, **kwargs):
        raise RuntimeError("the scheduler refused")

    cf = bt.make_cluster_functions_interactive()
    reg.cluster_functions = cf
    cf.submit_job = refuse
    reg.session.heal_seen.add((1, "h", 1))
    before = reg.session.snapshot()
    with pytest.raises(Exception, match="refused"):
        bt.submit_jobs([1], reg=reg)
    assert reg.session == before
    assert bt.find_not_submitted(reg=reg)["job_id"].tolist() == [1, 2]


def test_lean_status_columns_exist_only_when_used_and_round_trip_exactly():
    """Issue 30: an empty status column is one value behind a read-only view; writing into it (through
    set_rows or in place with .loc) gives that column, and only it, an array of its own; a saved table
    decodes to the same frame."""
    import pickle

    from batchtools.core.persistence.tables import decode_table, encode_table, is_empty_view, new_status, set_rows

    st = new_status(np.arange(1, 1001), np.arange(1, 1001))
    assert all(is_empty_view(st[c].to_numpy()) for c in ("done", "max_rss", "error", "batch_id"))
    set_rows(st, np.array([3]), "done", 5.0)
    set_rows(st, np.array([4]), "started", np.nan)  # nothing new: stays empty
    st.loc[7, "batch_id"] = "b7"
    assert not is_empty_view(st["done"].to_numpy()) and is_empty_view(st["started"].to_numpy())
    assert st["batch_id"].tolist()[7] == "b7" and st["batch_id"].isna().sum() == 999
    assert is_empty_view(st["max_rss"].to_numpy()) and st["done"].notna().sum() == 1
    saved = encode_table(st)
    kinds = {name: kind for name, kind, _ in saved["columns"]}
    assert kinds["job_id"] == kinds["def_id"] == "range" and kinds["started"] == "empty" and kinds["done"] == "array"
    back = decode_table(pickle.loads(pickle.dumps(saved)))
    pd.testing.assert_frame_equal(back, st)
    odd = pd.DataFrame({"job_id": [3, 1], "tag": ["a", "b"]}, index=[5, 9])  # not 0..n-1: pickled as it is
    assert encode_table(odd) is odd and decode_table(odd) is odd


def test_a_table_restored_by_a_failed_call_takes_in_place_edits(tmp_path):
    """A failed call restores the tables as they were, lean columns included, and the restored status
    still takes an in-place edit (an empty column is a read-only view: its first write must give it an
    array of its own, as before the call; it raised 'assignment destination is read-only')."""
    reg = bt.make_registry(file_dir=tmp_path / "r", conf_file=None)
    bt.batch_map(lambda x: x, x=[1, 2, 3], reg=reg)
    before = reg.status.copy()
    with pytest.raises(RuntimeError, match="boom"):
        with reg.mutation("test"):
            reg.status.loc[1, "done"] = 1.0
            raise RuntimeError("boom")
    pd.testing.assert_frame_equal(reg.status, before)
    reg.status.loc[reg.status.index[0], "done"] = 5.0
    assert reg.status["done"].tolist()[0] == 5.0 and reg.status["done"].isna().sum() == 2
