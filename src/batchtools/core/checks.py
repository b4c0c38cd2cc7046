"""Argument checks shared by the verbs: each names the argument and says what would be right."""

from __future__ import annotations

import math
import re
from numbers import Integral, Real


def check_number(name: str, value, minimum: float, allow_none: bool = False, integer: bool = False,
                 strict: bool = False) -> None:
    """A finite number (or int) >= ``minimum`` (> with ``strict``); ``None`` if allowed."""
    if value is None and allow_none:
        return
    kinds = Integral if integer else Real
    ok = not isinstance(value, bool) and isinstance(value, kinds) and math.isfinite(value) and (
        value > minimum if strict else value >= minimum)
    if not ok:
        what = "an int" if integer else "a finite number"
        op = ">" if strict else ">="
        raise ValueError(f"{name}: must be {what} {op} {minimum}{' or None' if allow_none else ''}, got {value!r}")


def check_flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: must be True or False, got {value!r}")
    return value


# R: assertCharacter(tags, pattern = "^[[:alnum:]_.]+$"): letters, digits, '_' and '.'
TAG = re.compile(r"[\w.]+")


def check_tags(tags) -> list[str]:
    """Tags: a string or a list of strings of letters, digits, ``_`` and ``.`` (as R).

    >>> check_tags(["fast", "run_2", "v1.0"])
    ['fast', 'run_2', 'v1.0']
    >>> check_tags("a b")
    Traceback (most recent call last):
    ...
    ValueError: tags: must be non-empty strings of letters, digits, '_' and '.', got ['a b']
    """
    if isinstance(tags, str):
        tags = [tags]
    try:
        tags = list(tags)
    except TypeError:
        raise TypeError("tags: expected a string or a list of strings") from None
    bad = [t for t in tags if not isinstance(t, str) or not TAG.fullmatch(t)]
    if bad:
        raise ValueError(f"tags: must be non-empty strings of letters, digits, '_' and '.', got {bad}")
    return tags
