"""The chores every backend shares: running (remote) commands, killing with retries, reading
job ids and temporary errors out of a scheduler's output. The contract itself
(:class:`~batchtools.core.contract.backend.ClusterFunctions`) lives in :mod:`batchtools.core.contract.backend`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import subprocess
from collections import Counter
from typing import Any

from ..core.contract.backend import SubmitJobResult
from ..core.persistence.layout import Layout

log = logging.getLogger("batchtools")
# how often each external command ran in this process (the benchmark reports commands per job)
command_counts: Counter = Counter()

def local_ncpus(ncpus: int | None, meaning: str) -> int:
    """``ncpus`` of a local backend, checked; None means every CPU of this machine."""
    if ncpus is None:
        return os.cpu_count() or 1
    if isinstance(ncpus, bool) or not isinstance(ncpus, int) or ncpus < 1:
        raise ValueError(f"ncpus: must be a positive int ({meaning}), got {ncpus!r}")
    return ncpus


# the thread-count variables of the BLAS and OpenMP libraries (the ones joblib's loky sets too)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def thread_env(ncpus: int) -> dict[str, str]:
    """The environment of local processes that run ``ncpus`` jobs side by side: each job gets
    ``cpu_count // ncpus`` BLAS/OpenMP threads (at least 1), so that two jobs of NumPy or
    scikit-learn do not each start a thread per CPU and fight over them (as joblib does for its
    workers). Variables the user set are kept; ``omp_threads``/``blas_threads`` resources override.

    >>> env = thread_env(os.cpu_count() or 1)
    >>> env["OPENBLAS_NUM_THREADS"] if "OPENBLAS_NUM_THREADS" not in os.environ else "1"
    '1'
    """
    n = str(max(1, (os.cpu_count() or 1) // max(1, ncpus)))
    return {**os.environ, **{var: n for var in THREAD_VARIABLES if var not in os.environ}}


def first_number(output: list[str]) -> str | None:
    """The first run of digits in a command's output (how most schedulers print a job id)."""
    import re

    m = re.search(r"\d+", " ".join(output))
    return m.group(0) if m else None


def temporary_error(output: list[str], patterns: tuple[str, ...]) -> str | None:
    """The scheduler's own words (its output, one line) if they contain one of ``patterns``
    (errors that go away: a cap on jobs per user, a busy controller), else None.

    >>> temporary_error(["sbatch: error: QOSMaxSubmitJobPerUserLimit", "sbatch: error: Batch job submission "
    ...                  "failed: Job violates accounting/QOS policy"], ("QOSMaxSubmitJobPerUserLimit",))
    'sbatch: error: QOSMaxSubmitJobPerUserLimit / sbatch: error: Batch job submission failed: Job violates...
    """
    text = "\n".join(output)
    if not any(p in text for p in patterns):
        return None
    words = " / ".join(line.strip() for line in output if line.strip())
    return words if len(words) <= 400 else words[:397] + "..."


def run_os_command(sys_cmd: str, sys_args: list[str] | tuple[str, ...] = (), stdin: str | os.PathLike | None = "",
                   nodename: str = "localhost", timeout: float | None = None,
                   env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a command (over ssh if ``nodename`` is not localhost), giving up after ``timeout``
    seconds (default: never); return ``sys_cmd``, ``sys_args``, its ``exit_code`` and ``output``
    lines (stdout and stderr), as R's ``runOSCommand``. ``env``: variables to set for the
    command (on ``nodename`` too).

    ``stdin`` names a file whose content is fed to the command (R's ``stdin``); ``""`` or None
    feeds nothing. A command that is not found gives exit code 127.

    >>> run_os_command("echo", ["hi"])["output"]
    ['hi']
    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
    ...     _ = fh.write("from a file\\n")
    >>> run_os_command("cat", stdin=fh.name)["output"]
    ['from a file']
    """
    if stdin not in ("", None):
        stdin = os.path.expanduser(stdin)
    if stdin not in ("", None) and not os.path.isfile(stdin):
        raise FileNotFoundError(f"stdin: {os.fspath(stdin)!r} is not a file; stdin names a file whose content "
                                "is fed to the command (as in R)")
    argv = [sys_cmd, *map(str, sys_args)]
    if env:
        argv = ["env", *(f"{k}={v}" for k, v in env.items()), *argv]
    if nodename not in ("localhost", "127.0.0.1", "", None):
        if nodename.startswith("-") or any(c.isspace() for c in nodename):
            raise ValueError(f"nodename: {nodename!r} is not a host name")
        argv = ["ssh", "-q", "-o", "BatchMode=yes", "--", nodename, " ".join(map(shlex.quote, argv))]
    log.debug("OS command: %s", shlex.join(argv))
    command_counts[sys_cmd] += 1
    result = {"sys_cmd": sys_cmd if argv[0] == "env" else argv[0], "sys_args": argv[1:]}
    try:
        with open(stdin, "rb") if stdin not in ("", None) else contextlib.nullcontext(subprocess.DEVNULL) as fh:
            proc = subprocess.run(argv, stdin=fh, capture_output=True, timeout=timeout)
    except FileNotFoundError:
        return {**result, "exit_code": 127, "output": ["command not found"]}  # as R (sys_cmd names it)
    if env and proc.returncode == 127 and nodename in ("localhost", "127.0.0.1", "", None):  # env ran, the command is missing
        return {**result, "exit_code": 127, "output": ["command not found"]}
    output = (proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")).splitlines()
    log.debug("exit code %d, output: %s", proc.returncode, output[:20])
    return {**result, "exit_code": proc.returncode, "output": output}


def cf_handle_unknown_submit_error(cmd: str, exit_code: int, output: list[str] | str) -> SubmitJobResult:
    """A permanent error result carrying the command's output (its lines, or one string).

    >>> cf_handle_unknown_submit_error("ls", 42, "answer to life").msg
    "Command 'ls' produced exit code 42; output:\\nanswer to life"
    """
    text = output if isinstance(output, str) else "\n".join(output)
    return SubmitJobResult(101, None, None, f"Command '{cmd}' produced exit code {exit_code}; output:\n{text}")


def qsub_result(out: dict[str, Any], jc, temp_errors: tuple[str, ...]) -> SubmitJobResult:
    """What a PBS-style ``qsub`` (TORQUE, PBS Pro) answered, from its :func:`run_os_command` result:
    the job id it printed ("123.server"); for an array collection the tasks' ids ("123[].server"
    becomes "123[1].server", ...; an id without "[]", an array PBS Pro got as one ordinary job,
    stays as it is); a temporary error if the output names one of ``temp_errors``."""
    if out["exit_code"] != 0:
        temp = temporary_error(out["output"], temp_errors)
        return SubmitJobResult(1, None, None, temp) if temp else \
            cf_handle_unknown_submit_error("qsub", out["exit_code"], out["output"])
    batch = out["output"][0].strip() if out["output"] else ""
    if not batch:
        return cf_handle_unknown_submit_error("qsub", 0, out["output"])
    if jc.array_jobs:
        tasks = range(1, len(jc.jobs) + 1)
        return SubmitJobResult(0, [batch.replace("[]", f"[{i}]") for i in tasks],
                               [Layout.array_log_name(jc.job_hash, i) for i in tasks], "OK")
    return SubmitJobResult(0, batch, jc.log_file, "OK")


def cf_kill_job(reg, cmd: str, args: list[str] = (), max_tries: int = 3, nodename: str = "localhost") -> None:
    """Run a kill command, retrying up to ``max_tries`` times before raising."""
    import time

    out: dict[str, Any] = {}
    for i in range(max_tries):
        out = run_os_command(cmd, args, nodename=nodename)
        if out["exit_code"] == 0:
            return
        time.sleep(min(2**i, 5))
    raise RuntimeError(f"Really tried to kill job, but failed {max_tries} times with '{cmd}': {out.get('output')}")


_SIZE_UNITS = {"": 1 / 2**20, "B": 1 / 2**20, "K": 1 / 2**10, "M": 1.0, "G": 2**10, "T": 2**20, "P": 2**30}


def size_mib(text: str | None, default_unit: str = "K") -> float:
    """A memory size as schedulers print it ("1024K", "2.5G", "36.488KB", "0.000B") in MiB; NaN if none.

    >>> size_mib("2048K"), size_mib("1.5G"), size_mib("512.000KB"), size_mib(""), size_mib("512", "M")
    (2.0, 1536.0, 0.5, nan, 512.0)
    """
    import re

    m = re.fullmatch(r"\s*([0-9.]+)\s*([BKMGTP]?)i?B?\s*", text or "")
    if not m:
        return float("nan")
    unit = m.group(2) or default_unit
    return float(m.group(1)) * _SIZE_UNITS[unit]


def duration_seconds(text: str | None) -> float:
    """A duration as schedulers print it ("1-02:03:04", "01:02:03", "02:03.456", "0.258s", "12") in
    seconds; NaN if none.

    >>> duration_seconds("1-00:00:01"), duration_seconds("01:02.5"), duration_seconds("0.258s")
    (86401.0, 62.5, 0.258)
    """
    text = (text or "").strip().rstrip("s")
    if not text:
        return float("nan")
    days = 0.0
    if "-" in text:
        d, text = text.split("-", 1)
        days = float(d)
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        return float("nan")
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + p
    return days * 86400 + seconds
