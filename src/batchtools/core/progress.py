"""Progress bars on long operations (tqdm), switchable as batchtools' ``progress`` option.

Shown on a terminal only; ``BATCHTOOLS_PROGRESS=0`` turns them off, ``=1`` forces them on.
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm


def progress(total: int, desc: str, min_total: int = 2) -> tqdm:
    flag = os.environ.get("BATCHTOOLS_PROGRESS")
    if flag == "0" or total < min_total:
        disable = True
    elif flag == "1":
        disable = False
    else:
        disable = None  # auto: only on a TTY
    return tqdm(total=total, desc=desc, disable=disable, leave=False, unit="job", dynamic_ncols=True)
