"""The documentation site's examples run, and its API reference covers every public name.

Every page under ``docs/`` (the generated ``docs/reference/`` aside) is read for fenced code:

- ```` ```python ```` blocks run, in the page's order, sharing one namespace, in a fresh
  temporary directory per page (as a reader pasting them into one script would).
- a block preceded by ``<!-- test: skip -->`` (e.g. it needs a real scheduler) is only compiled;
  the page says so to its readers.
- a block preceded by ``<!-- test: conf -->`` is a configuration file: it is written to
  ``batchtools.conf.py`` and a registry is made with it.
- ```` ```console ```` blocks: every ``$ command`` line runs in the page's directory (after
  the Python blocks before it) and must exit 0, unless the block is marked skip.

Other fences (``bash`` set-up instructions, ``text`` output, templates) are shown, not run.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import batchtools as bt

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FENCE = re.compile(r"^(`{3,})([\w{}-]*)\s*$")
MARKER = re.compile(r"^<!--\s*test:\s*(skip|conf)\b.*-->\s*$")


def pages() -> list[Path]:
    skip = {"_build", "reference", "_ext", "_scripts"}
    return sorted(p for p in DOCS.rglob("*.md") if not skip & set(p.relative_to(DOCS).parts))


def blocks(path: Path) -> list[tuple[str, str, str | None, int]]:
    """(language, code, marker, line number) of every fenced block of a Markdown page."""
    out = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2), i
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != fence:
            j += 1
        if j == len(lines):
            raise AssertionError(f"{path}:{start + 1}: code fence never closed")
        prev = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
        marker = MARKER.match(prev.strip())
        out.append((lang, "\n".join(lines[start + 1:j]) + "\n", marker.group(1) if marker else None, start + 2))
        i = j + 1
    return out


def test_every_page_is_found_and_has_no_unknown_marker():
    names = {p.relative_to(DOCS).as_posix() for p in pages()}
    for must in ("index.md", "quickstart.md", "registries.md", "experiments.md", "ml-benchmarks.md",
                 "worker-pool.md", "configuration.md", "cli.md", "troubleshooting.md", "architecture.md",
                 "backends/slurm.md", "backends/custom.md"):
        assert must in names
    for p in pages():
        text = p.read_text()
        for k, line in enumerate(text.splitlines(), 1):
            if line.strip().startswith("<!-- test"):
                assert MARKER.match(line.strip()), f"{p}:{k}: unknown marker {line.strip()!r}"


def _run_console(code: str, where: str, env: dict) -> None:
    for k, line in enumerate(code.splitlines()):
        if not line.startswith("$ "):
            continue
        proc = subprocess.run(["bash", "-c", line[2:]], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, f"{where} (+{k}): {line!r} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"


PAGE_TIMEOUT = 300  # seconds: a page whose examples hang fails instead of stalling the suite


def _too_slow(signum, frame):
    raise TimeoutError(f"the page's examples took more than {PAGE_TIMEOUT} s")


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(DOCS).as_posix())
def test_examples_of_page_run(page, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    previous = signal.signal(signal.SIGALRM, _too_slow)
    signal.alarm(PAGE_TIMEOUT)
    try:
        _run_page(page, tmp_path)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _run_page(page: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    namespace = {"__name__": "__main__"}
    ran = 0
    for lang, code, marker, line in blocks(page):
        where = f"{page.relative_to(ROOT)}:{line}"
        if lang == "python":
            compiled = compile(code, where, "exec")
            if marker == "skip":
                continue
            if marker == "conf":
                conf = tmp_path / "conf-check" / "batchtools.conf.py"
                conf.parent.mkdir(exist_ok=True)
                conf.write_text(code)
                reg = bt.make_registry(file_dir=None, conf_file=str(conf), make_default=False)
                assert reg.conf_file == str(conf)
            else:
                exec(compiled, namespace)
            ran += 1
        elif lang == "console" and marker != "skip":
            _run_console(code, where, env)
            ran += 1
    if ran == 0:
        pytest.skip(f"{page.name} has no example that runs")


def _apiref():
    spec = importlib.util.spec_from_file_location("apiref", DOCS / "_ext" / "apiref.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_api_reference_documents_every_public_name():
    apiref = _apiref()
    documented = [n for _, _, _, names in apiref.plan() for n, _ in names]
    assert sorted(documented) == sorted(n for n in bt.__all__ if n != "__version__")
    text = "\n".join(apiref.pages().values())
    for name in bt.__all__:
        if name != "__version__":
            assert re.search(rf"^\.\. auto\w+:: batchtools\.{name}$", text, re.M), name


def test_public_functions_have_docstrings_with_units():
    """Every public name has a docstring; where resources or times are arguments, their units are named."""
    import inspect

    for name in bt.__all__:
        if name == "__version__":
            continue
        obj = getattr(bt, name)
        doc = inspect.getdoc(obj) or ""
        assert len(doc) > 20, f"{name}: no docstring"
        if callable(obj) and not inspect.isclass(obj):
            params = inspect.signature(obj).parameters
            if "resources" in params:
                assert "seconds" in doc and "MB" in doc, f"{name}: say walltime is in seconds and memory in MB"
            for p in ("timeout", "sleep", "heartbeat", "idle_timeout", "kill_timeout", "fs_latency",
                      "scheduler_latency", "wait"):
                if p in params:
                    assert "second" in doc, f"{name}: say {p} is in seconds"


def test_configuration_page_names_every_key_and_backends_have_pages():
    from batchtools.core.config import SETTINGS

    conf = (DOCS / "configuration.md").read_text()
    for key in SETTINGS:
        assert f"| `{key}` |" in conf, f"configuration.md: no row for the key {key!r}"
    backend_pages = "\n".join(p.read_text() for p in (DOCS / "backends").glob("*.md"))
    for name in bt.__all__:
        if name.startswith("make_cluster_functions_"):
            assert name in backend_pages, f"docs/backends: no page shows {name}"
