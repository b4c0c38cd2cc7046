"""Configuration files: ``batchtools.conf.py``, plain Python run with the settings in scope.

Search order (first hit wins): ``$BATCHTOOLS_CONF``, ``./batchtools.conf.py``,
``$XDG_CONFIG_HOME/batchtools/config.py``, ``~/.batchtools.conf.py``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .files import untrusted

log = logging.getLogger("batchtools")

SETTINGS = ("cluster_functions", "default_resources", "max_concurrent_jobs", "work_dir",
            "packages", "source", "load", "progress_interval")


def find_conf_file() -> str | None:
    """The first configuration file found, or None."""
    env = os.environ.get("BATCHTOOLS_CONF")
    if env:
        if not Path(env).is_file():
            raise FileNotFoundError(f"BATCHTOOLS_CONF points to {env!r}, which is not a file")
        return str(Path(env).absolute())
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


def apply_conf_file(reg, conf_file: str | None, names: dict | None = None) -> None:
    """Run ``conf_file`` with the registry's settings (and ``names``, e.g. the package as ``bt``)
    in scope and copy the settings back."""
    if conf_file is None:
        return
    path = Path(conf_file)
    if not path.is_file():
        raise FileNotFoundError(f"conf_file: {conf_file!r} does not exist; pass conf_file=None to use none")
    why = untrusted(path)
    if why:
        raise PermissionError(f"conf_file: {str(path)!r} {why}; a configuration file is run as code, so it must be "
                              "your own and writable only by you (chmod go-w)")
    scope = {name: getattr(reg, name) for name in SETTINGS}
    scope.update(names or {})
    scope.update({"reg": reg, "__file__": str(path)})
    exec(compile(path.read_text(), str(path), "exec"), scope)
    for name in SETTINGS:
        value = scope[name]
        if name in ("packages", "source", "load"):
            value = tuple(value)
        if name == "default_resources" and not isinstance(value, dict):
            raise TypeError(f"{path}: default_resources must be a dict, got {type(value).__name__}")
        if name == "progress_interval" and value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf")):
            raise ValueError(f"{path}: progress_interval must be a number of seconds > 0 (or None), got {value!r}")
        setattr(reg, name, value)
    reg.conf_file = str(path)
    log.debug("applied configuration file %s", path)
