"""R batchtools tests/testthat/test_runOSCommand.R, ported (3 of 3 blocks)."""

import os
import string

import batchtools as bt


def test_runOSCommand():
    """R: test_that("runOSCommand")"""
    package = os.path.dirname(bt.__file__)
    x = bt.run_os_command("ls", [package])
    assert isinstance(x, dict) and len(x) == 4
    assert set(x) == {"sys_cmd", "sys_args", "exit_code", "output"}
    assert x["exit_code"] == 0
    assert {"__init__.py", "registry.py", "templates"} <= set(x["output"])


def test_command_not_found():
    """R: test_that("command not found")"""
    res = bt.run_os_command("notfoundcommand")
    assert len(res) == 4
    assert res["exit_code"] == 127
    assert res["output"] == ["command not found"]
    # R's internal OSError(msg, res) words the error of a failed command; here the backends' public
    # helper for it
    err = bt.cf_handle_unknown_submit_error(res["sys_cmd"], res["exit_code"], res["output"])
    for pattern in ("command not found", "'notfoundcommand'", "exit code 127"):
        assert pattern in err.msg


def test_stdin(tmp_path):
    """R: test_that("stdin")"""
    tf = tmp_path / "in.txt"
    tf.write_text("\n".join(string.ascii_lowercase) + "\n")
    res = bt.run_os_command("cat", stdin=str(tf))
    assert res["exit_code"] == 0
    assert res["output"] == list(string.ascii_lowercase)
