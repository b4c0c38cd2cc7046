#!/usr/bin/env python3
"""Move ``batchtools/jobs/`` to ``batchtools/node/`` and group ``batchtools/core/`` into sub-packages.

Run from (or point ``--repo`` at) a clean checkout, with the project's interpreter (so that the
ruff next to it sorts the rewritten imports)::

    .venv/bin/python tools/relayout.py            # apply, print every move and rewrite, stage it
    .venv/bin/python tools/relayout.py --dry-run  # print what it would do, change nothing

What it does, in this order:

1. Reads the tables below (``CORE_GROUPS``, ``CORE_TOP``, ``JOBS_ELSEWHERE``). A module in ``core/``
   that no table names (one added after this script was written) stays in ``core/`` top level, its
   imports rewritten like any other, and the script prints a warning naming it: add it to a group
   (or to ``CORE_TOP``) and run again on a fresh checkout. Every module of ``jobs/`` moves to
   ``node/`` whatever its name, except those ``JOBS_ELSEWHERE`` sends elsewhere.
2. Rewrites, in every text file under src, tests, bench, examples, docs, ci (and README, Makefile,
   pyproject, conftest.py): dotted names (``batchtools.core.store``, ``"batchtools.jobs.node"``,
   mock.patch targets, ``python -m batchtools.jobs.x``, Sphinx roles, escaped regex dots,
   ``__import__("batchtools.jobs.x").jobs.x``), source paths (``core/store.py``,
   ``src/batchtools/jobs/node.py``), and every ``import`` statement the new places change: relative
   ones (``from .files import``, ``from ..core import store``, ``from . import sync``) are
   recomputed from the importing module's new place, so they stay relative. A moved module that
   finds a folder above its own from ``__file__`` (``os.path.dirname`` twice, ``.parent.parent``)
   goes up one more level. ``SPECIAL_EDITS`` holds the edits beyond renaming (Multicore also
   recognises a fork server an older version started as ``batchtools.jobs.forkserver``).
3. ``git mv`` of every moved module, new sub-packages with an ``__init__.py`` saying what they hold.
4. Writes ``src/batchtools/_moved.py``: old module path -> new one, installed as an import hook by the
   package, so a registry on disk that names an old path (a pickled object, the result store's spec
   ``"batchtools.core.store:FolderStore"``, a node environment ``"module:qualname"``) still loads,
   and ``tests/test_moved_modules.py`` proving it.
5. Updates tests/test_architecture.py: ``node`` instead of ``jobs`` in the layer table, the Multicore
   fork client among the backends' shared modules, and a test that core's sub-packages import each
   other without a circle.
6. Sorts the rewritten imports (``ruff check --fix --select I``), stages everything (``git add``),
   and lists any line that still names an old path. It commits nothing.

Idempotent: a checkout that has ``src/batchtools/node`` and no ``src/batchtools/jobs`` is reported as
already relaid and left alone. A checkout with uncommitted changes is refused (``--allow-dirty`` to
override). Standard library only; delete it once the move is on main.
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

# ---------------------------------------------------------------------------------------------
# The tables. Edit these when a new core module appears (the script warns about unknown ones).
# ---------------------------------------------------------------------------------------------

#: core sub-package -> (what it holds, for its __init__ docstring, [modules])
CORE_GROUPS: dict[str, tuple[str, list[str]]] = {
    "persistence": (
        "The registry folder on disk: where each file lives, atomic writes, transactions, the "
        "writeable-session lease, the tables' pickles and how user code is serialised.",
        ["files", "layout", "txn", "lease", "tables", "columns", "pickling"]),
    "jobstate": (
        "Job state: definitions per kind, ids, resources, the status table and how the nodes' "
        "updates are merged into it, attempts, retries, counts, accounting, recovery and cleanup.",
        ["state", "sync", "recovery", "counts", "attempts", "kinds", "ids", "resources", "retry",
         "usage", "cleanup"]),
    "results": (
        "Results: the result store seam (a folder of files, packs of small results, SQLite).",
        ["store", "store_sqlite", "packs"]),
    "contract": (
        "The backend contract and the hand-over: what a cluster-functions record holds, the job "
        "collection a node receives, the submission journal, and the update protocol the node and "
        "the master agree on.",
        ["backend", "collection", "journal", "protocol"]),
    "workerpool": (
        "The worker pool seen from the master: the claim log and which worker holds which job.",
        ["pool", "claims"]),
    "presentation": (
        "What people see: local times, tables, progress bars, notifications, terminal-safe text.",
        ["display", "clock", "progress", "notify", "text"]),
}
#: core modules that stay at core/ top level: the registry and the submission, which tie the groups
#: together (they may import any group), and what every group shares (errors, argument checks,
#: configuration files, debug logging)
CORE_TOP = ["registry", "submission", "cache", "cache_key", "errors", "checks", "config", "debug"]
#: jobs/ modules that are master code and leave the node folder: name -> new dotted parent
JOBS_ELSEWHERE = {"forkclient": "batchtools.backends"}

#: edits beyond renaming, on the rewritten text (file as it is before the move, old text, new text):
#: a process that an older version started names the old module on its command line
SPECIAL_EDITS = [
    ("src/batchtools/backends/multicore.py",
     '"batchtools.node.forkserver" not in proc.cmdline()',
     'not FORK_SERVERS & set(proc.cmdline())'),
    ("src/batchtools/backends/multicore.py",
     "\n\n@restorable\ndef make_cluster_functions_multicore(",
     "\n\n# a fork server started before the relayout (its jobs may still run) has the old module name\n"
     'FORK_SERVERS = {"batchtools.node.forkserver", "batchtools.jobs.forkserver"}\n'
     "\n\n@restorable\ndef make_cluster_functions_multicore("),
]

PKG = "batchtools"
TEXT_SUFFIXES = {".py", ".md", ".rst", ".txt", ".toml", ".cfg", ".ini", ".yml", ".yaml", ".tmpl", ".sh",
                 ".html", ".js", ".css", ".json"}
ROOTS = ["src", "tests", "bench", "examples", "docs", "ci"]
ROOT_FILES = ["README.md", "Makefile", "pyproject.toml", "conftest.py"]
SKIP_PARTS = {"__pycache__", "_build", ".venv", "node_modules", ".git"}
SELF = Path(__file__).resolve()


def roots_present(repo: Path) -> list[str]:
    return [r for r in ("src", "tests", "bench", "examples", "docs") if (repo / r).exists()]


def sh(repo: Path, *args: str, dry: bool) -> None:
    print("  $ " + " ".join(args))
    if not dry:
        subprocess.run(args, cwd=repo, check=True)


def module_map(repo: Path) -> tuple[dict[str, str], list[str]]:
    """old dotted module -> new dotted module, for every module that moves; and warnings."""
    src = repo / "src" / PKG
    warnings: list[str] = []
    moves: dict[str, str] = {}
    names = [n for n in sorted(CORE_GROUPS) + CORE_TOP]
    grouped = {m: g for g, (_, mods) in CORE_GROUPS.items() for m in mods}
    clash = set(CORE_GROUPS) & {p.stem for p in (src / "core").glob("*.py")}
    if clash:
        sys.exit(f"relayout: group names {sorted(clash)} are also core module names; rename the groups")
    for path in sorted((src / "core").glob("*.py")):
        m = path.stem
        if m == "__init__" or m in CORE_TOP:
            continue
        if m in grouped:
            moves[f"{PKG}.core.{m}"] = f"{PKG}.core.{grouped[m]}.{m}"
        else:
            warnings.append(f"core/{m}.py is in no group of CORE_GROUPS nor CORE_TOP: left at core/ top level")
    for m in grouped:
        if not (src / "core" / f"{m}.py").exists():
            warnings.append(f"CORE_GROUPS names core/{m}.py, which does not exist: skipped")
    for path in sorted((src / "core").iterdir()):
        if path.is_dir() and path.name not in SKIP_PARTS and path.name not in names:
            warnings.append(f"core/{path.name}/ is a package no table names: left where it is")
    moves[f"{PKG}.jobs"] = f"{PKG}.node"
    for path in sorted((src / "jobs").rglob("*.py")):
        rel = path.relative_to(src / "jobs").with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        if not parts:
            continue
        old = ".".join([PKG, "jobs", *parts])
        if len(parts) == 1 and parts[0] in JOBS_ELSEWHERE:
            moves[old] = f"{JOBS_ELSEWHERE[parts[0]]}.{parts[0]}"
        else:
            moves[old] = ".".join([PKG, "node", *parts])
    return moves, warnings


def text_files(repo: Path) -> list[Path]:
    out = []
    for root in ROOTS:
        base = repo / root
        if not base.exists():
            continue
        for p in base.rglob("*"):
            parts = p.relative_to(repo).parts
            if p.is_file() and p.suffix in TEXT_SUFFIXES and not SKIP_PARTS & set(parts) \
                    and not any(q.endswith(".egg-info") for q in parts) and p.resolve() != SELF:
                out.append(p)
    out += [repo / f for f in ROOT_FILES if (repo / f).exists()]
    return sorted(out)


def rewrite_names(text: str, moves: dict[str, str]) -> str:
    """Dotted names (also with escaped dots, as in a regex) and source paths of moved modules."""
    def dotted(m: re.Match) -> str:
        dot = m.group(1)
        old = m.group(0).replace(dot, ".")
        new = moves.get(old)
        if new is None and old.startswith(f"{PKG}.jobs"):
            new = moves[f"{PKG}.jobs"] + old[len(f"{PKG}.jobs"):]
        return m.group(0) if new is None else new.replace(".", dot)

    def dunder(m: re.Match) -> str:  # __import__("batchtools.jobs.x").jobs.x.name: the chain follows the name
        q, old, chain = m.group(1), m.group(2), m.group(3)
        new = moves.get(old) or (moves[f"{PKG}.jobs"] + old[len(f"{PKG}.jobs"):] if old.startswith(f"{PKG}.jobs")
                                 else None)
        old_parts, parts = old.split(".")[1:], chain[1:].split(".")
        if new is None or parts[: len(old_parts)] != old_parts:
            return m.group(0)
        return f"__import__({q}{new}{q})." + ".".join(new.split(".")[1:] + parts[len(old_parts):])

    text = re.sub(rf"__import__\((['\"])({PKG}\.[\w.]+)\1\)((?:\.\w+)+)", dunder, text)

    # batchtools.core.x / batchtools.jobs.x (one level below core or jobs; longest names first)
    text = re.sub(rf"(?<![\w.]){PKG}(\\?\.)(?:core\1\w+|jobs(?:\1\w+)?)(?![\w])", dotted, text)

    def path(m: re.Match) -> str:
        prefix, area, name = m.group(1), m.group(2), m.group(3)
        new = moves.get(f"{PKG}.{area}.{name}")
        if new is None:
            return m.group(0)
        new_rel = "/".join(new.split(".")[1:])
        return f"{prefix}{new_rel}.py"

    # core/x.py, jobs/x.py, batchtools/core/x.py, src/batchtools/jobs/x.py
    text = re.sub(r"(?<![\w/])((?:src/)?(?:batchtools/)?)(core|jobs)/(\w+)\.py\b", path, text)
    text = re.sub(r"(?<![\w/])((?:src/)?batchtools/)jobs\b(?!/\w+\.py)", r"\1node", text)
    return text


def depth_delta(old: str, new: str) -> int:
    return new.count(".") - old.count(".")


def rewrite_file_paths(text: str, delta: int, where: str, warnings: list[str]) -> str:
    """A module that moves ``delta`` folders deeper and finds a place above its own folder from
    ``__file__`` (``os.path.dirname(os.path.dirname(__file__))``, ``Path(__file__).parent.parent``)
    goes up ``delta`` more levels. A reference to its own folder is left as it is, with a warning."""
    def dirnames(m: re.Match) -> str:
        k = m.group(1).count("dirname(")
        if k < 2:
            warnings.append(f"{where}: {m.group(0)!r} names the module's own folder, which moved: check it")
            return m.group(0)
        return "os.path.dirname(" * (k + delta) + m.group(2) + ")" * delta  # + the k that follow

    def parents(m: re.Match) -> str:
        k = m.group(2).count(".parent")
        if k < 2:
            warnings.append(f"{where}: {m.group(0)!r} names the module's own folder, which moved: check it")
            return m.group(0)
        return m.group(1) + ".parent" * (k + delta)

    text = re.sub(r"((?:os\.path\.dirname\()+)(os\.path\.(?:abspath|realpath)\(__file__\)|__file__)", dirnames, text)
    text = re.sub(r"(Path\(__file__\)(?:\.resolve\(\)|\.absolute\(\))?)((?:\.parent\b)+)", parents, text)
    return text


def old_module_of(repo: Path, path: Path) -> tuple[str, bool] | None:
    src = repo / "src"
    try:
        rel = path.relative_to(src).with_suffix("")
    except ValueError:
        return None
    parts = list(rel.parts)
    is_pkg = parts[-1] == "__init__"
    if is_pkg:
        parts = parts[:-1]
    return ".".join(parts), is_pkg


def new_module(old: str, moves: dict[str, str]) -> str:
    if old in moves:
        return moves[old]
    if old.startswith(f"{PKG}.jobs."):
        return moves[f"{PKG}.jobs"] + old[len(f"{PKG}.jobs"):]
    return old


def relative(from_pkg: str, target: str) -> tuple[int, str]:
    """(level, module) of a relative import of ``target`` from inside package ``from_pkg``."""
    a, b = from_pkg.split("."), target.split(".")
    common = 0
    while common < min(len(a), len(b)) and a[common] == b[common]:
        common += 1
    return len(a) - common + 1, ".".join(b[common:])


def rewrite_imports(text: str, repo: Path, path: Path, moves: dict[str, str], old_modules: set[str]) -> str:
    """Recompute ``from X import ...`` statements whose target moves (or whose importer moves)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return text
    info = old_module_of(repo, path)
    if info is not None:
        old_mod, is_pkg = info
        new_mod = new_module(old_mod, moves)
        old_pkg = old_mod if is_pkg else old_mod.rsplit(".", 1)[0]
        new_pkg = new_mod if is_pkg else new_mod.rsplit(".", 1)[0]
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, int, int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level == 0:
            # absolute names were rewritten by rewrite_names already, except a moved module imported
            # by name from its old package: ``from batchtools.core import store``
            if node.module not in (PKG, f"{PKG}.core", f"{PKG}.jobs", f"{PKG}.node"):
                continue
            # rewrite_names made ``from batchtools.jobs import x`` read ``batchtools.node``: look it up as jobs
            base = f"{PKG}.jobs" if node.module == f"{PKG}.node" else node.module
        else:
            if info is None:
                continue
            base_parts = old_pkg.split(".")
            base_parts = base_parts[: len(base_parts) - (node.level - 1)]
            base = ".".join(base_parts + ([node.module] if node.module else []))
        groups: dict[str, list[ast.alias]] = {}
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            if alias.name != "*" and sub in old_modules:
                new_parent, new_leaf = new_module(sub, moves).rsplit(".", 1)
                if new_leaf != alias.name:  # the package itself was renamed (jobs -> node)
                    alias = ast.alias(name=new_leaf, asname=alias.asname or alias.name)
                groups.setdefault(new_parent, []).append(alias)
            else:
                groups.setdefault(new_module(base, moves), []).append(alias)
        stmts = []
        for target, aliases in groups.items():
            if node.level == 0:
                level, mod = 0, target
            else:
                level, mod = relative(new_pkg, target)
            stmts.append((level, mod, aliases))
        renamed = any(a.name != b.name for a, b in zip([a for _, _, al in stmts for a in al], node.names))
        if len(stmts) == 1 and stmts[0][0] == node.level and stmts[0][1] == (node.module or "") and not renamed:
            continue
        seg_first = lines[node.lineno - 1]
        indent = seg_first[: node.col_offset]
        if len(stmts) == 1 and not renamed:
            level, mod, _ = stmts[0]
            new_head = "." * level + mod
            edits.append((node.lineno, node.col_offset, node.lineno, node.end_col_offset if node.end_lineno ==
                          node.lineno else -1, new_head))
        else:
            body = "\n".join(
                f"{indent if i else ''}from {'.' * level + mod} import "
                + ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in aliases)
                for i, (level, mod, aliases) in enumerate(stmts))
            edits.append((node.lineno, node.col_offset, node.end_lineno, node.end_col_offset, "\0" + body))
    for lineno, col, end_lineno, end_col, new in sorted(edits, reverse=True):
        line = lines[lineno - 1]
        if new.startswith("\0"):
            tail = lines[end_lineno - 1][end_col:]
            lines[lineno - 1: end_lineno] = [line[:col] + new[1:] + tail]
        else:
            m = re.compile(r"from\s+(\.*[\w.]*)\s+import").match(line, col)
            if m is None:
                raise SystemExit(f"relayout: cannot parse the import at {path}:{lineno}")
            lines[lineno - 1] = line[: m.start(1)] + new + line[m.end(1):]
    return "".join(lines)


ALIAS_MODULE = '''"""Old module paths of modules that moved (``tools/relayout.py``), kept importable.

A registry written before the move names modules by their old paths: pickled objects, the result
store's spec (``"batchtools.core.store:FolderStore"``), a collection's node environment
(``"module:qualname"``). An import hook answers those names with the module at its new place (the
same module object, so classes stay identical). Standard library only: the node imports it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED: dict[str, str] = {
%s}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):  # noqa: D102
        if name not in MOVED:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):  # noqa: D102
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):  # noqa: D102
        pass


def install() -> None:
    """Put the hook first on ``sys.meta_path`` (once): an old name must not load a second copy."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.insert(0, _Alias())
'''

ALIAS_TEST = '''"""Registries written before the relayout (tools/relayout.py) name old module paths: they still load."""

from __future__ import annotations

import importlib
import pickle

import pytest

from batchtools._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_path_is_the_module_at_its_new_place(old):
    assert importlib.import_module(old) is importlib.import_module(MOVED[old])


def test_a_store_spec_naming_the_old_path_still_loads(tmp_path):
    from batchtools.core.results.store import FolderStore, store_from_spec

    store = store_from_spec({"constructor": "batchtools.core.store:FolderStore", "kwargs": {}}, tmp_path)
    assert type(store) is FolderStore


def test_a_pickle_naming_the_old_path_still_loads():
    from batchtools.core.jobstate.retry import RetryPolicy

    data = pickle.dumps(RetryPolicy(), protocol=2)
    assert b"batchtools.core.jobstate.retry" in data
    old = data.replace(b"batchtools.core.jobstate.retry", b"batchtools.core.retry")
    assert pickle.loads(old) == RetryPolicy()


def test_multicore_sees_a_job_of_a_fork_server_started_under_the_old_module_name(tmp_path):
    """A fork server started before the relayout runs as ``-m batchtools.jobs.forkserver``: its
    children still count as this registry's running jobs for a new session, never as expired."""
    import subprocess
    import sys
    import time

    import batchtools as bt
    from batchtools.backends.multicore import other_sessions_jobs

    reg = bt.make_registry(file_dir=tmp_path / "reg", conf_file=None, make_default=False, seed=1)
    bt.batch_map(lambda x: x, x=[1, 2], reg=reg)
    log = reg.layout.log("oldhash")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        procs = {name: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", name], stdout=out)
                 for name in ("batchtools.jobs.forkserver", "batchtools.something.else")}
    try:
        st = reg.status
        st.loc[st.index[:2], "submitted"] = time.time()
        st.loc[st.index[:2], "batch_id"] = [str(p.pid) for p in procs.values()]
        assert other_sessions_jobs(reg, set()) == [str(procs["batchtools.jobs.forkserver"].pid)]
    finally:
        for p in procs.values():
            p.kill()
            p.wait()


def test_a_node_environment_naming_the_old_path_still_loads():
    """A collection names its node environment ``"module:qualname"``; the node imports the module."""
    from batchtools.node import environment

    module, _, qualname = "batchtools.jobs.environment:NodeEnvironment".partition(":")
    assert getattr(importlib.import_module(module), qualname) is environment.NodeEnvironment
'''


def update_architecture_test(text: str) -> str:
    """Layer table: node instead of jobs; the Multicore fork client is one of the backends' shared
    modules (a backend's master half)."""
    new = text.replace('"jobs": {"core", "_version"}', '"node": {"core", "_version"}')
    new = new.replace('"backends": {"core", "jobs", "_version"}', '"backends": {"core", "node", "_version"}')
    new = new.replace('"api": {"core", "jobs", "backends", "_version"}', '"api": {"core", "node", "backends", "_version"}')
    new = new.replace('("core", "jobs", "backends", "api")', '("core", "node", "backends", "api")')
    new = new.replace("core < jobs < backends", "core < node < backends")
    new = new.replace(
        'shared = {f"{PKG}.backends.commands", f"{PKG}.backends.templates", f"{PKG}.backends.bsub"}',
        'shared = {f"{PKG}.backends.commands", f"{PKG}.backends.templates", f"{PKG}.backends.bsub",\n'
        '              f"{PKG}.backends.forkclient"}  # the master half of Multicore\'s fork server')
    if "def test_core_groups_have_no_circles" not in new:
        anchor = "\n\ndef test_backends_do_not_import_each_other"
        new = new.replace(anchor, "\n\n" + GROUP_TEST.rstrip("\n") + anchor, 1)
    return new


GROUP_TEST = '''
def test_core_groups_have_no_circles():
    """core's sub-packages (persistence, results, contract, jobstate, workerpool, presentation) form
    layers too: seen as one node each, no two import each other, directly or round a circle. The
    modules at core/ top level (the registry, the submission, errors, checks) count one by one."""
    graph = import_graph()

    def group(m: str) -> str:
        parts = m.split(".")
        return ".".join(parts[:3]) if len(parts) > 3 and parts[1] == "core" else m

    collapsed: dict[str, set[str]] = {}
    for m, deps in graph.items():
        collapsed.setdefault(group(m), set()).update(group(d) for d in deps if group(d) != group(m))
    for deps in list(collapsed.values()):
        for d in deps:
            collapsed.setdefault(d, set())
    found = cycles(collapsed, f"{PKG}.core")
    assert not found, f"circles between core's groups (move a module, tools/relayout.py CORE_GROUPS): {found}"
'''



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, default=Path.cwd())
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--allow-dirty", action="store_true")
    args = ap.parse_args()
    repo = args.repo.resolve()
    src = repo / "src" / PKG
    dry = args.dry_run
    if not (src / "core").is_dir():
        sys.exit(f"relayout: {src}/core not found: run it in a pybatchtools checkout (or pass --repo)")
    if (src / "node").exists() and not (src / "jobs").exists():
        print("relayout: already applied (src/batchtools/node exists, src/batchtools/jobs does not); nothing to do")
        return 0
    if (src / "node").exists():
        sys.exit("relayout: both src/batchtools/jobs and src/batchtools/node exist: resolve that by hand first")
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                           capture_output=True, text=True, check=True).stdout.strip()
    if dirty and not args.allow_dirty and not dry:
        sys.exit("relayout: the checkout has uncommitted changes; commit them first (or --allow-dirty)")

    moves, warnings = module_map(repo)
    for w in warnings:
        print(f"WARNING: {w}")
    old_modules = set(moves)
    for p in src.rglob("*.py"):
        if "__pycache__" not in p.parts:
            info = old_module_of(repo, p)
            if info:
                old_modules.add(info[0])

    print("moves:")
    for old, new in sorted(moves.items()):
        print(f"  {old} -> {new}")

    print("rewrites:")
    changed: dict[Path, str] = {}
    for path in text_files(repo):
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        new = rewrite_names(text, moves)
        if path.suffix == ".py":
            new = rewrite_imports(new, repo, path, moves, old_modules)
            info = old_module_of(repo, path)
            if info is not None and "__file__" in new:
                delta = depth_delta(info[0], new_module(info[0], moves))
                if delta:
                    new = rewrite_file_paths(new, delta, str(path.relative_to(repo)), warnings)
        if path == repo / "tests" / "test_architecture.py":
            new = update_architecture_test(new)
        for rel, old_text, new_text in SPECIAL_EDITS:
            if path == repo / rel:
                if old_text in new:
                    new = new.replace(old_text, new_text, 1)
                else:
                    warnings.append(f"{rel}: {old_text.strip()!r} not found: make that edit by hand")
        if new != text:
            changed[path] = new
            n = sum(1 for a, b in zip(text.splitlines(), new.splitlines()) if a != b)
            print(f"  {path.relative_to(repo)}: {n} line(s)")
    if dry:
        print("dry run: nothing changed")
        return 0
    for path, new in changed.items():
        path.write_text(new)

    print("git:")
    sh(repo, "git", "mv", "src/batchtools/jobs", "src/batchtools/node", dry=dry)
    for name, parent in JOBS_ELSEWHERE.items():
        dest = "src/" + parent.replace(".", "/") + f"/{name}.py"
        sh(repo, "git", "mv", f"src/batchtools/node/{name}.py", dest, dry=dry)
    for group, (doc, mods) in CORE_GROUPS.items():
        present = [m for m in mods if (src / "core" / f"{m}.py").exists()]
        if not present:
            continue
        (src / "core" / group).mkdir(exist_ok=True)
        init = src / "core" / group / "__init__.py"
        init.write_text(f'"""{doc}"""\n')
        sh(repo, "git", "add", str(init.relative_to(repo)), dry=dry)
        for m in present:
            sh(repo, "git", "mv", f"src/batchtools/core/{m}.py", f"src/batchtools/core/{group}/{m}.py", dry=dry)
    for stale in (src / "jobs", src / "node" / "__pycache__"):
        if stale.exists():
            subprocess.run(["rm", "-rf", str(stale)], check=True)

    # old paths stay importable (registries on disk name them)
    table = "".join(f"    {old!r}: {new!r},\n" for old, new in sorted(moves.items()))
    (src / "_moved.py").write_text(ALIAS_MODULE % table)
    init = src / "__init__.py"
    text = init.read_text()
    if "_install_moved" not in text:
        anchor, call = "from ._version import __version__\n", "maybe_enable_from_env()\n"
        if anchor not in text or call not in text:
            sys.exit("relayout: cannot find where to install the import hook in src/batchtools/__init__.py")
        text = text.replace(anchor, "from ._moved import install as _install_moved\n" + anchor, 1)
        text = text.replace(call, call + "_install_moved()  # old module paths (registries on disk name them)\n", 1)
        init.write_text(text)
    (repo / "tests" / "test_moved_modules.py").write_text(ALIAS_TEST)
    sh(repo, "git", "add", "src/batchtools/_moved.py", "tests/test_moved_modules.py", dry=dry)
    print(f"wrote src/batchtools/_moved.py ({len(moves)} old paths), tests/test_moved_modules.py, "
          "the hook in src/batchtools/__init__.py")

    # what still names an old path (outside the alias table)
    left = []
    pat = re.compile(rf"{PKG}\.jobs\b|{PKG}/jobs\b|" + "|".join(
        re.escape(o) + r"\b" for o in moves if o.startswith(f"{PKG}.core.")))
    for path in text_files(repo):
        if path.name in ("_moved.py", "test_moved_modules.py"):
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pat.search(line) and not any(line.strip() and line.strip() in new for _, _, new in SPECIAL_EDITS):
                left.append(f"  {path.relative_to(repo)}:{i}: {line.strip()}")
    if left:
        print("WARNING: these lines still name an old path:\n" + "\n".join(left))
    ruff = next((str(p) for p in (repo / ".venv" / "bin" / "ruff", Path(sys.executable).parent / "ruff")
                 if p.exists()), shutil.which("ruff"))
    if ruff:
        print("sorting the rewritten imports: ruff check --fix --select I")
        subprocess.run([ruff, "check", "--fix", "--select", "I", "-q", *roots_present(repo)], cwd=repo)
    else:
        print("WARNING: no ruff found: sort the rewritten imports with `ruff check --fix --select I`")
    sh(repo, "git", "add", "-u", dry=dry)
    for w in warnings:
        print(f"WARNING (repeated): {w}")
    print("done (staged, not committed): review with `git diff --cached -M`, then run ruff, "
          "tests/test_architecture.py and the suite")
    return 0


if __name__ == "__main__":
    sys.exit(main())
