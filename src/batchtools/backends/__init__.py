"""Cluster functions: one small file per backend against the contract in :mod:`batchtools.core.contract.backend`;
shared chores in :mod:`.commands` and :mod:`.templates`. A backend never imports another backend.

The list of backends is this folder: ``backends/<name>.py`` that defines ``make_cluster_functions_<name>``
is one (exported as ``bt.make_cluster_functions_<name>``), and its template, if it has one, is
``templates/<name>-*.tmpl``. Nothing else names them, so a new scheduler is that file and that template
(plus its page in ``docs/backends/``, which a test asks for).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE.parent / "templates"


def shipped() -> tuple[str, ...]:
    """The shipped backends, by module name (read from the files, nothing imported).

    >>> "slurm" in shipped() and "commands" not in shipped()
    True
    """
    return tuple(sorted(p.stem for p in HERE.glob("*.py")
                        if f"def make_cluster_functions_{p.stem}(" in p.read_text(encoding="utf-8")))


def template_names() -> tuple[str, ...]:
    """The schedulers with a shipped template (``templates/<name>-*.tmpl``).

    >>> "pbspro" in template_names()
    True
    """
    return tuple(sorted({p.name.split("-", 1)[0] for p in TEMPLATES.glob("*-*.tmpl")}))
