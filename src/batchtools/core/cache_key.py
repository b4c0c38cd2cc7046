"""A job's key: a hash of everything that determines its result, made of named parts.

The parts of a job's key: its code (``function`` of a ``batch_map`` registry; ``problem`` and
``algorithm`` of an experiment, ``task`` and ``learner`` of an ML benchmark, as the node loads
them from the registry), each parameter (``par:x``; experiments ``prob_par:x``, ``algo_par:x``
and ``repl``), the ``seed`` the job runs with, each of ``more_args`` (``more_args:x``) and of the
exports (``export:x``), the Python version and the version of each package the registry names or
the job's code refers to (``package:numpy``). Each part is hashed on its own, so that a job that
misses the cache can be told which part differs from the nearest cached job (:mod:`.cache`).

Code is hashed by value: the job's objects are pickled with cloudpickle, with every module of the
user's own code pickled by value (:func:`~.pickling.user_code_by_value`, as for the node), so a
changed helper function or a changed global the code refers to changes the key (content
addressing that hashes only a function's own source misses these: insitro/redun#99). What does
not decide a result is left out, so that equal jobs have equal keys in any registry and process:
source file names and line numbers, cloudpickle's per-process class ids, the order Python's hash
randomisation gives a set, whether two equal strings or tuples happen to be one object (interning,
which pickle writes as a reference); a problem's per-definition ``version``.

>>> a = token(lambda x: x + 1); b = token(lambda x: x + 2)
>>> a == token(lambda x: x + 1), a == b
(True, False)
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import os
import pickle
import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cloudpickle
from cloudpickle import cloudpickle as _cp

from .jobstate.kinds import BENCHMARK_WORDS
from .persistence.files import read_pickle
from .persistence.layout import is_data_file
from .persistence.pickling import user_code_by_value
from .results.store import ResultStore

DIGEST_SIZE = 16
_SCALARS = frozenset({type(None), bool, int, float, complex, str, bytes})
# the serialiser and batchtools itself: every payload refers to them, none computes with them
_TOOLING = frozenset({"cloudpickle", "batchtools", "pybatchtools"})


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=DIGEST_SIZE).hexdigest()


def _code(*fields):  # what a code object pickles to in a key (never called: keys are not unpickled)
    raise NotImplementedError


def _module(*fields):
    raise NotImplementedError


class _KeyPickler(cloudpickle.Pickler):
    """cloudpickle, with what differs between equal objects in two processes left out."""

    def persistent_id(self, obj):
        # asked for every object before it is written (the object returned is written as it is)
        t = type(obj)
        if t is str or t is bytes:
            # a copy: whether two equal strings were one object (interning) decides whether
            # pickle writes the second as a reference to the first, and that differs between
            # processes; a copy is one object of its own (or, for one character, a singleton)
            return obj[:1] + obj[1:] if len(obj) > 1 else obj
        if t is tuple and obj:
            return tuple(list(obj))  # the same for tuples (shared constants); elements come back here
        if t is set or t is frozenset:
            # by its elements' hashes in order, not in hash-randomised iteration order (pickle
            # writes exact sets before it asks reducer_override)
            return [t.__name__, *sorted(token(e) for e in obj)]  # a list: no tuple's or string's pid
        return None

    def reducer_override(self, obj):
        if isinstance(obj, types.CodeType):
            # not the file name, line numbers or position tables: moving code does not change it
            consts = tuple(obj.co_consts)
            return _code, (obj.co_name, getattr(obj, "co_qualname", ""), obj.co_argcount,
                           obj.co_posonlyargcount, obj.co_kwonlyargcount, obj.co_flags, obj.co_code, consts,
                           obj.co_names, obj.co_varnames, obj.co_freevars, obj.co_cellvars,
                           getattr(obj, "co_exceptiontable", b""))
        if isinstance(obj, types.ModuleType) and not _cp._should_pickle_by_reference(obj):
            state = {k: v for k, v in vars(obj).items() if not k.startswith("__")}
            return _module, (obj.__name__, state)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            # the fields that take part in equality (a Problem's version does not)
            return type(obj), tuple(getattr(obj, f.name) for f in dataclasses.fields(obj) if f.compare)
        out = super().reducer_override(obj)
        if out is NotImplemented or not isinstance(out, tuple):
            return out
        if out[0] is _cp._make_function:  # a function by value: not its module's file
            code, base_globals, *rest = out[1]
            base_globals = {k: v for k, v in base_globals.items() if k not in ("__file__", "__path__")}
            return (out[0], (code, base_globals, *rest), *out[2:])
        tracker = _cp._DYNAMIC_CLASS_TRACKER_BY_CLASS.get(obj) if isinstance(obj, type) else None
        if tracker is not None:  # a class by value: not cloudpickle's random id of it in this process
            args = tuple(f"{obj.__module__}.{obj.__qualname__}" if a == tracker else a for a in out[1])
            return (out[0], args, *out[2:])
        return out


def token(obj: Any) -> str:
    """The hash of ``obj`` by value (user code included), stable across processes.

    >>> token({"b": 1, "a": 2}) == token({"b": 1, "a": 2}), token({1, 2}) == token({2, 1})
    (True, True)
    """
    return _tokenize(obj)[0]


def _tokenize(obj: Any) -> tuple[str, set[str]]:
    """``token(obj)`` and the top-level names of the installed packages (not the standard
    library, not batchtools and its serialiser) ``obj`` refers to."""
    if type(obj) in _SCALARS:  # exact types: a user's int or str subclass is pickled by value below
        return _digest(pickle.dumps(obj, protocol=4)), set()
    buf = io.BytesIO()
    with user_code_by_value(obj) as scan:
        _KeyPickler(buf, protocol=4).dump(obj)
    dists = _distributions()
    tops = {m.split(".")[0] for m in scan.needed}
    return _digest(buf.getvalue()), {m for m in tops if m in dists} - _TOOLING


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    from importlib.metadata import packages_distributions

    return packages_distributions()


def package_version(name: str) -> str:
    """The installed version of the package imported as ``name`` ("not installed" if none)."""
    from importlib.metadata import PackageNotFoundError, version

    top = name.split(".")[0]
    for dist in _distributions().get(top, [top]):
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    mod = sys.modules.get(top)
    return str(getattr(mod, "__version__", "not installed"))


@dataclass(frozen=True)
class JobKey:
    """The key of one job: ``parts`` (name -> hash, or a package's version) and their ``digest``.

    >>> k = JobKey.of({"function": "f1", "seed": token(2)})
    >>> k == JobKey.of({"seed": token(2), "function": "f1"}), len(k.digest)
    (True, 32)
    """

    digest: str
    parts: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, parts: dict[str, str]) -> JobKey:
        items = tuple(sorted(parts.items()))
        return cls(_digest(json.dumps(items).encode()), items)

    def as_dict(self) -> dict[str, str]:
        return dict(self.parts)

    def __repr__(self) -> str:
        return f"JobKey({self.digest}, {len(self.parts)} parts)"


def _package_name(spec: str) -> str:
    return spec.partition(" as ")[0].strip()


def job_keys(reg, ids: Iterable[int], after=None) -> list[JobKey | None]:
    """The keys of the jobs ``ids`` of the registry state ``reg``, from what the registry stores
    for its nodes (code, parameters, ``more_args``, exports) and the registry's seed and packages.

    A job that waits for other jobs of the registry (``submit_jobs(after=)``; ``after``: the ids a
    submitting call gives every job of ``ids``, None: each job's stored ones) has the result of
    each as a part (``dependency_result:<id>``): it may read them (a reduce), and the cache cannot
    tell; None instead of a key while one of them has no result.

    A job of ``batch_map_results`` has the result it reads from the source registry as a part
    (``source_result:0``, its digest); None instead of a key while that result is missing (the
    job cannot be looked up in or added to a cache: its key is not known yet).
    """
    import numpy as np

    ids = np.asarray(list(ids), dtype=np.int64)
    layout = reg.layout
    words = {v: k for k, v in BENCHMARK_WORDS.items()} if reg.extra.get("benchmark") else {}
    common: dict[str, str] = {"python": "{}.{}".format(*sys.version_info[:2])}
    packages = {_package_name(p) for p in reg.packages}
    exports = layout.dir("exports")
    if exports.is_dir():
        for entry in sorted(os.scandir(exports), key=lambda e: e.name):
            if is_data_file(entry.name):
                common[f"export:{entry.name[:-4]}"], used = _tokenize(read_pickle(entry.path))
                packages |= used
    code: dict[tuple[str, str], str] = {}  # (kind, name) -> token, computed once per registry

    def code_token(kind: str, name: str | None = None) -> str:
        if (kind, name) not in code:
            path = {"function": layout.user_function, "problem": layout.problem(name or ""),
                    "algorithm": layout.algorithm(name or "")}[kind]
            code[(kind, name)], used = _tokenize(read_pickle(path))
            packages.update(used)
        return code[(kind, name)]

    specs = reg.definitions.specs(ids)
    per_job: list[dict[str, str]] = []
    if reg.kind == "map":
        common["function"] = code_token("function")
        more = read_pickle(layout.more_args) if layout.more_args.exists() else {}
        # batch_map_results: the job reads a result of another registry (a store in more_args, the
        # parameter src_id); that result is the part, not where it is kept
        sources = [v for v in more.values() if isinstance(v, ResultStore)]
        for name, value in more.items():
            if not isinstance(value, ResultStore):
                common[f"more_args:{name}"], used = _tokenize(value)
                packages |= used
        for spec in specs:
            parts = {f"par:{k}": token(v) for k, v in spec["pars"].items()}
            for i, store in enumerate(sources):
                parts[f"source_result:{i}"] = _source_digest(store, spec["pars"].get("src_id"))
            per_job.append(parts)
    else:
        for spec in specs:
            parts = {words.get(k, k): code_token(k, spec[k]) for k in ("problem", "algorithm")}
            parts.update({f"prob_par:{k}": token(v) for k, v in spec["prob_pars"].items()})
            parts.update({f"algo_par:{k}": token(v) for k, v in spec["algo_pars"].items()})
            parts["repl"] = token(int(spec["repl"]))
            per_job.append(parts)
    _add_dependency_results(reg, ids, per_job, after)
    common.update({f"package:{p}": package_version(p) for p in sorted(packages)})
    return [None if None in parts.values() else
            JobKey.of({**common, **parts, "seed": token(int(reg.seed) + int(spec["job_id"]))})
            for parts, spec in zip(per_job, specs)]


def _add_dependency_results(reg, ids, per_job: list[dict[str, str | None]], after) -> None:
    """Add to each job's parts the digest of each result it waits for (see :func:`job_keys`)."""
    import numpy as np

    from .persistence.tables import is_empty_view

    if after is not None:
        deps = [np.asarray(after, dtype=np.int64)] * len(per_job)
    else:
        col = reg.status["after"].to_numpy()
        if is_empty_view(col):
            return
        deps = col[reg.pos(ids)].tolist()
    digests: dict[int, str | None] = {}
    for parts, dep in zip(per_job, deps):
        for d in ([] if dep is None else np.asarray(dep).tolist()):
            if d not in digests:
                digests[d] = _source_digest(reg.store, d)
            parts[f"dependency_result:{d}"] = digests[d]


def _source_digest(store, src_id) -> str | None:
    """The digest of the result ``src_id`` of another registry's ``store``; None if it has none."""
    if src_id is None:
        return None
    try:
        return _digest(store.raw(int(src_id)))
    except (OSError, ValueError):
        return None
