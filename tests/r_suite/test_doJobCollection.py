"""R batchtools tests/testthat/test_doJobCollection.R, ported (4 of 4 blocks)."""

import warnings

import batchtools as bt

from .helper import differs, make_test_registry, submit_and_wait


def test_doJobCollection_handles_bulky_log_output(tmp_path):
    """R: test_that("doJobCollection handles bulky log output")"""
    n = 10**5
    reg = make_test_registry()
    bt.batch_map(lambda n: print("a" * n), [n], reg=reg)
    jc = bt.make_job_collection([1], reg=reg)
    fn = tmp_path / "out.log"
    bt.do_job_collection(jc, output=str(fn))
    assert any(len(line) >= n for line in fn.read_text().splitlines())


def test_doJobCollection_truncates_error_messages(tmp_path):
    """R: test_that("doJobCollection truncates error messages")"""
    n = 5000

    def fun(n):
        raise ValueError("a" * n)

    reg = make_test_registry()
    bt.batch_map(fun, [n], reg=reg)
    jc = bt.make_job_collection([1], reg=reg)
    bt.do_job_collection(jc, output=str(tmp_path / "out.log"))
    bt.sync_registry(reg=reg)
    msg = bt.get_error_messages(reg=reg)["message"].item()
    assert msg.endswith(" [truncated]")


@differs("`grep_logs` gives one row per matching line")
def test_doJobCollection_does_not_swallow_warning_messages():
    """R: test_that("doJobCollection does not swallow warning messages")"""
    reg = make_test_registry()
    reg.cluster_functions = bt.make_cluster_functions_interactive(external=True)

    def fun(x):
        warnings.warn("GREPME", stacklevel=1)

    bt.batch_map(fun, [1], reg=reg)
    submit_and_wait(reg, [1])
    assert len(bt.find_errors(reg=reg)) == 0
    hits = bt.grep_logs(pattern="GREPME", reg=reg)
    # R: one row per job; here one per line (the warning and the line of code that raised it)
    assert hits["job_id"].unique().tolist() == [1]
    assert any("UserWarning: GREPME" in line for line in hits["line"])


@differs("`source` files and `load` pickles are run and read on the node only")
def test_doJobCollection_signals_slave_errors(tmp_path):
    """R: test_that("doJobCollection signals slave errors")"""
    reg = make_test_registry()
    fn = tmp_path / "source.py"
    fn.write_text("x = y_on_master\n")
    reg.source = (str(fn),)
    bt.save_registry(reg=reg)
    # R also fails loading the registry's dependencies on the master; here sources run on the node only
    bt.batch_map(lambda x: x, [1], reg=reg)
    submit_and_wait(reg, [1])
    assert len(bt.find_errors(reg=reg)) == 1
    assert "y_on_master" in bt.get_error_messages(reg=reg)["message"].item()
