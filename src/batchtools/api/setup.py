"""Creating and opening registries: checks, configuration file, default backend, default registry.

The public ``make_registry``/``load_registry`` (in :mod:`batchtools.registry`) call these with
the registry classes that carry the verbs as methods.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..backends.multicore import make_cluster_functions_multicore
from ..core import registry as core
from ..core.checks import check_flag
from ..core.config import KEYS, apply_conf_file, find_conf_file
from ..core.contract.backend import ClusterFunctions, make_cluster_functions
from ..core.errors import RegistryNotFoundError
from ..core.jobstate.recovery import recover
from ..core.persistence.files import read_table, table_error, user_path, writable_by_others
from ..core.persistence.layout import Layout
from ..core.persistence.lease import Lease
from ..core.persistence.txn import committed_versions
from ..core.persistence.txn import recover as recover_unfinished_change
from ..core.registry import FORMAT_VERSION, RegistryState, check_format

log = logging.getLogger("batchtools")


def _check_strings(value, arg: str, files: bool = False) -> tuple[str, ...]:
    if isinstance(value, (str, os.PathLike)):
        value = [value]
    try:
        return tuple(os.fspath(v) for v in value)
    except TypeError:
        raise TypeError(f"{arg}: expected a list of {'file paths' if files else 'module names'}, "
                        f"got {type(value).__name__}") from None


def _check_files(items: tuple[str, ...], arg: str, work_dir: Path) -> tuple[str, ...]:
    """``source`` / ``load`` files as absolute paths: ``~`` expanded, a relative path taken from the
    work dir (as R does); a missing file is refused."""
    paths = [work_dir / user_path(p) for p in items]  # an absolute path stays as it is
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{arg}: file(s) not found: {missing} (a relative path is taken from the "
                                f"work dir {str(work_dir)!r})")
    return tuple(str(p) for p in paths)


def _check_setting(name: str, value: Any) -> Any:
    """A setting given to ``make_registry`` (``cache_dir``, ...), checked as the configuration's."""
    try:
        return KEYS[name].check(value)
    except (TypeError, ValueError, OSError) as e:
        raise type(e)(f"{name}: {e}") from None


def _check_seed(seed) -> int:
    if seed is None:
        return random.randint(1, 100_000)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: must be an int (or None for a random one), got {type(seed).__name__}")
    return seed


def check_file_dir(file_dir, arg: str = "file_dir") -> Path:
    """A registry folder path: a str or os.PathLike without control characters, not inside a file."""
    if isinstance(file_dir, bytes) or not isinstance(file_dir, (str, os.PathLike)):
        raise TypeError(f"{arg}: must be a folder path (str or pathlib.Path), got {type(file_dir).__name__}"
                        f" {file_dir!r}")
    text = os.fspath(file_dir)
    if not text:
        raise ValueError(f"{arg}: must not be empty; e.g. file_dir='registry'")
    bad = sorted({c for c in text if ord(c) < 32 or ord(c) == 127})
    if bad:
        raise ValueError(f"{arg}: {text!r} contains the control character(s) {bad}, which cannot be passed to "
                         "job processes and scheduler scripts; choose a folder name without them")
    path = user_path(text)
    for parent in [path, *path.absolute().parents]:
        if parent.exists() and not parent.is_dir():
            raise NotADirectoryError(f"{arg}: {str(parent)!r} is a file, so {text!r} cannot be a folder; "
                                     "choose another path")
    return path


def _check_new_dir(file_dir) -> Path:
    path = check_file_dir(file_dir)
    if path.exists():
        if Layout(path).meta.exists():
            raise FileExistsError(
                f"file_dir: {str(path)!r} already holds a registry. Open it with "
                f"load_registry({str(path)!r}, writeable=True), pass exist_ok=True to open it when it is of the same "
                "kind and seed (a script that runs again), or remove it with remove_registry()."
            )
        if not path.is_dir() or any(path.iterdir()):
            raise FileExistsError(
                f"file_dir: {str(path)!r} exists and is not an empty folder; "
                "choose a new path (the registry creates the folder itself)."
            )
    return path


def _conf_names() -> dict[str, Any]:
    """Names a configuration file sees besides the settings: the package as ``bt``."""
    package = sys.modules[__name__.split(".")[0]]  # loaded: this module is part of it
    return {"bt": package, "batchtools": package}


def _unavailable(spec: dict, error: Exception) -> ClusterFunctions:
    """Stands in for saved cluster functions that cannot be rebuilt here: asking it anything
    fails with the reason, instead of reporting the registry's jobs as expired."""
    name = spec["constructor"].rpartition(":")[2].replace("make_cluster_functions_", "").capitalize()
    why = (f"the registry's cluster functions ({spec['constructor']}) cannot be rebuilt here: "
           f"{type(error).__name__}: {error}. Set reg.cluster_functions = ..., or name them in a configuration file")

    def refuse(reg, *args):
        raise RuntimeError(why)

    return make_cluster_functions(f"{name} (unavailable)", refuse, kill_job=refuse, list_jobs=refuse, info=why)


def restore_cluster_functions(spec: dict | None) -> ClusterFunctions | None:
    """Rebuild the cluster functions saved with a registry (constructor and arguments)."""
    if not spec:
        return None
    module, _, name = spec["constructor"].partition(":")
    if not module.startswith("batchtools."):
        log.warning("the registry's cluster functions came from %s, which is not rebuilt on load; "
                    "set reg.cluster_functions or use a configuration file", spec["constructor"])
        return None
    try:
        return getattr(importlib.import_module(module), name)(**spec["kwargs"])
    except Exception as e:
        log.warning("could not rebuild the registry's cluster functions %s: %s", spec["constructor"], e)
        return _unavailable(spec, e)


def _finish_setup(reg: RegistryState, work_dir, conf_file, packages, source, load,
                  saved: ClusterFunctions | None = None) -> None:
    reg.cluster_functions = saved if saved is not None else make_cluster_functions_multicore()
    reg.packages = _check_strings(packages, "packages")
    reg.source = _check_strings(source, "source", files=True)
    reg.load = _check_strings(load, "load", files=True)
    if conf_file is ...:
        conf_file = find_conf_file()
    cache = (reg.cache_dir, reg.cache_max_size)
    apply_conf_file(reg, conf_file, _conf_names())
    if cache[0] is not None and (reg.cache_dir, reg.cache_max_size) != cache:
        log.warning("configuration file %s sets cache_dir=%r, cache_max_size=%r for this session, overriding %r, %r "
                    "saved with the registry", conf_file, reg.cache_dir, reg.cache_max_size, *cache)
    if saved is not None and reg.cluster_functions is not saved:
        log.warning("configuration file %s sets the cluster functions %r, overriding %r saved with the registry",
                    conf_file, reg.cluster_functions, saved)
    if work_dir is not None:
        reg.work_dir = os.fspath(work_dir)
    wd = user_path(reg.work_dir)
    if not wd.is_dir():
        raise FileNotFoundError(f"work_dir: {reg.work_dir!r} is not an existing directory")
    reg.work_dir = str(wd.absolute())
    reg.source = _check_files(reg.source, "source", wd.absolute())
    reg.load = _check_files(reg.load, "load", wd.absolute())


def _registry_files(layout: Layout) -> list[Path]:
    """The files of a registry in ``layout``'s folder besides its settings (whose loss is then an
    error naming them, not "no registry here")."""
    return [p for p in (Path(f"{layout.meta}.prev"), layout.table("status"), layout.table("defs")) if p.exists()]


def read_settings(layout: Layout) -> dict:
    """The registry's settings (``registry.pkl``) as last committed, checked: a missing, damaged or
    foreign file, or a format this version cannot read, is an error naming the file."""
    path = committed_versions(layout.file_dir).get(str(layout.meta), layout.meta) or layout.meta
    try:
        try:
            meta = read_table(path, "settings")
        except FileNotFoundError:
            meta = read_table(layout.meta, "settings")
    except FileNotFoundError:
        raise table_error(layout.meta, "settings", "is missing (the folder holds a registry's other files: "
                          f"{', '.join(p.name for p in _registry_files(layout))})") from None
    check_format(meta, layout.meta)
    return meta


KIND_MAKERS = {"map": "make_registry", "experiment": "make_experiment_registry"}


def _a(kind: str) -> str:
    return f"{'an' if kind[:1] in 'aeiou' else 'a'} {kind}"


def _check_existing(cls: type[RegistryState], path: Path, seed, packages, source, load, work_dir=None) -> None:
    """``make_*registry(exist_ok=True)`` on a folder holding a registry: it must be of the kind and
    seed asked for (and node set-up), else the call is refused naming the difference; nothing is written."""
    meta = read_settings(Layout(path))
    kind = meta.get("kind", "map")
    if kind != cls.kind:
        raise FileExistsError(
            f"file_dir: {str(path)!r} holds {_a(kind)} registry (made by {KIND_MAKERS.get(kind, kind)}), not "
            f"{_a(cls.kind)} registry; exist_ok=True opens only a registry of "
            f"the same kind. Use {KIND_MAKERS.get(kind, kind)}(...) or load_registry({str(path)!r}, writeable=True), "
            "or choose another file_dir")
    if seed is not None and seed != meta.get("seed"):
        raise ValueError(
            f"seed: the registry in {str(path)!r} has seed={meta.get('seed')}, this call asks seed={seed}; its jobs' "
            f"seeds cannot change. Pass seed={meta.get('seed')} (or seed=None), or choose another file_dir")
    # source and load files are stored as absolute paths, a relative one taken from the work dir
    wd = user_path(work_dir if work_dir is not None else meta.get("work_dir", ".")).absolute()
    asked = {"packages": _check_strings(packages, "packages"),
             **{key: tuple(str(wd / user_path(p)) for p in _check_strings(value, key, files=True))
                for key, value in (("source", source), ("load", load))}}
    for key, value in asked.items():
        stored = tuple(meta.get(key, ()))
        if value != stored:
            raise ValueError(
                f"{key}: the registry in {str(path)!r} has {key}={stored!r}, this call asks {key}={value!r}; "
                f"pass the same {key} (or choose another file_dir)")


def create_registry(cls: type[RegistryState], file_dir, work_dir=None, conf_file: Any = ..., packages=(), source=(),
                    load=(), seed: int | None = None, make_default: bool = True, exist_ok: bool = False,
                    classes: dict[str, type[RegistryState]] | None = None, cache_dir: Any = ...,
                    cache_max_size: Any = ...) -> RegistryState:
    """A new registry of class ``cls`` in ``file_dir`` (None: a temporary one); see ``make_registry``.
    ``exist_ok``: a registry already in ``file_dir`` of the same kind (and seed, packages, source,
    load) is opened writeable instead, as ``classes[kind]``. ``cache_dir``, ``cache_max_size``:
    ``...`` (not given) leaves them to the configuration file (or, opened, to the registry)."""
    check_flag("exist_ok", exist_ok)
    cache = {name: _check_setting(name, value) for name, value in (("cache_dir", cache_dir),
                                                                      ("cache_max_size", cache_max_size))
             if value is not ...}
    if exist_ok and file_dir is not None and Layout(check_file_dir(file_dir)).meta.is_file():
        if seed is not None:
            _check_seed(seed)
        _check_existing(cls, Path(file_dir), seed, packages, source, load, work_dir)
        reg = open_registry(classes or {cls.kind: cls}, file_dir, work_dir, conf_file, make_default, writeable=True)
        for name, value in cache.items():
            setattr(reg, name, value)
        log.info("Opened the existing registry in '%s' (exist_ok=True)", reg.file_dir)
        return reg
    seed = _check_seed(seed)
    temporary = file_dir is None
    if not temporary:
        file_dir = _check_new_dir(file_dir)
    existed = not temporary and Path(file_dir).exists()
    # a temporary registry's folder is made once the configuration file said where (its temp_dir)
    reg = cls(Path(tempfile.gettempdir()) / "batchtools-registry-unplaced" if temporary else file_dir)
    reg.seed = seed
    try:
        _finish_setup(reg, work_dir, conf_file, packages, source, load)
        for name, value in cache.items():  # given to the call: over the configuration file's
            setattr(reg, name, value)
        if temporary:
            if reg.temp_dir is not None:
                Path(reg.temp_dir).mkdir(parents=True, exist_ok=True)
            file_dir = tempfile.mkdtemp(prefix="batchtools-registry-", dir=reg.temp_dir)
            reg.relocate(file_dir)
        reg.layout.make_dirs()
        reg.take_lease()
        reg.save(tuple(reg.tables))
    except BaseException:
        if reg.lease is not None:
            reg.lease.release()
        if (temporary and file_dir is not None) or (not temporary and not existed):
            shutil.rmtree(file_dir, ignore_errors=True)
        raise
    reg.on_disk = True
    if temporary:
        reg.temporary = True
        atexit.register(shutil.rmtree, str(reg.file_dir), True)
    if make_default:
        core.set_default_registry(reg)
    log.info("Created registry in '%s' using cluster functions '%s'", reg.file_dir, reg.cluster_functions.name)
    return reg


def open_registry(classes: dict[str, type[RegistryState]], file_dir: str | os.PathLike, work_dir: str | None = None,
                  conf_file: Any = ..., make_default: bool = True, writeable: bool = False,
                  force: bool = False) -> RegistryState:
    """Open the registry in ``file_dir`` as ``classes[kind]``; see ``load_registry``."""
    if not isinstance(writeable, bool):
        raise TypeError("writeable: must be True or False")
    if not isinstance(force, bool):
        raise TypeError("force: must be True or False")
    check_file_dir(file_dir)
    if force and not writeable:
        raise ValueError("force: takes the writeable lease, so it needs writeable=True")
    layout = Layout(file_dir)
    if not layout.file_dir.is_dir():
        raise RegistryNotFoundError(f"file_dir: {str(file_dir)!r} does not exist; create a registry with make_registry()")
    if not layout.meta.is_file() and not _registry_files(layout):
        raise RegistryNotFoundError(f"file_dir: {str(file_dir)!r} holds no registry (no registry.pkl)")
    exposed = writable_by_others(layout.file_dir)
    if exposed and os.environ.get("BATCHTOOLS_ALLOW_WORLD_WRITABLE") != "1":
        shown = ", ".join(exposed[:5]) + (" ..." if len(exposed) > 5 else "")
        raise PermissionError(
            f"file_dir: {len(exposed)} entr{'y' if len(exposed) == 1 else 'ies'} of the registry can be changed by any "
            f"user ({shown}). A registry holds pickles, which run code when read, so it is as trusted as code: "
            f"fix it with `chmod -R o-w {layout.file_dir}`, or set BATCHTOOLS_ALLOW_WORLD_WRITABLE=1 to open it anyway")
    meta = read_settings(layout)  # a format this version cannot read is refused before anything is written
    lease = None
    if writeable:  # the lease first: from here on no other session changes anything
        lease = Lease(layout.file_dir)
        lease.acquire(force=force)
    try:
        if writeable and recover_unfinished_change(layout.file_dir):
            meta = read_settings(layout)
        reg = classes[meta.get("kind", "map")](layout.file_dir, writeable=writeable)
        reg.lease = lease
        reg.set_meta(meta)
        reg.read_tables()
        stored_work_dir = reg.work_dir
        if not Path(stored_work_dir).is_dir():
            reg.work_dir = os.getcwd()
        _finish_setup(reg, work_dir, conf_file, reg.packages, [], [],
                      saved=restore_cluster_functions(meta.get("cluster_functions")))
        reg.source, reg.load = meta.get("source", ()), meta.get("load", ())
        for arg in ("source", "load"):  # R warns "Failed to source"; the registry stays usable
            missing = [p for p in getattr(reg, arg) if not os.path.isfile(p)]
            if missing:
                log.warning("%s: the registry's file(s) %s do not exist (any more); its jobs fail until they are "
                            "back", arg, missing)
        if writeable:
            reg.layout.make_dirs()
            if reg.format_version < FORMAT_VERSION:
                reg.save((), meta=True)  # upgraded in place: what the current format has and the older may lack
        recover(reg)
        reg.sync()
    except BaseException:
        if lease is not None:
            lease.release()
        raise
    reg.on_disk = True
    if make_default:
        core.set_default_registry(reg)
    return reg


