"""Times shown to people: seconds since the epoch as local time to the second.

Standard library only, so that what prints a time (the status summary of ``batchtools status``)
starts without pandas.
"""

from __future__ import annotations

import time

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def local_time(t: float | None) -> str:
    """Seconds since the epoch as local time to the second ('' for missing).

    >>> local_time(None)
    ''
    >>> len(local_time(0.0))
    19
    """
    if t is None or t != t:
        return ""
    return time.strftime(TIME_FORMAT, time.localtime(t))
