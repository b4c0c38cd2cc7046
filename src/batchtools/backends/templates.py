"""Job-script templates (Jinja2): lookup, reading, rendering.

``template="slurm"`` is looked up like batchtools does: ``./batchtools.slurm.tmpl``,
``$XDG_CONFIG_HOME/batchtools/slurm.tmpl``, ``~/.batchtools.slurm.tmpl``, then the
shipped ``slurm-simple.tmpl``; a path is used as is. A template found on the search path
that someone else could have written (not owned by you, or group/world-writable) is skipped
with a warning. Inside a template, R's variables (the fields of the job collection): ``job_hash``,
``job_name``, ``log_file``, ``uri`` (the collection file), ``resources``, ``array_jobs``, ``array_var``,
``jobs`` (job ids), ``file_dir``, ``work_dir``, ``seed``, ``packages``, ``namespaces`` (always empty),
``source``, ``load``, ``compress`` and ``hooks``; and ``n_array_jobs``, ``array_throttle``,
``command``, ``python``, ``debug``, ``warning`` (seconds before the walltime at which a
checkpointing job is asked to stop, for a scheduler's warning signal; None without a walltime)
and ``fail(message)`` (stops the rendering with that error). A name that is none of these is an
error naming it (R's brew stops too); a resource that is not set is None (empty when printed).

Every value a template prints (``{{ ... }}``) is shell-quoted: a registry path with spaces,
quotes, ``$()`` or backticks stays one literal word in a shell line and in ``#SBATCH``-style
directives. Template authors who need a value as it is write ``{{ value | raw }}`` (and then
quote it themselves); ``command`` is a ready command line and printed as it is. Values are
checked too: job names are reduced to safe characters, string resources must match a
conservative pattern, numbers must be numbers.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from ..core.jobstate.retry import warning_lead
from ..core.persistence.files import atomic_write_bytes, untrusted, user_path

log = logging.getLogger("batchtools")

SHIPPED = Path(__file__).resolve().parent.parent / "templates"
SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.,:=@/+%-]*$")
UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


class Raw(str):
    """A value printed into a job script as it is (already quoted, or meant to be code)."""


class _Environment(jinja2.Environment):
    """Jinja2 with every unknown name an error (``StrictUndefined``), except a key a dict does not
    have, which is None: a resource that is not set (``{% if resources.walltime %}``)."""

    def getattr(self, obj, attribute):
        value = super().getattr(obj, attribute)
        return None if isinstance(value, jinja2.Undefined) and isinstance(obj, Mapping) else value

    def getitem(self, obj, argument):
        value = super().getitem(obj, argument)
        return None if isinstance(value, jinja2.Undefined) and isinstance(obj, Mapping) else value


def _fail(message: str):
    """``{{ fail("...") }}`` in a template: stop rendering with this message."""
    raise ValueError(str(message))


def _shell_word(value: Any) -> str:
    """How a template prints a value: shell-quoted, unless it is :class:`Raw`."""
    if isinstance(value, Raw):
        return value
    if value is None:
        return ""
    return shlex.quote(str(value))


def shipped_default(name: str) -> Path:
    """The template shipped for scheduler ``name``: ``<name>-simple.tmpl``, else the one shipped
    ``<name>-*.tmpl`` (TORQUE's ``torque-lido.tmpl``), so a new backend's template needs no list.

    >>> shipped_default("torque").name, shipped_default("pbspro").name
    ('torque-lido.tmpl', 'pbspro-simple.tmpl')
    """
    simple = SHIPPED / f"{name}-simple.tmpl"
    if simple.is_file():
        return simple
    found = [p for p in SHIPPED.iterdir() if p.name.startswith(f"{name}-") and p.suffix == ".tmpl"]
    return found[0] if len(found) == 1 else simple


def find_template_file(template: str) -> str:
    """Path of the template called (or at) ``template``; FileNotFoundError naming where it looked.

    >>> find_template_file("slurm").endswith("slurm-simple.tmpl")
    True
    """
    if not isinstance(template, str) or not template:
        raise TypeError(f"template: a name like 'slurm' or the path of a template file, got {template!r}")
    if os.sep in template or template.endswith(".tmpl") or user_path(template).is_file():
        if user_path(template).is_file():
            return str(user_path(template).absolute())
        raise FileNotFoundError(f"template: {template!r} is not a readable file")
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    candidates = [Path(f"batchtools.{template}.tmpl"), Path(xdg) / "batchtools" / f"{template}.tmpl",
                  Path.home() / f".batchtools.{template}.tmpl", shipped_default(template),
                  SHIPPED / f"{template}.tmpl"]
    for c in candidates:
        if c.is_file():
            why = untrusted(c) if not str(c.absolute()).startswith(str(SHIPPED)) else None
            if why:
                log.warning("template: skipping %s: it %s, so it could run someone else's commands", c.absolute(), why)
                continue
            return str(c.absolute())
    raise FileNotFoundError(f"template: no template {template!r}; looked in " + ", ".join(map(str, candidates)))


def cf_read_brew_template(template: str) -> jinja2.Template:
    """Read and compile a template (a name, a path, or the template text itself).

    >>> t = cf_read_brew_template("#!/bin/sh\\n#SBATCH --output={{ log_file }}\\n{{ command }}\\n")
    >>> print(t.render(log_file="/data/my reg/logs/a.log", command=Raw("python -m batchtools.worker x")), end="")
    #!/bin/sh
    #SBATCH --output='/data/my reg/logs/a.log'
    python -m batchtools.worker x
    """
    if not isinstance(template, str) or not template:
        raise TypeError(f"template: a name like 'slurm', the path of a template file, or the template text; "
                        f"got {type(template).__name__} {template!r}")
    source = "<template text>" if "\n" in template else find_template_file(template)
    text = template if "\n" in template else Path(source).read_text()
    env = _Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                       trim_blocks=True, lstrip_blocks=True, finalize=_shell_word)
    env.filters["q"] = lambda v: Raw(shlex.quote(str(v)))
    env.filters["raw"] = lambda v: Raw("" if v is None else str(v))
    env.globals["fail"] = _fail
    try:
        return env.from_string(text)
    except jinja2.TemplateSyntaxError as e:
        raise ValueError(f"template: {source}, line {e.lineno}: {e.message}") from None


def check_script_resources(resources: dict[str, Any]) -> dict[str, Any]:
    """Resources as they may appear in a job script: numbers, booleans or safe strings, and lists
    of them joined by commas, as schedulers take lists (Slurm's ``--partition=a,b``, SGE's
    ``-q a,b``). Dicts and nested lists are for the node, not for the script header.

    >>> check_script_resources({"partition": ["short", "long"], "walltime": 60, "retry": {"max": 2}})
    {'partition': 'short,long', 'walltime': 60}
    """
    out = {}
    for key, value in resources.items():
        if isinstance(value, (list, tuple)) and all(_scalar(v) for v in value):
            out[key] = ",".join(str(_script_value(key, v)) for v in value)
        elif isinstance(value, (list, tuple, dict)):
            continue  # structured resources are for the node, not for the script header
        else:
            out[key] = _script_value(key, value)
    return out


def _scalar(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str))


def _script_value(key: str, value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        if not SAFE_VALUE.match(value):
            raise ValueError(f"resources: {key}={value!r} has characters that are not allowed in a job script "
                             "(allowed: letters, digits and _.,:=@/+%-)")
        return value
    raise TypeError(f"resources: {key} must be a number, bool or string (or a list of them) to reach a job script, "
                    f"got {type(value).__name__}")


MAX_NAME = 64  # characters of a job name (schedulers show fewer; Slurm's squeue 8 by default)


def job_name(jc) -> str:
    """The scheduler's name of ``jc``'s job: the collection's name (R's ``jc$job.name``) where
    ``set_job_names`` gave each of its jobs one, else the registry's folder name and what the job
    runs: ``<registry>-<job id>`` for one job, ``-chunk<k>`` for a chunk of ``submit_jobs``,
    ``-worker<k>`` for a pool worker. Letters, digits, ``_.-`` only, at most 64 characters (the registry's name is cut, never the
    id), starting with a letter.

    >>> from batchtools.core.contract.collection import JobCollection
    >>> jc = JobCollection(file_dir="/home/me/study 2", work_dir=".", job_hash="job1a2b", jobs=[{"job_id": 7}], seed=1)
    >>> job_name(jc)
    'study_2-7'
    """
    names = [n for n in jc.job_names if n]
    if not jc.pool and jc.job_name != jc.job_hash:
        return UNSAFE_NAME.sub("_", jc.job_name)[:MAX_NAME] or jc.job_hash
    if jc.pool:
        what = names[0] if names else "worker"
    elif len(jc.jobs) == 1:
        what = str(jc.jobs[0]["job_id"])
    elif jc.chunk is not None:
        what = f"chunk{jc.chunk}"
    else:
        what = f"{jc.jobs[0]['job_id']}-and-{len(jc.jobs) - 1}-more" if len(jc.jobs) else "none"
    what = UNSAFE_NAME.sub("_", what)
    registry = UNSAFE_NAME.sub("_", os.path.basename(os.path.normpath(jc.file_dir)))
    name = f"{registry[:max(0, MAX_NAME - len(what) - 1)]}-{what}"
    return (name if name[:1].isalpha() else f"bt{name}")[:MAX_NAME]


def cf_brew_template(reg, template: jinja2.Template, jc, **extra: Any) -> str:
    """Render ``template`` for ``jc`` and write the script next to the job collection; returns its path."""
    after = tuple(getattr(jc, "after", ()))  # a collection pickled before `after` existed has none
    caps = getattr(getattr(reg, "cluster_functions", None), "capabilities", None)
    if after and not (caps is not None and caps.dependencies):
        # rendered without them, the jobs would start before the jobs they need have ended
        raise ValueError(f"jc: the collection must wait for scheduler jobs {list(after)[:5]}, but this backend does "
                         "not declare Capabilities(dependencies=True), so nothing would enforce that; the master "
                         "holds such jobs itself for a backend without that capability")
    uri = jc.uri
    python = jc.python or "python3"
    log_file = extra.pop("log_file", jc.log_file)
    context = {
        # R's variables: the fields of the job collection
        "job_hash": jc.job_hash, "job_name": job_name(jc), "log_file": log_file, "uri": uri,
        "resources": check_script_resources(jc.resources), "array_jobs": jc.array_jobs,
        "array_var": jc.array_var, "jobs": jc.job_ids, "file_dir": jc.file_dir, "work_dir": jc.work_dir,
        "seed": jc.seed, "packages": tuple(jc.packages), "namespaces": (), "source": tuple(jc.source),
        "load": tuple(jc.load), "compress": jc.store.compress if jc.store is not None else None, "hooks": dict(jc.hooks),
        # and ours
        "n_array_jobs": len(jc.jobs), "array_throttle": None, "python": python,
        "debug": os.environ.get("BATCHTOOLS_DEBUG", ""),
        "command": Raw(shlex.join([python, "-m", "batchtools.worker", uri])),
        "warning": warning_lead(jc.resources),
        # the scheduler ids (status table's batch_id) the collection waits for; Slurm passes them on
        # sbatch's command line itself, a template of another scheduler that declares dependencies uses this
        "after": after,
    }
    context.update(extra)
    try:
        script = template.render(**context)
    except jinja2.UndefinedError as e:
        raise ValueError(f"template: cannot be rendered: {e}; the variables are {', '.join(sorted(context))} "
                         "(a resource is resources.<name>)") from None
    except (jinja2.TemplateError, ValueError, TypeError) as e:
        raise ValueError(f"template: cannot be rendered ({type(e).__name__}: {e})") from None
    path = reg.layout.script(jc.job_hash)
    atomic_write_bytes(path, script.encode())
    os.chmod(path, 0o755)
    jc.__dict__["script"] = str(path)  # submit_jobs removes it once accepted, unless store_job_files
    return str(path)


def check_path_chars(forbidden: str, backend: str):
    """A path check for a backend that cannot pass ``forbidden`` characters in a registry path."""

    def check(path: str) -> None:
        bad = sorted({c for c in path if c in forbidden})
        if bad:
            raise ValueError(f"file_dir: {path!r} contains {' '.join(repr(c) for c in bad)}, which the {backend} "
                             f"backend cannot pass to its scheduler; use a registry folder without them")

    return check


ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def check_path_allowed(extra: str, backend: str):
    """A path check for a backend whose scheduler cannot be tried here: letters, digits and ``extra`` only."""
    allowed = set(ALNUM + extra)

    def check(path: str) -> None:
        bad = sorted({c for c in path if c not in allowed})
        if bad:
            raise ValueError(f"file_dir: {path!r} contains {' '.join(repr(c) for c in bad)}; the {backend} backend "
                             f"accepts registry paths of letters, digits and {extra!r} only")

    return check
