"""R batchtools tests/testthat/test_sleep.R, ported (1 of 1 block).

R's internal ``getSleepFunction`` is ``batchtools.core.submission.sleep_function`` here: the
pause of ``submit_jobs`` / ``wait_for_jobs`` from ``sleep=None`` (the backend's backoff), a number
of seconds, or a function of the iteration.
"""

from batchtools.core.submission import sleep_function

from .helper import make_test_registry


def test_getSleepFunction():
    """R: test_that("getSleepFunction")"""
    reg = make_test_registry()
    default = reg.cluster_functions.poll
    f = sleep_function(None, lambda i: default)
    assert callable(f) and f(1) == default
    f = sleep_function(99, lambda i: default)
    assert callable(f) and f(1) == 99
    f = sleep_function(lambda x: x**2, lambda i: default)
    assert callable(f) and f(3) == 9
