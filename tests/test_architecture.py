"""The package's shape, checked from its own source: layers, import circles, registry methods.

Reads every module with ``ast`` (function-local imports and ``import_module("batchtools...")``
calls included), so a dependency cannot hide behind a lazy import.
"""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import batchtools as bt

SRC = Path(bt.__file__).resolve().parent
PKG = "batchtools"


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _resolve(module: str, level: int, name: str | None, is_package: bool) -> str:
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def import_graph() -> dict[str, set[str]]:
    """module -> the batchtools modules it imports (anywhere in its body)."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in modules.items():
        tree = ast.parse(path.read_text())
        is_package = path.name == "__init__.py"
        deps: set[str] = set()
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, node.level, node.module, is_package)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                    "import_module", "__import__"):
                targets = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            for t in targets:
                if t == PKG or t.startswith(PKG + "."):
                    while t not in modules and "." in t:
                        t = t.rsplit(".", 1)[0]
                    if t != mod:
                        deps.add(t)
        graph[mod] = deps
    return graph


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else (parts[1] if len(parts) == 2 else "")


def cycles(graph: dict[str, set[str]], within: str) -> list[list[str]]:
    """Import circles among the modules of package ``within`` (Tarjan's strongly connected components)."""
    nodes = [m for m in graph if m.startswith(within + ".")]
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in nodes:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in nodes:
        if v not in index:
            visit(v)
    return out


# what each layer may import besides itself (the version module is a leaf anyone may read)
ALLOWED = {
    "core": {"_version"},
    "node": {"core", "_version"},
    "backends": {"core", "node", "_version"},
    "api": {"core", "node", "backends", "_version"},
}


def test_layers_only_import_downwards():
    graph = import_graph()
    bad = []
    for mod, deps in graph.items():
        own = layer(mod)
        if own not in ALLOWED:
            continue
        for d in deps:
            if layer(d) != own and layer(d) not in ALLOWED[own]:
                bad.append(f"{mod} -> {d}")
    assert not bad, "imports against the layering (core < node < backends < api < face):\n" + "\n".join(bad)


def test_no_import_circles():
    graph = import_graph()
    found = {pkg: cycles(graph, f"{PKG}.{pkg}") for pkg in ("core", "node", "backends", "api")}
    assert not any(found.values()), f"import circles: {found}"



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
    assert not found, f"circles between core's groups (move the named module to a higher group or to core/ top): {found}"

def test_backends_do_not_import_each_other():
    graph = import_graph()
    shared = {f"{PKG}.backends.commands", f"{PKG}.backends.templates", f"{PKG}.backends.bsub",
              f"{PKG}.backends.forkclient"}  # the master half of Multicore's fork server
    bad = [f"{m} -> {d}" for m, deps in graph.items() if layer(m) == "backends"
           for d in deps if layer(d) == "backends" and d not in shared]
    assert not bad, bad


def test_node_code_does_not_need_pandas():
    """What a node imports (the entry point's closure) must not pull in pandas."""
    graph = import_graph()
    todo, seen = [f"{PKG}.worker"], set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(graph[m])
    heavy = [m for m in seen if "import pandas" in (SRC.parent / (m.replace(".", "/") + ".py")).read_text()
             if (SRC.parent / (m.replace(".", "/") + ".py")).exists()]
    assert not heavy, f"node modules importing pandas: {heavy}"


def test_every_verb_taking_reg_is_a_registry_method():
    missing, wrong = [], []
    for name in bt.__all__:
        obj = getattr(bt, name)
        if not inspect.isfunction(obj):
            continue
        param = inspect.signature(obj).parameters.get("reg")
        if param is None or param.default is not None:  # backend helpers take a registry, not reg=None
            continue
        if name in ("set_default_registry", "assert_registry"):
            continue
        cls = bt.ExperimentRegistry if obj.__module__.endswith((".experiments", ".benchmark")) else bt.Registry
        method = getattr(cls, name, None)
        if method is None:
            missing.append(name)
        elif method.__wrapped__ is not obj:
            wrong.append(name)
    assert not missing and not wrong, f"missing methods: {missing}; bound to something else: {wrong}"


def test_methods_exist_without_the_package_face(tmp_path):
    """Binding is explicit on the class: no lookup through ``bt.<name>`` is needed first."""
    from batchtools.registry import make_registry

    reg = make_registry(file_dir=tmp_path / "r", conf_file=None, make_default=False)
    assert callable(reg.submit_jobs) and reg.submit_jobs.__doc__.startswith("Submit jobs")


def test_a_node_starts_without_numpy():
    """A node imports NumPy only when a job uses it (it costs a forked Multicore chunk milliseconds):
    the modules a node loads to run a collection do not import it."""
    code = ("import sys; import batchtools.worker, batchtools.node.node, batchtools.node.execute, "
            "batchtools.core.results.store, batchtools.core.results.packs, batchtools.node.forkserver; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'pandas')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"a node imports {out}"
