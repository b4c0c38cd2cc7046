"""R batchtools tests/testthat/test_Registry.R, ported (11 of 11 blocks)."""

import logging
import lzma
import os
import pickle

import pytest

import batchtools as bt
from batchtools.core.persistence.files import read_pickle

from .helper import (
    check_new_registry,
    check_tables,
    differs,
    make_test_experiment_registry,
    make_test_registry,
    submit_and_wait,
)


@differs("The registry folder holds pickles, not RDS files")
def test_makeRegistry():
    """R: test_that("makeRegistry")"""
    reg = make_test_registry()
    check_new_registry(reg)
    assert reg.packages == ()

    reg = make_test_registry(packages="json", seed=123)
    assert reg.packages == ("json",)
    assert reg.seed == 123
    assert "Registry" in str(reg)


def test_reading_conf_file(tmp_path):
    """R: test_that("reading conf file")"""
    fn = tmp_path / "conf.py"
    fn.write_text("default_resources = {'walltime': 42}\n")
    reg = make_test_registry(conf_file=str(fn))
    assert reg.default_resources == {"walltime": 42}


def test_make_default_does_work():
    """R: test_that("make.default does work")"""
    bt.set_default_registry(None)
    with pytest.raises(ValueError, match="no default"):
        bt.get_default_registry()
    reg = make_test_registry(make_default=True, seed=123)
    assert reg.seed == 123
    reg = make_test_registry(make_default=False, seed=124)
    assert reg.seed == 124
    assert isinstance(bt.get_default_registry(), bt.Registry)
    assert bt.get_default_registry().seed == 123


@differs("`source` files and `load` pickles are run and read on the node only")
def test_extra_files_are_loaded(tmp_path):
    """R: test_that("extra files are loaded")"""
    wd = tmp_path / "wd"
    (wd / "subdir").mkdir(parents=True)
    fn_source, fn_load = wd / "src_file.py", wd / "subdir" / "load_file.pkl"
    fn_source.write_text("x_from_source = 123\n")
    fn_load.write_bytes(pickle.dumps({"x_from_load": 321}))

    def f(i):
        return globals()["x_from_source"], globals()["x_from_load"]

    # R sources and loads the files into the master's global environment when the registry is
    # made; here they are for the jobs: their functions see the names
    reg = make_test_registry(work_dir=wd, source=str(fn_source), load=str(fn_load))
    bt.batch_map(f, [1], reg=reg)
    assert bt.test_job(1, reg=reg) == (123, 321)
    assert "x_from_source" not in globals()

    # relative paths are relative to the work dir (the current directory is tmp_path, not wd)
    assert os.getcwd() != str(wd)
    reg = make_test_registry(work_dir=wd, source="src_file.py", load=os.path.join("subdir", "load_file.pkl"))
    assert reg.source == (str(fn_source),) and reg.load == (str(fn_load),)
    bt.batch_map(f, [1], reg=reg)
    assert bt.test_job(1, reg=reg) == (123, 321)
    submit_and_wait(reg)
    assert bt.load_result(1, reg=reg) == (123, 321)


@differs("The registry remembers the cluster functions it was made with")
def test_loadRegistry():
    """R: test_that("loadRegistry")"""
    for reg1 in (make_test_registry(), make_test_experiment_registry()):
        fd = reg1.file_dir
        bt.set_default_registry(None)
        reg2 = bt.load_registry(fd, make_default=False, writeable=True)  # this process holds the lease
        check_tables(reg1)
        check_tables(reg2)
        for name in ("kind", "file_dir", "work_dir", "seed", "packages", "source", "load", "default_resources",
                     "max_concurrent_jobs", "extra"):
            assert getattr(reg1, name) == getattr(reg2, name), name
        for name, table in reg1.tables.items():
            assert table.equals(reg2.tables[name]), name
        x = read_pickle(fd / "registry.pkl")
        for name in ("default_resources", "temp_dir", "mtime", "writeable"):
            assert name not in x, name
        assert x["cluster_functions"]["constructor"].endswith("make_cluster_functions_interactive")


@differs("A `source` or `load` file that does not exist is refused")
def test_loadRegistry_with_missing_dependencies_is_still_usable_122(tmp_path, caplog):
    """R: test_that("loadRegistry with missing dependencies is still usable (#122)")"""
    missing = tmp_path / "missing.py"
    # R warns "Failed to source" and makes the registry; here the missing file is an error
    with pytest.raises(FileNotFoundError, match="missing.py"):
        make_test_registry(source=str(missing))
    missing.write_text("y = 1\n")
    reg = make_test_registry(source=str(missing))
    bt.save_registry(reg=reg)
    missing.unlink()  # the file went away after the registry was made
    with caplog.at_level(logging.WARNING, logger="batchtools"):
        bt.load_registry(reg.file_dir, make_default=False)
    assert "missing.py" in caplog.text
    bt.batch_map(lambda x: x, [1], reg=reg)
    with pytest.raises(FileNotFoundError, match="missing.py"):
        bt.test_job(1, external=False, reg=reg)


def test_loadRegistry_after_early_node_error_still_usable_135():
    """R: test_that("loadRegistry after early node error still usable (#135)")"""
    reg = make_test_registry()
    bt.batch_map(lambda x: x, [1, 2], reg=reg)
    jc = bt.make_job_collection([1], reg=reg)
    jc.packages = ("not_existing_package",)
    bt.do_job_collection(jc)
    assert len(os.listdir(reg.file_dir / "updates")) == 1
    assert bt.sync_registry(reg=reg) is True
    assert "not_existing_package" in bt.get_error_messages(reg=reg)["message"].item()


def test_syncRegistry_skips_broken_update_files(caplog):
    """R: test_that("syncRegistry skips broken update files)")"""
    reg = make_test_registry()
    (reg.file_dir / "updates" / "foo.pkl").touch()
    with caplog.at_level(logging.WARNING, logger="batchtools"):
        bt.sync_registry(reg=reg)
    assert "foo.pkl is not a status update" in caplog.text


def test_clearRegistry():
    """R: test_that("clearRegistry")"""
    reg = make_test_registry()
    reg.foo = True
    ids = bt.batch_map(lambda x: x, [1, 2, 3], reg=reg)
    bt.add_job_tags([1, 2], "bar", reg=reg)
    ids["chunk"] = bt.chunk(ids["job_id"], n_chunks=2)
    bt.submit_jobs(ids, reg=reg)
    bt.wait_for_jobs(reg=reg)

    bt.clear_registry(reg=reg)
    check_tables(reg)
    assert len(reg.status) == 0
    for sub in ("jobs", "logs", "results", "updates"):
        assert os.listdir(reg.file_dir / sub) == [], sub
    assert not reg.layout.user_function.exists()
    assert bt.batch_map(lambda x: x, [1, 2, 3, 4], reg=reg)["job_id"].tolist() == [1, 2, 3, 4]
    assert reg.foo is True


def test_read_only_mode():
    """R: test_that("read only mode")"""
    def f(x):
        if x == 3:
            raise ValueError(3)
        return x

    reg = make_test_registry()
    bt.batch_map(f, [1, 2, 3, 4], reg=reg)
    submit_and_wait(reg, [1, 2, 3])

    # simulate that job 4 has been started but is not terminated yet
    jc = bt.make_job_collection([4], reg=reg)
    bt.do_job_collection(jc, jc.log_file)
    st = reg.status.copy()
    st.loc[st["job_id"] == 4, "job_hash"] = jc.job_hash
    reg.status = st
    bt.save_registry(reg=reg)
    updates = reg.file_dir / "updates"

    reg = bt.load_registry(reg.file_dir, writeable=False, make_default=False)
    # query status
    assert isinstance(bt.get_status(reg=reg), bt.Status)
    assert len(bt.find_done(reg=reg)) == 3
    assert len(bt.find_errors(reg=reg)) == 1
    assert len(os.listdir(updates)) == 1
    # load results
    assert bt.load_result(1, reg=reg) == 1
    assert bt.reduce_results_list(reg=reg) == [1, 2, 4]
    assert len(os.listdir(updates)) == 1
    # inspect errors
    assert len(bt.get_error_messages(reg=reg)) == 1
    assert all(isinstance(line, str) for line in bt.get_log(3, reg=reg))
    assert all(isinstance(line, str) for line in bt.get_log(4, reg=reg))
    # try to write
    for call in (lambda: bt.sweep_registry(reg=reg), lambda: bt.set_job_names(ids=[1], reg=reg),
                 lambda: bt.add_job_tags(ids=[1], tags="a", reg=reg), lambda: bt.reset_jobs(reg=reg),
                 lambda: bt.clear_registry(reg=reg), lambda: bt.remove_registry(reg=reg),
                 lambda: bt.kill_jobs(reg=reg)):
        with pytest.raises(bt.ReadOnlyRegistryError, match="writeable"):
            call()
    assert reg.file_dir.is_dir()
    assert len(os.listdir(updates)) == 1

    # same stuff for ExperimentRegistry
    reg = make_test_experiment_registry()
    bt.add_problem("foo", data=1, reg=reg)
    bt.add_algorithm("bar", lambda data, instance, **kw: instance, reg=reg)
    bt.add_experiments(reg=reg)
    reg.writeable = False
    assert len(bt.summarize_experiments(reg=reg)) == 1
    assert len(bt.find_experiments(reg=reg)) == 1
    for call in (lambda: bt.add_problem("foo2", [1, 2], reg=reg), lambda: bt.remove_problems("foo2", reg=reg),
                 lambda: bt.add_algorithm("bar2", lambda data, instance, **kw: instance, reg=reg),
                 lambda: bt.remove_algorithms("bar2", reg=reg), lambda: bt.add_experiments(reg=reg),
                 lambda: bt.remove_experiments([1], reg=reg)):
        with pytest.raises(bt.ReadOnlyRegistryError, match="writeable"):
            call()


@differs("`compress` defaults to `None`")
def test_xz_compression(tmp_path):
    """R: test_that("xz compression")"""
    fn = tmp_path / "conf.py"
    fn.write_text('compress = "xz"\n')
    reg = make_test_registry(conf_file=str(fn))
    assert reg.compress == "xz"
    # R compresses registry.rds too; here compress applies to the result files only
    with pytest.raises(lzma.LZMAError):
        lzma.decompress((reg.file_dir / "registry.pkl").read_bytes())

    # one job per collection on Multicore: each result is a file of its own
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    ids = bt.batch_map(lambda x: x, [1, 2, 3], reg=reg)
    ids["chunk"] = [1, 2, 3]
    submit_and_wait(reg, ids)
    path = reg.store.location(1)
    assert path == str(reg.layout.result(1))
    assert pickle.loads(lzma.decompress(open(path, "rb").read())) == 1
    assert bt.reduce_results_list(reg=reg) == [1, 2, 3]
