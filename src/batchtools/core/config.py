"""Configuration files: ``batchtools.conf.py``, plain Python run with the settings in scope.

Search order (first hit wins): ``$BATCHTOOLS_CONF``, ``./batchtools.conf.py``,
``$XDG_CONFIG_HOME/batchtools/config.py``, ``~/.batchtools.conf.py``.

Every setting a file may assign is in :data:`KEYS` (R's ``batchtools.conf.R`` key, default, and
where it is applied); any other top-level name the file leaves behind is reported with a warning
naming the file and the name (names starting with ``_``, and modules, functions and classes the
file imports, are the file's own).
"""

from __future__ import annotations

import logging
import os
import types
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any

from .contract.backend import ClusterFunctions
from .persistence.files import untrusted, user_path

log = logging.getLogger("batchtools")


def _cluster_functions(value: Any) -> Any:
    if not isinstance(value, ClusterFunctions):
        raise TypeError(f"must be made by a constructor such as bt.make_cluster_functions_slurm(), "
                        f"got {type(value).__name__}")
    return value


def _dict(value: Any) -> dict:
    if not isinstance(value, dict):
        raise TypeError(f"must be a dict, got {type(value).__name__}")
    return dict(value)


def _count_or_none(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"must be a positive int or None, got {value!r}")
    return int(value)


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, (str, os.PathLike)):
        return (os.fspath(value),)
    try:
        return tuple(os.fspath(v) for v in value)
    except TypeError:
        raise TypeError(f"must be a list of strings, got {type(value).__name__}") from None


def _path(value: Any) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"must be a path, got {type(value).__name__}")
    return os.fspath(value)


def _path_or_none(value: Any) -> str | None:
    return None if value is None else str(Path(_path(value)).expanduser().absolute())


def _sleep(value: Any) -> Any:
    if value is None or callable(value):
        return value
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value < float("inf"):
        raise ValueError(f"must be None, a number of seconds >= 0 or a function of the iteration, got {value!r}")
    return float(value)


COMPRESS = {None: None, False: None, True: "gzip", "gzip": "gzip", "bzip2": "bz2", "bz2": "bz2", "xz": "xz"}


def _interval(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value < float("inf"):
        raise ValueError(f"must be a number of seconds > 0 (or None), got {value!r}")
    return float(value)


_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _size_or_none(value: Any) -> int | None:
    """A size in bytes: a positive int, or a string with a unit ("500M", "20G", "1.5 TB"); None: unbounded.

    >>> _size_or_none("20G") == 20 * 2**30, _size_or_none(1000), _size_or_none(None)
    (True, 1000, None)
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().upper().removesuffix("B").removesuffix("I").strip()
        unit = text[-1:] if text[-1:] in _UNITS else ""
        try:
            number = float(text[:len(text) - len(unit)])
        except ValueError:
            raise ValueError(f"must be a number of bytes or a size such as '500M' or '20G', got {value!r}") from None
        value = int(number * _UNITS[unit]) if number > 0 else 0
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"must be a positive number of bytes (or a size such as '20G'), or None, got {value!r}")
    return int(value)


def _cache_dir(value: Any) -> str | None:
    """The folder of a shared cache of results: None, or a folder that exists or can be made (a
    path whose nearest existing part is a folder this user can write to)."""
    if value is None:
        return None
    path = Path(_path(value)).expanduser().absolute()
    if "\n" in str(path):
        raise ValueError(f"must be a folder path without line breaks, got {str(path)!r}")
    for part in [path, *path.parents]:
        if part.exists():
            if not part.is_dir():
                raise NotADirectoryError(f"{str(part)!r} is a file, so {str(path)!r} cannot be the cache's folder")
            if not os.access(part, os.W_OK | os.X_OK):
                raise PermissionError(f"{str(part)!r} is not writable by this user, so the cache {str(path)!r} "
                                      "cannot be written; choose a folder you can write to")
            break
    return str(path)


def _compress(value: Any) -> str | None:
    try:
        return COMPRESS[value]
    except (KeyError, TypeError):
        raise ValueError(f"must be None (no compression), 'gzip', 'bzip2' or 'xz', got {value!r}") from None


@dataclass(frozen=True)
class Key:
    """One configuration setting: R's name for it, its default, where it is applied, and its check
    (returns the value to use, raises with what would be right)."""

    r_name: str
    default: Any
    applied: str
    check: Callable[[Any], Any]


KEYS: dict[str, Key] = {
    "cluster_functions": Key("cluster.functions", "Multicore with every CPU (or the backend saved with the "
                             "registry)", "the backend of every submission", _cluster_functions),
    "default_resources": Key("default.resources", {}, "resources of every submission, under those given to "
                             "submit_jobs()", _dict),
    "max_concurrent_jobs": Key("max.concurrent.jobs", None, "submit_jobs() keeps at most this many of the "
                               "registry's jobs on the system (the resource of that name wins)", _count_or_none),
    "temp_dir": Key("temp.dir", None, "folder of temporary registries (file_dir=None), created if missing; "
                    "None: the system's temporary folder", _path_or_none),
    "sleep": Key("sleep", None, "pause (seconds, or a function of the iteration) of submit_jobs(), "
                 "submit_workers() and wait_for_jobs() when they get sleep=None; None: the backend's backoff",
                 _sleep),
    "expire_after": Key("expire.after", None, "wait_for_jobs(expire_after=None): polls a job may be missing "
                        "from the system before it counts as expired; None: 3", _count_or_none),
    "compress": Key("compress", None, "compression of the result files the jobs write ('gzip', 'bzip2', "
                    "'xz'); any file is read whatever its compression", _compress),
    "progress_interval": Key("-", None, "seconds between the status lines that submitting, waiting and "
                             "reducing write when standard error is not a terminal; None: 30 s "
                             "(BATCHTOOLS_PROGRESS_INTERVAL wins)", _interval),
    "cache_dir": Key("-", None, "folder of the shared cache of results: submit_jobs() takes jobs whose "
                     "result it holds from it, finished jobs add theirs; saved with the registry; None: no cache",
                     _cache_dir),
    "cache_max_size": Key("-", None, "bound of the cache in bytes (or '20G'): the least recently used results "
                          "go first; None: unbounded", _size_or_none),
    "work_dir": Key("work.dir", "the current directory", "working directory of the jobs", _path),
    "packages": Key("packages", (), "modules imported on the node before the jobs run", _strings),
    "source": Key("source", (), "Python files run on the node before the jobs run", _strings),
    "load": Key("load", (), "pickles loaded into the jobs' globals on the node", _strings),
}
SETTINGS = tuple(KEYS)


def find_conf_file() -> str | None:
    """The first configuration file found, or None."""
    env = os.environ.get("BATCHTOOLS_CONF")
    if env:
        if not user_path(env).is_file():
            raise FileNotFoundError(f"BATCHTOOLS_CONF points to {env!r}, which is not a file")
        return str(user_path(env).absolute())
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    for candidate in (Path("batchtools.conf.py"), Path(xdg) / "batchtools" / "config.py",
                      Path.home() / ".batchtools.conf.py"):
        if candidate.is_file():
            why = untrusted(candidate)
            if why:  # a configuration file is code: never run one someone else could have written
                log.warning("configuration file %s %s; not running it", candidate.absolute(), why)
                continue
            return str(candidate.absolute())
    return None


CONF_MODULE = "batchtools_conf"


def _imported(value: Any) -> bool:
    """A module, or a function or class the file imported (not one it defines)."""
    if isinstance(value, types.ModuleType):
        return True
    module = getattr(value, "__module__", None) if isinstance(value, (type, types.FunctionType,
                                                                       types.BuiltinFunctionType)) else None
    return module is not None and module != CONF_MODULE


def apply_conf_file(reg, conf_file: str | None, names: dict | None = None) -> None:
    """Run ``conf_file`` with the registry's settings (and ``names``, e.g. the package as ``bt``)
    in scope and copy the settings back (each checked, see :data:`KEYS`); warn about any other
    name the file defines."""
    if conf_file is None:
        return
    path = user_path(conf_file)
    if not path.is_file():
        raise FileNotFoundError(f"conf_file: {conf_file!r} does not exist; pass conf_file=None to use none")
    why = untrusted(path)
    if why:
        raise PermissionError(f"conf_file: {str(path)!r} {why}; a configuration file is run as code, so it must be "
                              "your own and writable only by you (chmod go-w)")
    scope = {name: getattr(reg, name) for name in SETTINGS}
    scope.update(names or {})
    scope.update({"reg": reg, "__file__": str(path), "__name__": CONF_MODULE})
    given = set(scope)
    exec(compile(path.read_text(), str(path), "exec"), scope)
    values = {}
    for name, key in KEYS.items():
        try:
            values[name] = key.check(scope[name])
        except (TypeError, ValueError) as e:
            raise type(e)(f"{path}: {name}: {e}") from None
    for name, value in values.items():
        setattr(reg, name, value)
    unknown = sorted(n for n, v in scope.items() if n not in given and not n.startswith("_")
                     and not _imported(v))
    for name in unknown:
        log.warning("%s: unknown setting %r is ignored (known: %s; name helpers with a leading '_' to "
                    "keep them private)", path, name, ", ".join(SETTINGS))
    reg.conf_file = str(path)
    log.debug("applied configuration file %s", path)
