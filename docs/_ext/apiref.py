"""Sphinx extension: the API reference pages, generated from ``batchtools._EXPORTS``.

Every public name (``batchtools.__all__``) gets an autodoc entry on the page of its section;
sections are chosen by the module that defines the name (``SECTIONS``). A name from a module
not listed there still gets documented, on a page named after its module, so the reference
can never miss a public name. The pages are written to ``docs/reference/`` (not versioned)
when the build starts.
"""

from __future__ import annotations

import inspect
from pathlib import Path

# (page, title, intro, modules) in the order of the reference's table of contents
SECTIONS: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("registries", "Registries",
     "Creating, opening and maintaining registries; the default registry; configuration files; errors.",
     ("batchtools.registry", "batchtools.core.registry", "batchtools.core.config", "batchtools.api.maintenance",
      "batchtools.core.errors")),
    ("defining", "Defining jobs", "Jobs that map a function over arguments, and the blocking shortcuts.",
     ("batchtools.api.define", "batchtools.api.convenience")),
    ("experiments", "Experiments", "Problems, algorithms, designs and replications.",
     ("batchtools.api.experiments", "batchtools.node.experiment")),
    ("running", "Submitting and running",
     "Submitting, waiting, killing and resetting; the shared cache of results; chunking; resources learned from "
     "use; running jobs by hand. "
     "Resources: ``walltime`` in seconds, ``memory`` in MB (MiB, as schedulers count), ``ncpus`` CPUs.",
     ("batchtools.api.submit", "batchtools.api.cache", "batchtools.core.cache", "batchtools.api.wait",
      "batchtools.api.control", "batchtools.api.chunking",
      "batchtools.api.runtimes", "batchtools.api.recommend", "batchtools.api.testing", "batchtools.node.node",
      "batchtools.node.job", "batchtools.core.contract.collection")),
    ("pool", "Worker pool", "A few scheduler jobs that pull the registry's jobs, in your order.",
     ("batchtools.api.workers",)),
    ("status", "Status and queries", "Job counts, job tables, finding jobs, tags, joins.",
     ("batchtools.api.status", "batchtools.api.find", "batchtools.api.table", "batchtools.api.tags",
      "batchtools.api.joins")),
    ("results", "Results, logs and figures", "Results, logs, error messages, the timeline and the run report.",
     ("batchtools.api.results", "batchtools.api.logs", "batchtools.plot", "batchtools.reports",
      "batchtools.core.results.store", "batchtools.core.results.store_sqlite")),
    ("backends", "Backends (cluster functions)",
     "One constructor per backend; set the result as ``reg.cluster_functions`` or in ``batchtools.conf.py``.",
     ("batchtools.backends.*",)),
    ("custom-backends", "Writing a backend",
     "The backend contract, its node half, and the helpers every scheduler backend uses: commands, templates, hooks.",
     ("batchtools.core.contract.backend", "batchtools.node.environment", "batchtools.backends.commands",
      "batchtools.backends.templates")),
]


def exports() -> dict[str, tuple[str, ...]]:
    import batchtools

    return dict(batchtools._EXPORTS)


def backend_modules(by_module: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """``batchtools.backends.*``: every module exporting a ``make_cluster_functions_*`` constructor (so a
    new backend needs no entry here), in the order of the backends' guide (``backends/index.md``)."""
    guide = (Path(__file__).resolve().parents[1] / "backends" / "index.md").read_text()
    order = guide.split("```{toctree}", 1)[1].split("```", 1)[0].split()
    found = [m for m, names in by_module.items() if m.startswith("batchtools.backends.")
             and any(n.startswith("make_cluster_functions_") for n in names)]
    rank = {f"batchtools.backends.{name}": k for k, name in enumerate(order)}
    return tuple(sorted(found, key=lambda m: (rank.get(m, len(rank)), m)))


def plan() -> list[tuple[str, str, str, list[tuple[str, str]]]]:
    """(page, title, intro, [(name, module)]) for every page; every exported name on exactly one."""
    by_module = exports()
    placed: set[str] = set()
    out = []
    for page, title, intro, modules in SECTIONS:
        if modules == ("batchtools.backends.*",):
            modules = backend_modules(by_module)
        names = [(n, m) for m in modules for n in by_module.get(m, ())]
        placed.update(m for m in modules if m in by_module)
        if names:
            out.append((page, title, intro, names))
    for module, names in by_module.items():  # a module nobody placed yet: a page of its own
        if module not in placed:
            page = module.removeprefix("batchtools.").replace(".", "-")
            out.append((page, f"``{module}``", "", [(n, module) for n in names]))
    return out


def _entry(name: str) -> str:
    import batchtools

    obj = getattr(batchtools, name)
    target = f"batchtools.{name}"
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return f".. autoexception:: {target}\n"
    if inspect.isclass(obj):
        from batchtools.core.registry import RegistryState

        if issubclass(obj, RegistryState):
            own = [k for k, v in vars(obj).items() if callable(v) and not k.startswith("_")]
            props = [k for k, v in vars(obj).items() if isinstance(v, property)]
            methods = ", ".join(f":func:`~batchtools.{k}`" for k in own if hasattr(batchtools, k))
            base = [b.__name__ for b in obj.__bases__ if b is not RegistryState]
            more = f" (besides those of :class:`~batchtools.{base[0]}`)" if base else ""
            text = f".. autoclass:: {target}\n"
            if props:
                text += f"   :members: {', '.join(props)}\n"
            text += f"\n   Methods{more}, each the function of that name with ``reg=self``: {methods}.\n"
            return text
        return f".. autoclass:: {target}\n   :members:\n"
    if callable(obj):
        return f".. autofunction:: {target}\n"
    return f".. autodata:: {target}\n"


def pages() -> dict[str, str]:
    """{file name: Markdown text} of the reference: an index and one page per section."""
    out: dict[str, str] = {}
    toc = []
    for page, title, intro, names in plan():
        toc.append(page)
        body = "\n".join(_entry(n) for n, _ in names if not n.startswith("__"))
        heading = title.replace("``", "`")
        out[f"{page}.md"] = (f"# {heading}\n\n{intro}\n\n```{{eval-rst}}\n.. currentmodule:: batchtools\n\n"
                             f"{body}```\n")
    index = ["# API reference", "",
             "Generated from the docstrings of every public name of `batchtools` (`import batchtools as bt`).",
             "Units everywhere: times and durations in seconds, `walltime` in seconds, `memory` in MB "
             "(MiB, 2^20 bytes, as Slurm, PBS, SGE and LSF count a megabyte).",
             "Every function that takes `reg=None` works on the default registry and is also a method of the "
             "registry (`reg.submit_jobs()` is `bt.submit_jobs(reg=reg)`).", "",
             "```{toctree}", ":maxdepth: 1", "", *toc, "```", ""]
    out["index.md"] = "\n".join(index)
    return out


def write(folder: Path) -> None:
    """Write the pages to ``folder``, touching only files whose text changed (and removing stale ones)."""
    folder.mkdir(parents=True, exist_ok=True)
    new = pages()
    for name, text in new.items():
        path = folder / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    for path in folder.glob("*.md"):
        if path.name not in new:
            path.unlink()


def setup(app):
    write(Path(app.srcdir) / "reference")
    return {"version": "1", "parallel_read_safe": True}
