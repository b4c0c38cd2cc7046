"""Sphinx extension: the backend contract's tables in ``docs/backends/custom.md``, rendered from
the fields of ``ClusterFunctions`` and ``Capabilities`` (their group and text live in the fields'
metadata in ``batchtools/core/contract/backend.py``).

The tables sit between two markers in the page and are rewritten when the build starts, so the
page cannot drift from the code; ``tests/test_backend_contract.py`` fails when the committed page
and the code differ (run ``make docs`` to refresh it).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

BEGIN = "<!-- contract: rendered from batchtools/core/contract/backend.py by docs/_ext/contract.py; edit the code -->"
END = "<!-- end of contract -->"
PAGE = Path(__file__).resolve().parents[1] / "backends" / "custom.md"


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
        if callable(value):
            return "does nothing"
        return "–" if value is None or value == "" else f"`{value!r}`"
    if f.default_factory is not dataclasses.MISSING:
        return f"`{f.default_factory()!r}`" if f.default_factory is dict else f"`{f.default_factory.__name__}()`"
    return "required"


def render() -> str:
    """The Markdown between the page's markers."""
    from batchtools.core.contract.backend import GROUPS, members

    out = []
    for group, title in GROUPS.items():
        out += [f"**{title}.**", "", "| member | called as | returns / holds | default | notes |",
                "|---|---|---|---|---|"]
        for f in members(group):
            m = f.metadata
            out.append(f"| `{f.name}` | {m['call'] or '–'} | {m['returns'] or '–'} | {_default(f)} | "
                       f"{m['doc'] or '–'} |")
        out.append("")
    out += ["**Capabilities** ({class}`~batchtools.Capabilities`, all optional).", "",
            "| capability | default | meaning |", "|---|---|---|"]
    out += [f"| `{f.name}` | {_default(f)} | {f.metadata['doc']} |" for f in members("capability")]
    return "\n".join(out)


def update(page: Path = PAGE) -> bool:
    """Rewrite the tables in ``page``; True if they changed."""
    text = page.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{render()}\n{END}{tail}"
    if new != text:
        page.write_text(new)
    return new != text


def setup(app):
    update()
    return {"version": "1", "parallel_read_safe": True}
