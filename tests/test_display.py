"""What people see: show_log, grep_logs and error messages in full, readable workers and status,
times in local time to the second (while the API's columns stay UTC Timestamps)."""

import re
import subprocess
import sys
import time

import pandas as pd

import batchtools as bt
from batchtools.core.presentation.display import local_time

LONG = "a long log line that pandas would cut at fifty characters, " * 3


def noisy(x):
    print(f"value {x}: {LONG}")
    if x == 2:
        raise ValueError("two is not allowed here, and this message is deliberately longer than fifty characters")
    return x


def test_show_log_ends_with_a_newline(reg, capsys):
    bt.batch_map(noisy, x=[1])
    bt.submit_jobs()
    capsys.readouterr()
    bt.show_log(1)
    out = capsys.readouterr().out
    assert out.endswith("\n") and not out.endswith("\n\n")
    assert f"value 1: {LONG}" in out


def test_grep_logs_and_error_messages_print_in_full(reg):
    bt.batch_map(noisy, x=[1, 2])
    bt.submit_jobs()
    hits = bt.grep_logs(pattern="value")
    assert isinstance(hits, pd.DataFrame) and hits["job_id"].tolist() == [1, 2]
    shown = str(hits)
    assert f"value 1: {LONG}" in shown and f"value 2: {LONG}" in shown
    assert len(shown.splitlines()) == 3  # header + one line per match, not wrapped
    assert f"value 2: {LONG.strip()}</td>" in hits._repr_html_()
    assert f"value 1: {LONG}" in str(hits[hits["job_id"] == 1])  # a selection still shows in full
    errors = bt.get_error_messages()
    assert "this message is deliberately longer than fifty characters" in repr(errors)


def test_status_is_readable_in_scripts_repl_and_jupyter(reg):
    bt.batch_map(noisy, x=[1, 2, 3])
    bt.submit_jobs([1, 2])
    status = bt.get_status()
    assert repr(status) == str(status)
    lines = str(status).splitlines()
    assert re.fullmatch(r"Status for 3 jobs at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d:", lines[0])
    assert lines[0].endswith(f"{local_time(status.timestamp)}:")
    assert "  ---- Done    : 1 ( 33.3%)" in lines and "  ---- Error   : 1 ( 33.3%)" in lines
    html = status._repr_html_()
    assert html.startswith("<div>") and "<table>" in html and html.count("<tr>") == 8
    assert "Done</td><td style=\"text-align:right\">1</td>" in html


def test_workers_print_readably_with_local_times_and_utc_columns(reg):
    bt.batch_map(lambda x: x, x=range(3))
    bt.submit_workers(1)
    df = bt.get_workers()
    assert str(df["submitted"].dtype).endswith("UTC]")  # the data: UTC Timestamps
    submitted = df["submitted"].iloc[0]
    shown = str(df)
    assert local_time(submitted.timestamp()) in shown  # shown: local time, to the second
    assert "+00:00" not in shown and "." + str(submitted.microsecond).zfill(6) not in shown
    assert df["worker_id"].iloc[0] in shown  # ids not cut
    assert "<table" in df._repr_html_()


def test_cli_shows_local_times_to_the_second(reg):
    bt.batch_map(lambda x: x, x=range(3))
    bt.submit_workers(1)
    proc = subprocess.run([sys.executable, "-m", "batchtools.cli", "workers", str(reg.file_dir)],
                          capture_output=True, text=True, env={"TZ": "Asia/Kolkata", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    submitted = bt.get_workers()["submitted"].iloc[0]
    kolkata = submitted.tz_convert("Asia/Kolkata").strftime("%Y-%m-%d %H:%M:%S")
    assert kolkata in proc.stdout and "+00:00" not in proc.stdout


def test_local_time_follows_the_time_zone(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert local_time(0.0) == "1970-01-01 05:30:00"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_job_tables_show_local_seconds_and_stay_utc(reg):
    bt.batch_map(lambda x: x, x=[1, 2])
    bt.submit_jobs()
    st = bt.get_job_status()
    assert str(st["done"].dtype).endswith("UTC]") and isinstance(st, pd.DataFrame)
    with pd.option_context("display.width", 250, "display.max_columns", None):
        shown = repr(st[["job_id", "submitted", "done", "time_running"]])
    assert local_time(st["done"].iloc[0].timestamp()) in shown
    assert "+00:00" not in shown and "days" not in shown
    table = bt.get_job_table()
    assert str(table["submitted"].dtype).endswith("UTC]")
    assert local_time(table["submitted"].iloc[1].timestamp()) in table[["submitted"]]._repr_html_()


def test_a_million_rows_print_fast_with_their_true_size():
    from batchtools.core.presentation.display import TimesFrame

    n = 1_000_000
    df = TimesFrame({"job_id": range(1, n + 1), "done": pd.to_datetime([1.7e9] * n, unit="s", utc=True)})
    t0 = time.perf_counter()
    text, html = repr(df), df._repr_html_()
    assert time.perf_counter() - t0 < 10  # formats the rows it shows, never all million of them
    assert text.endswith("[1000000 rows x 2 columns]") and "1000000 rows × 2 columns" in html
    assert local_time(1.7e9) in text and "1000000" in text.splitlines()[-3]
