"""Progress for people: bars on a terminal, status lines every N seconds elsewhere, nothing when off."""

from __future__ import annotations

import io
import logging
import os
import pty
import struct
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import batchtools as bt
from batchtools.core.presentation import progress as pg

SCRIPT = textwrap.dedent("""
    import time, batchtools as bt
    reg = bt.make_registry(file_dir="reg", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    ids = bt.batch_map(lambda x: time.sleep(0.4) or (1 / 0 if x == 3 else x), x=range(8))
    ids["chunk"] = [1, 2] * 4  # two scheduler jobs: submitting returns at once, waiting takes ~1.6 s
    bt.submit_jobs(ids)
    bt.wait_for_jobs()
    print("results", len(bt.reduce_results_list()))
""")


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHTOOLS_PROGRESS")}
    env.update(extra)
    return env


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_mode_follows_the_environment_and_the_stream(monkeypatch, caplog):
    monkeypatch.delenv("BATCHTOOLS_PROGRESS", raising=False)
    assert pg.progress_mode(io.StringIO()) == "lines"  # a log file, CI, a batch job
    assert pg.progress_mode(_Tty()) == "bar"
    for value, mode in (("0", "off"), ("off", "off"), ("1", "bar"), ("lines", "lines"), ("auto", "lines")):
        monkeypatch.setenv("BATCHTOOLS_PROGRESS", value)
        assert pg.progress_mode(io.StringIO()) == mode, value
    monkeypatch.setenv("BATCHTOOLS_PROGRESS", "sometimes")
    with caplog.at_level(logging.WARNING, logger="batchtools"):
        assert pg.progress_mode(_Tty()) == "bar"
    assert "BATCHTOOLS_PROGRESS='sometimes' is not understood" in caplog.text


def test_interval_from_environment_else_configuration_else_default(monkeypatch, caplog):
    monkeypatch.delenv("BATCHTOOLS_PROGRESS_INTERVAL", raising=False)
    assert pg.progress_interval() == pg.DEFAULT_INTERVAL == 30.0
    assert pg.progress_interval(5) == 5.0
    monkeypatch.setenv("BATCHTOOLS_PROGRESS_INTERVAL", "2.5")
    assert pg.progress_interval(5) == 2.5
    monkeypatch.setenv("BATCHTOOLS_PROGRESS_INTERVAL", "-1")
    with caplog.at_level(logging.WARNING, logger="batchtools"):
        assert pg.progress_interval(5) == 5.0
    assert "not a number of seconds > 0" in caplog.text


def test_configuration_key_progress_interval(tmp_path):
    conf = tmp_path / "batchtools.conf.py"
    conf.write_text("progress_interval = 120\n")
    reg = bt.make_registry(file_dir=tmp_path / "r", conf_file=str(conf), make_default=False)
    assert reg.progress_interval == 120
    conf.write_text("progress_interval = 'often'\n")
    with pytest.raises(ValueError, match="progress_interval: must be a number of seconds"):
        bt.make_registry(file_dir=tmp_path / "r2", conf_file=str(conf), make_default=False)
    assert not (tmp_path / "r2").exists()


def test_eta_from_measured_run_times():
    nan = np.nan
    # nothing finished yet: no estimate
    assert pg.eta_from_runtimes(np.array([0.0, nan]), np.array([nan, nan]), np.array([True, True]),
                                np.array([True, False]), now=5.0) is None
    # 4 jobs of 10 s ran two at a time; 1 runs since 4 s, 3 wait: (6 + 3 * 10) / 2 slots
    started = np.array([0, 0, 10, 10, 20, nan, nan, nan], dtype=float)
    ended = np.array([10, 10, 20, 20, nan, nan, nan, nan], dtype=float)
    left = np.isnan(ended)
    running = ~np.isnan(started) & left
    assert pg.eta_from_runtimes(started, ended, left, running, now=24.0) == pytest.approx(18.0)
    # the last running job alone: what is left of it
    assert pg.eta_from_runtimes(started[:5], ended[:5], left[:5], running[:5], now=24.0) == pytest.approx(6.0)


def test_lines_mode_writes_a_line_every_interval_and_a_closing_line():
    out = io.StringIO()
    with pg.Progress(10, "Waiting", mode="lines", interval=0.1, file=out) as bar:
        for i in range(1, 6):
            bar.set(i, {"running": 2, "error": 1, "expired": 0, "eta": 30.0})
            time.sleep(0.06)
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3  # >= 2 interval lines and the closing one
    assert all(line.startswith("[batchtools ") for line in lines)
    assert "] Waiting: " in lines[0] and "/10 jobs (" in lines[0] and "2 running, 1 error" in lines[0]
    assert "ETA " in lines[0] and "expired" not in lines[0]  # zero counts are left out
    assert lines[-1].endswith("(stopped)") and "5/10 jobs (50.0%)" in lines[-1]


def test_lines_mode_is_silent_for_quick_operations():
    out = io.StringIO()
    with pg.Progress(3, "Submitting", mode="lines", interval=5, file=out) as bar:
        bar.update(3)
    assert out.getvalue() == ""


def test_bar_mode_shows_counts_and_eta():
    out = io.StringIO()
    with pg.Progress(4, "Waiting", mode="bar", file=out, delay=0) as bar:
        bar.set(1, {"running": 3, "error": 0, "eta": 125.0})
        time.sleep(pg.Progress.REFRESH + 0.1)  # details are taken at most every second
        bar.set(2, {"running": 2, "error": 1, "eta": 65.0})
        text = out.getvalue()
    assert "Waiting:" in text and "2/4 jobs" in text and "2 running, 1 error" in text and "ETA 1m0" in text


def test_off_shows_nothing(monkeypatch, capsys):
    monkeypatch.setenv("BATCHTOOLS_PROGRESS", "0")
    with pg.progress(5, "Submitting") as bar:
        bar.update(5)
    assert capsys.readouterr().err == ""


def test_reduce_shows_progress_in_a_log(reg, monkeypatch, capsys):
    bt.batch_map(lambda x: x, x=range(20))
    bt.submit_jobs()
    monkeypatch.setenv("BATCHTOOLS_PROGRESS", "lines")
    monkeypatch.setenv("BATCHTOOLS_PROGRESS_INTERVAL", "0.05")
    get = reg.store.get_many
    monkeypatch.setattr(reg.store, "get_many", lambda ids: time.sleep(0.02) or get(ids))
    assert bt.reduce_results_list() == list(range(20))
    err = capsys.readouterr().err
    assert "Loading results: " in err and "/20 results (" in err


def test_a_logged_run_writes_status_lines(tmp_path):
    """stderr to a file-like pipe (a batch job's log): lines with counts, run-time ETA, no bar."""
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=_env(BATCHTOOLS_PROGRESS_INTERVAL="0.25"))
    assert proc.returncode == 0, proc.stderr
    assert "results 7" in proc.stdout
    lines = [x for x in proc.stderr.splitlines() if x.startswith("[batchtools ")]
    waiting = [x for x in lines if "] Waiting: " in x]
    assert waiting, proc.stderr
    assert "\r" not in proc.stderr and "%|" not in proc.stderr  # no bar drawn into a log
    assert any("ETA " in x for x in waiting) or len(waiting) == 1


def test_a_terminal_run_draws_bars(tmp_path):
    """stderr on a terminal: tqdm bars with the counts and an ETA."""
    master, slave = pty.openpty()
    import fcntl
    import termios

    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=tmp_path, stdout=subprocess.PIPE, stderr=slave,
                            env=_env())
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the other side closed
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(master)
    text = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, text
    assert "Waiting:" in text and "%|" in text and "\r" in text, text
    assert "jobs [" in text and "ETA" in text, text
