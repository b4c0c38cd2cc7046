"""Every R block kept different quotes its entry of the migration guide's differences list
(docs/migrating-from-r.md#differences-kept-on-purpose), and the entry is there."""

import importlib
import pkgutil
import re
from pathlib import Path

from .helper import MIGRATION_GUIDE

HERE = str(Path(__file__).resolve().parent)


def differences_text() -> str:
    text = MIGRATION_GUIDE.read_text()
    start = text.index("## Differences kept on purpose")
    end = text.find("\n## ", start + 1)
    return " ".join(text[start:end if end > 0 else None].split())


def marked_blocks() -> dict[str, tuple[str, ...]]:
    """test name -> the entries its r_difference marks quote, over every module of this package."""
    out = {}
    for info in pkgutil.iter_modules([HERE]):
        if not info.name.startswith("test_"):
            continue
        module = importlib.import_module(f"{__package__}.{info.name}")
        for name, fn in vars(module).items():
            for mark in getattr(fn, "pytestmark", []):
                if mark.name == "r_difference":
                    out[f"{info.name}::{name}"] = mark.args
    return out


def test_every_kept_difference_is_in_the_migration_guide():
    text = differences_text()
    blocks = marked_blocks()
    assert len(blocks) >= 10  # the marks are found
    missing = {name: [e for e in entries if " ".join(e.split()) not in text]
               for name, entries in blocks.items()}
    missing = {k: v for k, v in missing.items() if v}
    assert not missing, f"entries not in {MIGRATION_GUIDE.name}'s differences: {missing}"
    for entries in blocks.values():
        assert entries and all(isinstance(e, str) and e.strip() for e in entries)


def test_every_module_names_its_r_file():
    for info in pkgutil.iter_modules([HERE]):
        if info.name.startswith("test_") and info.name != "test_differences":
            module = importlib.import_module(f"{__package__}.{info.name}")
            assert re.match(rf"R batchtools tests/testthat/{info.name}\.R, ported \(\d+ of \d+ blocks?\)",
                            module.__doc__), info.name
