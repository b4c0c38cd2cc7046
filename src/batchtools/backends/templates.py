"""Job-script templates (Jinja2): lookup, reading, rendering.

``template="slurm"`` is looked up like batchtools does: ``./batchtools.slurm.tmpl``,
``$XDG_CONFIG_HOME/batchtools/slurm.tmpl``, ``~/.batchtools.slurm.tmpl``, then the
shipped ``slurm-simple.tmpl``; a path is used as is. Inside a template:
``job_name``, ``log_file``, ``uri``, ``resources``, ``array_jobs``, ``n_array_jobs``,
``array_throttle``, ``jobs`` (job ids), ``command``, ``python`` and ``debug``.

Every value that reaches the script is checked first: job names are reduced to
safe characters, string resources must match a conservative pattern, numbers must
be numbers, so neither can inject shell commands.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

import jinja2

from ..core.files import atomic_write_bytes

SHIPPED = Path(__file__).resolve().parent.parent / "templates"
DEFAULT_NAMES = {"slurm": "slurm-simple", "torque": "torque-lido", "sge": "sge-simple", "lsf": "lsf-simple",
                 "openlava": "openlava-simple"}
SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.,:=@/+%-]*$")
UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def find_template_file(template: str) -> str:
    """Path of the template called (or at) ``template``; FileNotFoundError naming where it looked."""
    if not isinstance(template, str) or not template:
        raise TypeError("template: a name like 'slurm' or the path of a template file")
    if os.sep in template or template.endswith(".tmpl") or Path(template).is_file():
        if Path(template).is_file():
            return str(Path(template).absolute())
        raise FileNotFoundError(f"template: {template!r} is not a readable file")
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    candidates = [Path(f"batchtools.{template}.tmpl"), Path(xdg) / "batchtools" / f"{template}.tmpl",
                  Path.home() / f".batchtools.{template}.tmpl", SHIPPED / f"{DEFAULT_NAMES.get(template, template)}.tmpl",
                  SHIPPED / f"{template}.tmpl"]
    for c in candidates:
        if c.is_file():
            return str(c.absolute())
    raise FileNotFoundError(f"template: no template {template!r}; looked in " + ", ".join(map(str, candidates)))


def cf_read_brew_template(template: str) -> jinja2.Template:
    """Read and compile a template (a name, a path, or the template text itself)."""
    text = template if "\n" in template else Path(find_template_file(template)).read_text()
    env = jinja2.Environment(undefined=jinja2.ChainableUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["q"] = lambda v: shlex.quote(str(v))
    return env.from_string(text)


def check_script_resources(resources: dict[str, Any]) -> dict[str, Any]:
    """Resources as they may appear in a job script: numbers, booleans or safe strings."""
    out = {}
    for key, value in resources.items():
        if value is None or isinstance(value, (bool, int, float)):
            out[key] = value
        elif isinstance(value, str):
            if not SAFE_VALUE.match(value):
                raise ValueError(f"resources: {key}={value!r} has characters that are not allowed in a job script "
                                 "(allowed: letters, digits and _.,:=@/+%-)")
            out[key] = value
        elif isinstance(value, (list, tuple, dict)):
            continue  # structured resources are for the node, not for the script header
        else:
            raise TypeError(f"resources: {key} must be a number, bool or string to reach a job script, "
                            f"got {type(value).__name__}")
    return out


def job_name(jc) -> str:
    names = [n for n in jc.job_names if n]
    name = names[0] if names else jc.job_hash
    return UNSAFE_NAME.sub("_", name)[:64] or jc.job_hash


def cf_brew_template(reg, template: jinja2.Template, jc, **extra: Any) -> str:
    """Render ``template`` for ``jc`` and write the script next to the job collection; returns its path."""
    uri = str(reg.layout.job_collection(jc.job_hash))
    python = jc.python or "python3"
    log_file = extra.pop("log_file", jc.log_file)
    if "\n" in log_file or "\n" in uri:
        raise ValueError("file_dir: paths with newlines cannot be used in job scripts")
    context = {
        "job_name": job_name(jc), "log_file": log_file, "uri": uri, "resources": check_script_resources(jc.resources),
        "array_jobs": jc.array_jobs, "n_array_jobs": len(jc.jobs), "array_throttle": None,
        "jobs": jc.job_ids, "python": python, "debug": os.environ.get("BATCHTOOLS_DEBUG", ""),
        "command": shlex.join([python, "-m", "batchtools.worker", uri]),
    }
    context.update(extra)
    script = template.render(**context)
    path = reg.layout.script(jc.job_hash)
    atomic_write_bytes(path, script.encode())
    os.chmod(path, 0o755)
    return str(path)
