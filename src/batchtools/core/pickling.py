"""Serialising the user's functions so that any node can run them.

Functions from the user's own code (``__main__``, scripts and modules next to them, notebooks:
anything outside site-packages and the standard library) are pickled *by value*, so a node need
not be able to import them. cloudpickle drops their source file names; :func:`code_files`
records them so the node can put them back for tracebacks.
"""

from __future__ import annotations

import os
import pickle
import sys
import sysconfig
from typing import Any

import cloudpickle

_PACKAGE = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


def user_module(obj: Any):
    """The module of ``obj`` if it is the user's own code (not installed, not stdlib, not batchtools)."""
    mod = sys.modules.get(getattr(obj, "__module__", None) or "")
    file = getattr(mod, "__file__", None)
    if mod is None or mod.__name__ == "__main__" or not file:
        return None
    path = os.path.realpath(file)
    if "site-packages" in path or "dist-packages" in path:
        return None
    roots = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}
    roots.add(_PACKAGE)
    if any(path.startswith(os.path.realpath(r) + os.sep) for r in roots):
        return None
    return mod


def code_files(*funs: Any) -> dict[str, str]:
    """module -> source file of functions that will be pickled by value."""
    out = {}
    for fun in funs:
        code = getattr(fun, "__code__", None)
        module = getattr(fun, "__module__", None)
        if code is not None and module and (module == "__main__" or user_module(fun) is not None):
            out[module] = code.co_filename
    return out


def dump_function(obj: Any, arg: str = "fun", also: tuple = ()) -> bytes:
    """cloudpickle ``obj``; the user's own modules of ``obj`` and of the objects in ``also``
    (e.g. the function inside a Problem) are pickled by value."""
    mods = {m.__name__: m for m in (user_module(o) for o in (obj, *also)) if m is not None}
    try:
        for mod in mods.values():
            cloudpickle.register_pickle_by_value(mod)
        return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        raise TypeError(
            f"{arg}: cannot be serialised with cloudpickle ({type(e).__name__}: {e}). "
            "Move objects like open files, locks or connections out of the function's closure."
        ) from e
    finally:
        for mod in mods.values():
            cloudpickle.unregister_pickle_by_value(mod)
