"""Text from a registry shown on a terminal: never acted on by it. Standard library only (the
command line imports it without pandas)."""

from __future__ import annotations

import re

# what a terminal would act on instead of showing: C0 controls (ESC starts colour, cursor and title
# sequences; CR overwrites the line) but newline and tab, DEL, C1 controls, and the bidirectional
# overrides that make text read differently from what it is
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    r"""``text`` as a terminal shows it literally: control characters (terminal escapes, carriage
    returns, bells; not newlines or tabs) are written as Python escapes. For text from a registry
    (job names, tags, error messages, logs) shown by the command line.

    >>> print(printable("ok\x1b]0;owned\x07 done\rnext"))
    ok\x1b]0;owned\x07 done\x0dnext
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", text)
