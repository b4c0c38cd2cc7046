"""R batchtools tests/testthat/test_ClusterFunctions.R, ported (6 of 6 blocks)."""

import os

import pytest

import batchtools as bt

from .helper import differs, make_test_registry, submit_and_wait


def test_clusterFunctions_constructor(tmp_path):
    """R: test_that("clusterFunctions constructor")"""

    def check(cf):
        assert isinstance(cf, bt.ClusterFunctions)
        # R's fields, with the naming convention (R: submitJob, killJob, listJobsQueued, ...)
        for name in ("name", "submit_job", "kill_job", "list_jobs_queued", "list_jobs_running",
                     "store_job_collection", "store_job_files", "array_var", "scheduler_latency", "fs_latency",
                     "hooks"):
            assert hasattr(cf, name), name
        assert repr(cf).startswith("ClusterFunctions(")

    reg = make_test_registry()
    check(reg.cluster_functions)
    fn = tmp_path / "dummy.tmpl"
    fn.write_text("foo\n")
    check(bt.make_cluster_functions_interactive())
    check(bt.make_cluster_functions_sge(template=str(fn)))
    check(bt.make_cluster_functions_torque(template=str(fn)))
    check(bt.make_cluster_functions_slurm(template=str(fn)))
    check(bt.make_cluster_functions_openlava(template=str(fn)))
    check(bt.make_cluster_functions_lsf(template=str(fn)))
    check(bt.make_cluster_functions_torque("torque-lido"))
    check(bt.make_cluster_functions_slurm("slurm-dortmund"))
    check(bt.make_cluster_functions_docker("image"))
    with pytest.raises(FileNotFoundError, match="readable file"):
        bt.make_cluster_functions_lsf(str(tmp_path / "missing.tmpl"))
    check(bt.make_cluster_functions_ssh(workers=[bt.Worker(nodename="localhost", ncpus=1)]))


def test_submitJobResult():
    """R: test_that("submitJobResult")"""
    x = bt.make_submit_job_result(0, 99)
    assert isinstance(x, bt.SubmitJobResult)
    assert x.status == 0
    assert x.batch_id == 99
    assert x.msg == "OK"

    x = bt.make_submit_job_result(1, 99)
    assert x.msg == "TEMPERROR"

    x = bt.make_submit_job_result(101, 99)
    assert x.msg == "ERROR"
    assert "SubmitJobResult" in repr(x)

    x = bt.cf_handle_unknown_submit_error(cmd="ls", exit_code=42, output="answer to life")
    assert isinstance(x, bt.SubmitJobResult)
    assert all(s in x.msg for s in ("ls", "42", "answer to life"))


@differs("`cf_read_brew_template` has no `comment_string`")
def test_brew(tmp_path):
    """R: test_that("brew")"""
    fn = tmp_path / "t.tmpl"
    fn.write_text("####\n \n!!!\nfoo={{ job_hash }}\n")
    res = bt.cf_read_brew_template(str(fn)).render(job_hash="x").split("\n")
    # R strips the comment lines (comment.string = "##"); Jinja2 comments are {# ... #}, so "##" lines stay
    assert res[:4] == ["####", " ", "!!!", "foo=x"]
    assert sum("foo=" in line for line in res) == 1

    reg = make_test_registry()
    bt.batch_map(lambda x: x, [1, 2], reg=reg)
    jc = bt.make_job_collection([1], reg=reg)
    fn.write_text("{# a comment #}\n!!!\nfoo={{ job_hash }}\n")
    text = bt.cf_read_brew_template(str(fn))
    out = bt.cf_brew_template(reg, text, jc)
    brewed = open(out).read().splitlines()
    assert brewed[0] == "!!!"
    assert brewed[1] == f"foo={jc.job_hash}"
    os.unlink(out)


def test_Special_chars_in_directory_names(tmp_path):
    """R: test_that("Special chars in directory names")"""
    base_dir = tmp_path / "test"
    base_dir.mkdir()
    file_dir = base_dir / "test#some_frequently-used chars"
    reg = make_test_registry(file_dir=file_dir)
    bt.batch_map(lambda x: x, [1, 2], reg=reg)
    submit_and_wait(reg)
    assert bt.reduce_results_list(reg=reg) == [1, 2]
    assert bt.test_job(1, external=False, reg=reg) == 1


def test_Export_of_environment_variable_DEBUGME(monkeypatch):
    """R: test_that("Export of environment variable DEBUGME")"""
    reg = make_test_registry()
    bt.batch_map(lambda i: os.environ.get("DEBUGME"), i=[1], reg=reg)
    monkeypatch.setenv("DEBUGME", "grepme")
    submit_and_wait(reg, [1])
    res = bt.load_result(1, reg=reg)
    assert isinstance(res, str) and "grepme" in res


@differs("`$BATCHTOOLS_CONF` names a file")
def test_findTemplateFile(tmp_path, monkeypatch):
    """R: test_that("findTemplateFile")"""
    # R: a batchtools.slurm.tmpl in the folder $R_BATCHTOOLS_SEARCH_PATH; here: the user's configuration
    # folder ($XDG_CONFIG_HOME/batchtools/slurm.tmpl) or ./batchtools.slurm.tmpl
    d = tmp_path / "conf"
    (d / "batchtools").mkdir(parents=True)
    fn = d / "batchtools" / "slurm.tmpl"
    fn.touch()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(d))
    assert bt.find_template_file("slurm") == str(fn.absolute())
    fn.unlink()
