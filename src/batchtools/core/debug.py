"""Debug mode: ``BATCHTOOLS_DEBUG=1`` logs every scheduler command, file write and sync decision."""

from __future__ import annotations

import logging
import os


def enable_debug(level: int = logging.DEBUG) -> None:
    logger = logging.getLogger("batchtools")
    if not any(getattr(h, "_batchtools", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[batchtools %(asctime)s] %(message)s"))
        handler._batchtools = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)


def maybe_enable_from_env() -> None:
    if os.environ.get("BATCHTOOLS_DEBUG", "") not in ("", "0"):
        enable_debug()
