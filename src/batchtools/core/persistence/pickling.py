"""Serialising the user's functions and objects so that any node can run them.

Everything from the user's own code (``__main__``, scripts and modules next to them, notebooks:
anything outside site-packages and the standard library) is pickled *by value*, wherever it sits
in the object graph: a function, a problem's function, an estimator class inside a pipeline, a
splitter or scorer class, a module referenced by a function's globals. A node therefore never
needs to import the user's modules. cloudpickle drops their source file names; the files are
recorded so the node can put them back for tracebacks.

Pickling also yields the installed modules the payload will import when it is loaded (classes
and functions pickled by reference, ``import`` statements inside the functions): processes that
are kept warm between jobs (Multicore's fork server) import them once instead of once per job.
"""

from __future__ import annotations

import contextlib
import dis
import functools
import os
import pickle
import sys
import sysconfig
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

_PACKAGE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
_STDLIB = tuple(os.path.realpath(sysconfig.get_paths()[k]) + os.sep for k in ("stdlib", "platstdlib"))


def installed_path(path: str) -> bool:
    """True if the file ``path`` belongs to an installed package or the standard library."""
    path = os.path.realpath(path)
    return "site-packages" in path or "dist-packages" in path or path.startswith(_STDLIB)


@functools.lru_cache(maxsize=4096)
def _user_file(file: str) -> bool:
    path = os.path.realpath(file)
    return not installed_path(path) and not path.startswith(_PACKAGE + os.sep)


def _is_user_module(mod: types.ModuleType | None) -> bool:
    if mod is None or mod.__name__ == "__main__":
        return False
    file = getattr(mod, "__file__", None)
    return isinstance(file, str) and _user_file(file)


def user_module(obj: Any):
    """The module of ``obj`` if it is the user's own code (not installed, not stdlib, not batchtools)."""
    if isinstance(obj, types.ModuleType):
        return obj if _is_user_module(obj) else None
    name = getattr(obj, "__module__", None)
    mod = sys.modules.get(name) if isinstance(name, str) else None
    return mod if _is_user_module(mod) else None


def code_files(*funs: Any) -> dict[str, str]:
    """module -> source file of functions that will be pickled by value."""
    out = {}
    for fun in funs:
        code = getattr(fun, "__code__", None)
        module = getattr(fun, "__module__", None)
        if code is not None and module and (module == "__main__" or user_module(fun) is not None):
            out[module] = code.co_filename
    return out


def imported_names(code: types.CodeType) -> set[str]:
    """Absolute module names of the ``import`` statements in ``code`` (nested functions included).

    >>> def f():
    ...     import json
    ...     from os import path
    ...     return json, path
    >>> sorted(imported_names(f.__code__))
    ['json', 'os']
    """
    out: set[str] = set()
    todo = [code]
    while todo:
        co = todo.pop()
        consts: list[Any] = []  # the constants loaded right before an IMPORT_NAME: level, fromlist
        for ins in dis.get_instructions(co):
            if ins.opname == "LOAD_CONST":
                consts.append(ins.argval)
                continue
            if ins.opname == "IMPORT_NAME" and len(consts) >= 2 and consts[-2] == 0 and ins.argval:
                out.add(ins.argval)  # level 0: an absolute import
            consts.clear()
        todo.extend(c for c in co.co_consts if isinstance(c, types.CodeType))
    return out


class _Discard:
    def write(self, data) -> int:
        return memoryview(data).nbytes


class _Scanner(cloudpickle.Pickler):
    """A dry run of cloudpickle that notes the user's modules and the installed modules it meets."""

    def __init__(self, user: dict[str, types.ModuleType], needed: set[str]):
        super().__init__(_Discard(), protocol=pickle.HIGHEST_PROTOCOL)
        self.user = user
        self.needed = needed
        self.main = False

    def reducer_override(self, obj):
        if isinstance(obj, types.ModuleType):
            if _is_user_module(obj):
                self.user[obj.__name__] = obj
            elif obj.__name__ != "__main__":
                self.needed.add(obj.__name__)
            return super().reducer_override(obj)
        for o in (obj, type(obj)):
            mod = user_module(o)
            if mod is not None:
                self.user[mod.__name__] = mod
            else:
                name = getattr(o, "__module__", None)
                if name == "__main__":
                    self.main = True
                elif isinstance(name, str) and name != "builtins" and name in sys.modules:
                    self.needed.add(name)
        if isinstance(obj, types.FunctionType):
            self.needed.update(imported_names(obj.__code__))
        return super().reducer_override(obj)


@dataclass
class Pickled:
    """A payload and what it needs: ``modules`` (installed modules its loading or its functions
    import: worth importing once in a warm process) and ``files`` (user module -> source file)."""

    payload: bytes
    modules: set[str] = field(default_factory=set)
    files: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def user_code_by_value(obj: Any, also: tuple = ()) -> Iterator[_Scanner]:
    """Within the block, every module of the user's own code that ``obj`` refers to is registered
    with cloudpickle to be pickled by value; yields the last scan (``user``: those modules,
    ``needed``: the installed modules ``obj`` refers to, ``main``: whether it refers to ``__main__``).

    The object graph is scanned (a dry run of the pickler) for objects, classes and modules
    from the user's modules; those modules are registered by value and the scan repeated until
    no new one turns up (a function pickled by value brings its globals along). ``also``: more
    objects whose modules count (kept for callers that pass the function inside a wrapper).
    """
    user: dict[str, types.ModuleType] = {}
    needed: set[str] = set()
    for o in also:
        mod = user_module(o)
        if mod is not None:
            user[mod.__name__] = mod
    registered: list[types.ModuleType] = []
    try:
        for _ in range(10):
            for name, mod in user.items():
                if mod not in registered and name not in cloudpickle.list_registry_pickle_by_value():
                    cloudpickle.register_pickle_by_value(mod)
                    registered.append(mod)
            before = set(user)
            needed.clear()
            scan = _Scanner(user, needed)
            scan.dump(obj)
            if set(user) == before:
                break
        yield scan
    finally:
        for mod in registered:
            cloudpickle.unregister_pickle_by_value(mod)


def pickle_by_value(obj: Any, arg: str = "fun", also: tuple = ()) -> Pickled:
    """cloudpickle ``obj`` with every module of the user's own code it refers to pickled by value
    (see :func:`user_code_by_value`)."""
    try:
        with user_code_by_value(obj, also) as scan:
            payload = cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        raise TypeError(
            f"{arg}: cannot be serialised with cloudpickle ({type(e).__name__}: {e}). "
            "Move objects like open files, locks or connections out of the function's closure."
        ) from e
    user = scan.user
    files = {name: mod.__file__ for name, mod in user.items()}
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if scan.main and isinstance(main_file, str):
        files["__main__"] = os.path.abspath(main_file)
    files.update(code_files(obj, *also))
    modules = {m for m in scan.needed if m not in user and m != "__main__"}
    return Pickled(payload, modules, files)


def dump_function(obj: Any, arg: str = "fun", also: tuple = ()) -> bytes:
    """cloudpickle ``obj``; the user's own modules anywhere in it are pickled by value
    (see :func:`pickle_by_value`)."""
    return pickle_by_value(obj, arg, also).payload


# ------------------------------------------------------------- values stored in the registry's tables
_PLAIN = frozenset({str, int, float, bool, complex, bytes, type(None)})


def _plain(t: type) -> bool:
    """Values of type ``t`` always read back from their pickle (builtin scalars, NumPy scalars)."""
    if t in _PLAIN:
        return True
    np = sys.modules.get("numpy")
    return np is not None and issubclass(t, np.generic) and t is not np.object_


class _MainFinder(pickle.Pickler):
    """Notes the first class or function of ``__main__`` a value pickles by reference."""

    def __init__(self, fh):
        super().__init__(fh, protocol=pickle.HIGHEST_PROTOCOL)
        self.found: str | None = None

    def persistent_id(self, obj):
        if self.found is None and isinstance(obj, (type, types.FunctionType)) \
                and getattr(obj, "__module__", None) == "__main__":
            self.found = f"__main__.{getattr(obj, '__qualname__', obj)}"
        return None


def _main_reference(value: Any) -> str | None:
    import io

    finder = _MainFinder(io.BytesIO())
    finder.dump(value)
    return finder.found


def check_payload(payload: bytes, arg: str) -> None:
    """Refuse a pickled ``arg`` that cannot be read back (TypeError saying so), before it is stored."""
    try:
        pickle.loads(payload)
    except Exception as e:
        raise TypeError(f"{arg}: can be pickled but not read back ({type(e).__name__}: {e}), so no job could "
                        "run; pass values for which pickle.loads(pickle.dumps(value)) works (fix the class's "
                        "__reduce__ or __setstate__)") from None


def check_stored_values(values: Any, arg: str, item: Callable[[int], str]) -> None:
    """Refuse values a registry table would store but no session could read back: a TypeError
    naming the argument ``arg``, the first such value (``item(i)``, e.g. "the value of job 3")
    and what to do.

    Tables are pickled with plain pickle, so a value must survive ``pickle.loads(pickle.dumps(v))``
    here and must not refer to the user's script (``__main__``), which other sessions do not
    have. Builtin and NumPy scalars are taken as they are: mapping over a million numbers or
    strings costs one look at their types.
    """
    if all(_plain(t) for t in set(map(type, values))):
        return
    read_back = False
    try:
        blob = pickle.dumps(values, protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(blob)
        if b"__main__" not in blob:
            return
        read_back = True  # only a reference to the script is suspected
    except Exception:
        pass
    for i, v in enumerate(values):  # find the culprit (rarely run: something is wrong)
        what = f"{arg}: {item(i)} ({type(v).__name__})"
        try:
            blob = pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            raise TypeError(f"{what} cannot be stored ({type(e).__name__}: {e}); pass values that can be pickled "
                            "(numbers, strings, lists, arrays, ...), not locks or open files") from None
        try:
            pickle.loads(blob)
        except Exception as e:
            raise TypeError(f"{what} can be pickled but not read back ({type(e).__name__}: {e}), so the registry "
                            "could not be opened again; pass a value for which pickle.loads(pickle.dumps(value)) "
                            "works (fix its class's __reduce__ or __setstate__), or plain values it is built from") \
                from None
        main = _main_reference(v) if b"__main__" in blob else None
        if main is not None:
            raise TypeError(f"{what} refers to {main}, defined in your script or notebook, which another session "
                            "cannot import, so the registry could not be opened again; define it in a module "
                            "(a .py file next to the script), or pass plain values it is built from")
    if not read_back:
        raise TypeError(f"{arg}: its values cannot be stored together (each alone can); pass plain values "
                        "(numbers, strings, lists, arrays, ...)")
