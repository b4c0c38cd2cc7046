"""R batchtools tests/testthat/test_hooks.R, ported (1 of 1 block)."""

import inspect

import batchtools as bt

from .helper import make_test_registry, submit_and_wait


def test_hooks():
    """R: test_that("hooks")"""
    reg = make_test_registry()
    assert not {"pre_do_collection", "post_sync"} & set(reg.cluster_functions.hooks)

    def post_sync(reg, *args):
        (reg.file_dir / "post.sync.txt").write_text("post.syn")

    reg.cluster_functions.hooks = {**reg.cluster_functions.hooks,
                                   "pre_do_collection": lambda jc, *args: print(jc.job_hash),
                                   "post_sync": post_sync}

    jc = bt.make_job_collection([], reg=reg)
    assert list(inspect.signature(jc.hooks["pre_do_collection"]).parameters)[0] == "jc"

    fn_ps = reg.file_dir / "post.sync.txt"
    assert not fn_ps.exists()

    bt.batch_map(lambda x: x, [1], reg=reg)
    submit_and_wait(reg, [1])
    bt.sync_registry(reg=reg)
    assert fn_ps.exists()

    lines = bt.get_log(1, reg=reg)
    assert reg.status["job_hash"][0] in lines
