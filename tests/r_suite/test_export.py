"""R batchtools tests/testthat/test_export.R, ported (1 of 2 blocks).

Skipped: "export works with funny variable names": it exports R's infix operator ``%bla%``; Python
has no user-defined operators, and exports must be identifiers (the globals a job's code can name).
"""

import batchtools as bt

from .helper import differs, make_test_registry, submit_and_wait


@differs("`source` files and `load` pickles are run and read on the node only")
def test_export_works():
    """R: test_that("export works")"""
    reg = make_test_registry()
    x = bt.batch_export({"exported_obj": 42}, reg=reg)
    assert x.shape == (1, 2)
    assert set(x.columns) == {"name", "uri"}
    assert x["name"].tolist() == ["exported_obj"]
    assert reg.layout.export("exported_obj").is_file()
    # R loads the exports into the master's global environment too (loadRegistryDependencies); here
    # they are the jobs' globals on the node

    x = bt.batch_export(reg=reg)
    assert x.shape == (1, 2)
    assert x["name"].tolist() == ["exported_obj"]

    x = bt.batch_export(unexport="exported_obj", reg=reg)
    assert x.shape == (0, 2)
    assert set(x.columns) == {"name", "uri"}
    assert not reg.layout.export("exported_obj").exists()

    bt.batch_export({"exported_obj": 43}, reg=reg)
    bt.batch_map(lambda x: globals()["exported_obj"] + x, [1], reg=reg)
    submit_and_wait(reg)
    assert bt.load_result(1, reg=reg) == 44
