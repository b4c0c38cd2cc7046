"""The ``batchtools`` command, run as users run it: in subprocesses, against real registries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

import batchtools as bt
from batchtools import cli
from conftest import snapshot, wait_until

MAKE = textwrap.dedent("""
    import os, sys, time, batchtools as bt
    def job(x, wait=0.0, gate=""):
        print(f"working on {x}")
        time.sleep(wait)
        deadline = time.monotonic() + 120
        while gate and not os.path.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.05)
        if x == 4:
            raise RuntimeError(f"x = {x} is not supported")
        if x == 5:
            raise RuntimeError(f"x = {x} is not supported")
        return x * 10
    reg = bt.make_registry(file_dir=sys.argv[1], seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(job, x=range(1, 7), more_args={"wait": float(sys.argv[2]), "gate": sys.argv[3]})
""")


def run(*args, cwd=None, timeout=120, **env):
    """``batchtools ARGS`` in a subprocess: the completed process."""
    full_env = dict(os.environ, **env)
    return subprocess.run([sys.executable, "-m", "batchtools.cli", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


def make(path, wait: float = 0.0, gate: str = "") -> None:
    """A registry of 6 jobs on Multicore(2), made by another process (so no lease is held here).

    With ``gate``, each job also waits (up to 2 minutes) until that file exists."""
    subprocess.run([sys.executable, "-c", MAKE, str(path), str(wait), str(gate)], check=True, timeout=60)


@pytest.fixture
def regdir(tmp_path):
    make(tmp_path / "registry")
    return tmp_path / "registry"


def counts(regdir) -> dict:
    proc = run("status", regdir, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_missing_registry_is_named_with_the_fix(tmp_path):
    proc = run("status", cwd=tmp_path)
    assert proc.returncode == cli.FAILED
    assert "no registry at ./registry (the default)" in proc.stderr and "batchtools status path/to/registry" in proc.stderr
    proc = run("submit", tmp_path / "nowhere")
    assert proc.returncode == cli.FAILED and "nowhere" in proc.stderr
    assert not (tmp_path / "nowhere").exists()


def test_usage_errors_exit_2(regdir):
    assert run("resubmit", regdir).returncode == cli.USAGE
    assert run("reset", regdir).returncode == cli.USAGE
    proc = run("kill", regdir, "--ids", "3-1")
    assert proc.returncode == cli.USAGE and "not a job id or a range" in proc.stderr
    assert run("frobnicate").returncode == cli.USAGE


def test_exit_codes_document_themselves():
    proc = run("--help")
    assert proc.returncode == 0
    for code in cli.EXIT_CODES:
        assert f"  {code:>3}  " in proc.stdout


def test_submit_watch_errors_resubmit_reset_on_multicore(regdir):
    # nothing submitted: status --check says work is left
    proc = run("status", regdir, "--check")
    assert proc.returncode == cli.JOBS_LEFT and "Status for 6 jobs" in proc.stdout
    proc = run("submit", regdir, "--chunk-size", "2")
    assert proc.returncode == 0, proc.stderr
    assert "submitted 6 jobs in 3 scheduler jobs (Multicore)" in proc.stdout
    # watch without a terminal: one line per interval, ends when nothing is left; 2 failed: exit 3
    proc = run("watch", regdir, "--interval", "0.2")
    assert proc.returncode == cli.JOBS_FAILED, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines and all(x.startswith("[") and "finished" in x for x in lines)
    assert "6/6 finished: 4 done, 2 error, 0 expired, 0 running, 0 queued" in lines[-1]
    assert run("status", regdir, "--check").returncode == cli.JOBS_FAILED
    # errors grouped by message, numbers aside
    proc = run("errors", regdir)
    assert proc.returncode == 0
    assert "2 failed jobs, 1 kind of error:" in proc.stdout and "2 jobs (4, 5):" in proc.stdout
    assert "RuntimeError: x = <n> is not supported" in proc.stdout
    assert "4: RuntimeError: x = 4 is not supported" in run("errors", regdir, "--list").stdout
    # the log of one job, in full
    proc = run("log", regdir, "3")
    assert proc.returncode == 0 and "working on 3" in proc.stdout
    assert run("log", regdir, "99").returncode == cli.FAILED
    # resubmit the failed ones and wait: they fail again
    proc = run("resubmit", regdir, "--errors", "--wait")
    assert proc.returncode == cli.JOBS_FAILED, proc.stderr
    assert "submitted 2 jobs in 2 scheduler jobs" in proc.stdout and "Error   : 2" in proc.stdout
    # reset them: not submitted any more, work is left
    proc = run("reset", regdir, "--errors")
    assert proc.returncode == 0 and "reset 2 jobs" in proc.stdout
    c = counts(regdir)
    assert (c["submitted"], c["done"], c["error"]) == (4, 4, 0)
    assert run("status", regdir, "--check").returncode == cli.JOBS_LEFT
    # submit takes only what was not submitted
    proc = run("submit", regdir, "--ids", "4", "-r", "omp_threads=1", "--wait")
    assert proc.returncode == cli.JOBS_FAILED and "submitted 1 job in 1 scheduler job" in proc.stdout
    proc = run("submit", regdir, "--wait")
    assert proc.returncode == cli.JOBS_FAILED and "submitted 1 job" in proc.stdout
    proc = run("submit", regdir)
    assert proc.returncode == 0 and "nothing to submit" in proc.stdout


def test_kill_stops_jobs_another_process_started(tmp_path):
    regdir = tmp_path / "registry"
    make(regdir, wait=60)
    proc = run("submit", regdir, "--ids", "1,2")
    assert proc.returncode == 0, proc.stderr
    # the submitting process is gone; its jobs run on, and this (third) process sees them running
    running = wait_until(lambda: counts(regdir)["running"] == 2, 30, "two running jobs")
    assert running
    reg = bt.load_registry(regdir, make_default=False, conf_file=None)
    pids = [int(b) for b in reg.status["batch_id"].dropna()]
    assert all(psutil.pid_exists(p) for p in pids)
    t0 = time.time()
    proc = run("kill", regdir)
    assert proc.returncode == 0, proc.stderr
    assert "killed 2 jobs" in proc.stdout and time.time() - t0 < 30
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)
    c = counts(regdir)
    assert (c["submitted"], c["running"], c["expired"]) == (0, 0, 0)
    proc = run("kill", regdir)
    assert proc.returncode == 0 and "nothing to kill" in proc.stdout


def test_actions_are_refused_while_another_session_holds_the_lease(tmp_path):
    regdir = tmp_path / "registry"
    reg = bt.make_registry(file_dir=regdir, seed=1, conf_file=None, make_default=False)  # this session writes
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    bt.batch_map(lambda x: x, x=[1, 2], reg=reg)
    before = snapshot(regdir)
    for args in (["submit"], ["resubmit", "--ids", "1"], ["kill"], ["reset", "--all"]):
        proc = run(args[0], regdir, *args[1:])
        assert proc.returncode == cli.BUSY, (args, proc.stderr)
        assert f"pid {os.getpid()}" in proc.stderr and "--force" in proc.stderr
        assert snapshot(regdir) == before
    # looking is fine meanwhile
    assert run("status", regdir).returncode == 0
    # --force takes the lease over; this session turns read-only at its next write
    proc = run("submit", regdir, "--force", "--wait")
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(bt.LeaseError):
        bt.batch_map(lambda x: x, x=[3], reg=reg)


def test_watch_follows_a_submission_in_progress(tmp_path):
    """watch started while another process submits (6 scheduler jobs, two at a time, held at a gate
    until watch has seen the submission) follows it until no job is left, without taking the
    submitter for dead."""
    regdir, gate = tmp_path / "registry", tmp_path / "gate"
    make(regdir, wait=0.2, gate=str(gate))
    submit = subprocess.Popen([sys.executable, "-m", "batchtools.cli", "submit", str(regdir), "--chunk-size", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watch = None
    try:
        wait_until(lambda: (regdir / "submissions.log").exists() or submit.poll() is not None, 60, "a submission")
        watch = subprocess.Popen([sys.executable, "-m", "batchtools.cli", "watch", str(regdir), "-n", "0.1"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []
        for line in watch.stdout:  # the jobs wait at the gate, so watch must see the submission
            lines.append(line.rstrip("\n"))
            if "a submission is in progress" in line:
                break
        gate.touch()
        out, err = watch.communicate(timeout=120)
        lines += out.splitlines()
    finally:
        gate.touch()
        submit.wait(timeout=120)
        if watch is not None and watch.poll() is None:
            watch.kill()
    assert watch.returncode == cli.JOBS_FAILED, err
    assert any("a submission is in progress" in x for x in lines), lines
    assert not any(" 0 expired" not in x for x in lines), lines
    assert "6/6 finished: 4 done, 2 error, 0 expired" in lines[-1]
    assert "died" not in err


def test_workers_and_timeline(tmp_path):
    regdir = tmp_path / "registry"
    make(regdir)
    script = textwrap.dedent(f"""
        import batchtools as bt
        reg = bt.load_registry({str(regdir)!r}, writeable=True, conf_file=None)
        reg.cluster_functions = bt.make_cluster_functions_interactive()
        bt.submit_workers(1)
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    proc = run("workers", regdir)
    assert proc.returncode == 0, proc.stderr
    header, row = proc.stdout.splitlines()[:2]
    assert header.split()[:4] == ["worker", "batch_id", "state", "submitted"] and "last beat" in header
    assert " exited " in row and " ago " in row and time.strftime("%Y-%m-%d") in row
    out = tmp_path / "t.svg"
    proc = run("timeline", regdir, "-o", out, "--color-by", "x", MPLBACKEND="Agg")
    assert proc.returncode == 0, proc.stderr
    assert out.read_text().startswith("<?xml")


def test_no_errors_and_no_workers(regdir):
    assert run("errors", regdir).stdout.strip() == "no errors"
    assert run("workers", regdir).stdout.strip() == "no pool workers"


def test_status_runs_no_configuration_file_unless_asked(regdir, tmp_path):
    (tmp_path / "batchtools.conf.py").write_text("raise SystemExit('the configuration file ran')\n")
    os.chmod(tmp_path / "batchtools.conf.py", 0o600)
    assert run("status", regdir, cwd=tmp_path).returncode == 0
    proc = run("--conf", tmp_path / "batchtools.conf.py", "status", regdir, cwd=tmp_path)
    assert proc.returncode != 0 and "the configuration file ran" in proc.stderr
    # actions find it as load_registry does, unless --no-conf
    assert "the configuration file ran" in run("submit", regdir, cwd=tmp_path).stderr
    assert run("submit", regdir, "--no-conf", "--ids", "1", cwd=tmp_path).returncode == 0


def _run_on_terminal(args: list[str], timeout: float = 60) -> tuple[int, str]:
    """``batchtools ARGS`` with its output on a terminal (a pseudo-terminal of 100 x 40)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "batchtools.cli", *map(str, args)], stdout=slave, stderr=slave,
                            env=dict(os.environ, TERM="xterm-256color"))
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    code = proc.wait(timeout=timeout)
    os.close(master)
    return code, b"".join(chunks).decode(errors="replace")


def test_watch_on_a_terminal_draws_the_screen_in_place(tmp_path):
    regdir = tmp_path / "registry"
    make(regdir, wait=0.4)
    assert run("submit", regdir, "--chunk-size", "3").returncode == 0
    code, screen = _run_on_terminal(["watch", regdir, "-n", "0.3"])
    assert code == cli.JOBS_FAILED, screen
    assert "batchtools watch · Multicore, ncpus=2 · " in screen and "Ctrl-C to stop" in screen
    assert "Submitted" in screen and "Expired" in screen and "6/6 finished" in screen
    assert "\x1b[" in screen  # drawn with terminal control sequences (colours, cursor moves)


def test_watch_screen_shows_running_jobs_and_workers(tmp_path):
    """The screen of a pool at work, drawn in-process."""
    import io

    from rich.console import Console

    from batchtools.watch import Watcher, render, status_line

    regdir = tmp_path / "registry"
    make(regdir, wait=3)
    script = textwrap.dedent(f"""
        import batchtools as bt
        reg = bt.load_registry({str(regdir)!r}, writeable=True, conf_file=None)
        bt.submit_workers(2, ids=[1, 2, 3])
    """)
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    reg = bt.load_registry(regdir, make_default=False, conf_file=None)
    watcher = Watcher(reg)
    snap = wait_until(lambda: (s := watcher.snapshot()).status.running == 2 and s, 30, "two running jobs")
    console = Console(record=True, width=100, file=io.StringIO())
    console.print(render(snap, "registry", 2.0))
    text = console.export_text()
    assert "Running jobs (2)" in text and "Pool workers (2)" in text and " running " in text
    assert "s ago" in text and "ETA ?" in text  # no job finished yet: no estimate
    line = status_line(snap)
    assert "0/3 finished" in line and "2 running, 1 queued, 3 not submitted" in line
    assert run("kill", regdir).returncode == 0


def _status_in_a_fresh_interpreter(regdir) -> tuple[dict, bool]:
    """(counts of `batchtools status --json`, whether it imported pandas) in a fresh interpreter."""
    code = ("import json, sys; from batchtools import cli; import contextlib, io\n"
            "out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out): cli.main(['status', sys.argv[1], '--json'])\n"
            "print(json.dumps([json.loads(out.getvalue()), 'pandas' in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", code, str(regdir)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got, pandas = json.loads(proc.stdout)
    got.pop("timestamp")
    return got, pandas


def test_status_of_a_settled_registry_comes_from_the_summary_and_a_stale_summary_is_never_used(regdir):
    def truth() -> dict:
        reg = bt.load_registry(regdir, writeable=False, make_default=False, conf_file=None)
        return bt.get_status(reg=reg).to_dict()

    # nothing submitted: counted from the summary, without pandas or the table
    assert _status_in_a_fresh_interpreter(regdir) == (truth(), False)
    before = (regdir / "status.counts").read_bytes()
    assert run("submit", regdir, "--no-conf").returncode == 0
    deadline = time.time() + 60
    while counts(regdir)["system"] and time.time() < deadline:
        time.sleep(0.2)
    settled = truth()
    assert settled["done"] == 4 and settled["error"] == 2
    reg = bt.load_registry(regdir, writeable=True, make_default=False, conf_file=None)
    bt.sync_registry(reg=reg)  # the nodes' update files merged and the table saved: settled
    assert _status_in_a_fresh_interpreter(regdir) == (settled, False)
    # the summary of an older version of the table: read the table instead
    fresh = (regdir / "status.counts").read_bytes()
    (regdir / "status.counts").write_bytes(before)
    assert _status_in_a_fresh_interpreter(regdir) == (settled, True)
    # unreadable: read the table
    (regdir / "status.counts").write_bytes(b"{not json")
    assert _status_in_a_fresh_interpreter(regdir) == (settled, True)
    # a node's report not merged yet: read the table (and merge it in memory)
    (regdir / "status.counts").write_bytes(fresh)
    assert _status_in_a_fresh_interpreter(regdir) == (settled, False)
    (regdir / "updates" / "feedbeef-1.pkl").write_bytes(b"")
    assert _status_in_a_fresh_interpreter(regdir)[1] is True


def test_the_command_run_inside_python_leaves_its_logging_as_it_was(regdir, capsys):
    """main() in a test or a notebook: its log handler goes with it, and it never writes to a
    standard error that has since been closed (a later warning printed 'Logging error')."""
    import io
    import logging

    log = logging.getLogger("batchtools")
    before = (list(log.handlers), log.propagate, log.level)
    old = sys.stderr
    sys.stderr = io.StringIO()
    try:
        assert cli.main(["status", str(regdir)]) == cli.OK
    finally:
        sys.stderr.close()
        sys.stderr = old
    assert (list(log.handlers), log.propagate, log.level) == before
    log.warning("a warning after the command")
    assert "Logging error" not in capsys.readouterr().err
