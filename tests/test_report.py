"""The run report (``bt.report``, ``batchtools report``): one self-contained HTML page.

Registries with done, failed, expired and retried jobs (Multicore that enforces walltimes like a
scheduler, a RetryPolicy), a worker pool and an ML benchmark are reported on; the pages are parsed
(``html.parser``) for their content and for external references, and opened in a real headless
Chromium (tests/chromium.py) that must show no console error, make no network request, and sort
a table when its header is clicked. ``BATCHTOOLS_TEST_BROWSER=1`` (set by ``.ci/run``) makes a
missing Chromium a failure.
"""

from __future__ import annotations

import os
import re
import signal
import time
from html.parser import HTMLParser

import pandas as pd
import pytest

import batchtools as bt
import chromium
from batchtools.cli import main
from conftest import enforcing_multicore, require_daemon, scheduler_registry, snapshot, wait_until
from test_slurm import slurm_problem


# ------------------------------------------------------------------ reading a page
class Page(HTMLParser):
    """What a report page holds: section ids, tables (headers, cell texts, sort values), images,
    the URLs it refers to, and every tag's text by class."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.sections: list[str] = []
        self.tables: dict[str, dict] = {}
        self.images: list[str] = []
        self.refs: list[tuple[str, str, str]] = []  # (tag, attribute, value) of src/href/action/...
        self.styles: list[str] = []
        self.scripts: list[str] = []
        self.texts: list[str] = []
        self._table: dict | None = None
        self._cell: list | None = None
        self._in: str | None = None
        self.feed(text)
        self.text = " ".join(self.texts)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key, value in attrs:
            if key in ("src", "href", "action", "srcset", "poster", "data", "formaction") and value is not None:
                self.refs.append((tag, key, value))
        if tag == "section":
            self.sections.append(a.get("id"))
        elif tag == "table":
            self._table = {"head": [], "rows": [], "values": []}
            self.tables[a.get("id")] = self._table
        elif tag == "tr" and self._table is not None:
            self._row, self._vals = [], []
        elif tag in ("th", "td") and self._table is not None:
            self._cell = []
            self._cell_tag, self._cell_v, self._cell_cls = tag, a.get("data-v"), a.get("class") or ""
        elif tag == "img":
            self.images.append(a.get("src", ""))
        elif tag in ("style", "script"):
            self._in = tag

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self._cell is not None:
            text = "".join(self._cell).strip()
            if self._cell_tag == "th":
                self._table["head"].append(text)
            else:
                self._row.append(text)
                self._vals.append((self._cell_v, self._cell_cls))
            self._cell = None
        elif tag == "tr" and self._table is not None and self._row:
            self._table["rows"].append(self._row)
            self._table["values"].append(self._vals)
        elif tag == "table":
            self._table = None
        elif tag in ("style", "script"):
            self._in = None

    def handle_data(self, data):
        if self._in == "style":
            self.styles.append(data)
        elif self._in == "script":
            self.scripts.append(data)
        else:
            self.texts.append(data)
            if self._cell is not None:
                self._cell.append(data)

    def column(self, table: str, name: str) -> list[str]:
        t = self.tables[table]
        k = t["head"].index(name)
        return [r[k] for r in t["rows"]]

    def row(self, table: str, **match) -> dict[str, str]:
        t = self.tables[table]
        for r in t["rows"]:
            d = dict(zip(t["head"], r))
            if all(d.get(k) == v for k, v in match.items()):
                return d
        raise AssertionError(f"no row {match} in {table}: {t['rows']}")


EXTERNAL = re.compile(r"^\s*(https?:|//|ftp:|ws:|wss:)", re.I)


def external_references(text: str) -> list[str]:
    """Everything in the page that a browser would fetch from elsewhere: src/href to another
    host or file, CSS @import or url() that is not inline data."""
    page = Page(text)
    out = [f"{tag} {key}={value[:80]}" for tag, key, value in page.refs
           if not value.startswith(("data:", "#", "javascript:")) or EXTERNAL.match(value)]
    css = "\n".join(page.styles)
    out += [f"css {m.group(0)[:80]}" for m in re.finditer(r"@import[^;]*|url\((?!\s*['\"]?data:)[^)]*\)", css)]
    out += [f"script {m.group(0)}" for m in re.finditer(r"\b(fetch|XMLHttpRequest|WebSocket|importScripts)\b",
                                                         "\n".join(page.scripts))]
    return out


# ------------------------------------------------------------------ registries to report on
def instance(data, job, n):
    return n


def doubled(job, data, instance):
    return instance * 2


def picky(job, data, instance):
    if instance % 2 == 0:
        raise ValueError(f"instance {instance} is even, and picky wants odd numbers")
    return instance


def sleeper(job, data, instance):
    time.sleep(instance)
    return job.resources["walltime"]


def hungry(job, data, instance):
    if job.resources["memory"] < 200:
        raise MemoryError(f"needs 200 MB, has {job.resources['memory']}")
    return job.resources["memory"]


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """An experiment registry on Multicore(2) that enforces walltimes: 6 jobs done at the first
    try (4 of them measured), 2 failed, one retried after a timeout, one retried after running
    out of memory, one expired (its process killed)."""
    path = tmp_path_factory.mktemp("story") / "registry"
    reg = bt.make_experiment_registry(file_dir=path, seed=1, conf_file=None, make_default=False)
    reg.cluster_functions = enforcing_multicore(2)
    reg.add_problem("numbers", fun=instance)
    for name, fun in (("double", doubled), ("picky", picky), ("sleeper", sleeper), ("hungry", hungry)):
        reg.add_algorithm(name, fun=fun)
    design = {"numbers": pd.DataFrame({"n": [1, 2, 3, 4]})}
    reg.add_experiments(design, {"double": None, "picky": None})
    reg.add_experiments({"numbers": pd.DataFrame({"n": [3]})}, {"sleeper": None, "hungry": None})
    reg.add_experiments({"numbers": pd.DataFrame({"n": [60]})}, {"sleeper": None})
    pars = reg.get_job_pars()
    by_algo = {a: pars.loc[pars["algorithm"] == a, "job_id"].tolist() for a in ("double", "picky", "sleeper", "hungry")}
    first, second = by_algo["double"][:2] + by_algo["picky"][:2], by_algo["double"][2:] + by_algo["picky"][2:]
    reg.submit_jobs(first, resources={"walltime": 3600, "memory": 8192, "measure_memory": True})
    reg.submit_jobs(second, resources={"walltime": 3600, "memory": 8192})
    timeout_job, lost_job = by_algo["sleeper"]
    reg.submit_jobs([timeout_job], resources={"walltime": 2}, retry=bt.RetryPolicy(max_attempts=3, walltime_factor=3))
    reg.submit_jobs(by_algo["hungry"], resources={"memory": 100}, retry=bt.RetryPolicy(max_attempts=3,
                                                                                          memory_factor=2))
    reg.submit_jobs([lost_job], resources={"walltime": 600})
    wait_until(lambda: lost_job in reg.find_running()["job_id"].tolist(), 60, "the job to lose to run")
    os.kill(int(reg.get_job_table(lost_job)["batch_id"][0]), signal.SIGKILL)
    assert reg.wait_for_jobs(timeout=120) is False
    status = reg.get_status()
    assert (status.done, status.error, status.expired) == (8, 2, 1), status
    return reg, {"timeout": timeout_job, "hungry": by_algo["hungry"][0], "lost": lost_job,
                 "failed": [j for j in by_algo["picky"] if j in reg.find_errors()["job_id"].tolist()]}


@pytest.fixture(scope="module")
def pooled(tmp_path_factory):
    """A batch_map registry run by two pool workers on Multicore(2): 30 jobs, 3 of them fail."""
    path = tmp_path_factory.mktemp("pool") / "registry"
    reg = bt.make_registry(file_dir=path, seed=1, conf_file=None, make_default=False)
    reg.cluster_functions = bt.make_cluster_functions_multicore(2)
    reg.batch_map(_pool_job, x=range(30), size=["small", "large"] * 15)
    reg.submit_workers(2, resources={"walltime": 3600, "memory": 4096})
    assert reg.wait_for_jobs(timeout=120) is False
    assert reg.get_status().error == 3
    return reg


def _pool_job(x, size):
    time.sleep(0.02)
    if x % 10 == 7:
        raise RuntimeError(f"job {x} hit a bad case")
    return x


def write(reg, tmp_path, name="report.html", **kwargs):
    out = tmp_path / name
    rep = reg.report(out, **kwargs)
    assert rep.path == out and out.exists()
    text = out.read_text()
    assert rep.html == text and rep.size == len(text.encode())
    return rep, text, Page(text)


# ------------------------------------------------------------------ content
def test_the_story_of_a_run(story, tmp_path):
    reg, ids = story
    before = snapshot(reg.file_dir)
    rep, text, page = write(reg, tmp_path)
    assert snapshot(reg.file_dir) == before  # the registry is only read
    assert page.sections == ["glance", "errors", "groups", "timeline"]
    assert external_references(text) == []
    # at a glance: counts, backend, times
    assert "done 8" in page.text and "error 2" in page.text and "expired 1" in page.text
    assert "Multicore" in page.text and "nothing is queued or running" in page.text
    assert "2 jobs failed (1 kind of error)" in page.text and "1 job expired" in page.text
    # errors grouped by message, with the log of one job
    assert "ValueError: instance <n> is even, and picky wants odd numbers" in page.text
    assert f"job ids: {', '.join(map(str, sorted(ids['failed'])))}" in page.text
    assert "Traceback" in text and "raise ValueError" in text
    assert re.search(rf"{ids['lost']}\.", page.text)  # the expired job is named
    # the group table: problem x algorithm
    head = page.tables["group-table"]["head"]
    assert head[:3] == ["problem", "algorithm", "n"]
    assert page.column("group-table", "algorithm") == ["double", "hungry", "picky", "sleeper"]
    double = page.row("group-table", algorithm="double")
    assert (double["n"], double["done"], double["error"]) == ("4", "4", "0")
    assert "/ 1h00m" in double["walltime used / requested"] and "/ 8.0 GiB" in double["memory used / requested"]
    assert "walltime: used at most" in double["flags"] and "memory: used at most" in double["flags"]
    picky_row = page.row("group-table", algorithm="picky")
    assert picky_row["error"] == "2" and picky_row["deaths"] == "error 2"
    sleeper = page.row("group-table", algorithm="sleeper")
    assert sleeper["retried"] == "1" and "timeout 1" in sleeper["deaths"] and sleeper["expired"] == "1"
    assert "killed at the walltime (timeout)" in sleeper["flags"]
    hungry = page.row("group-table", algorithm="hungry")
    assert hungry["retried"] == "1" and hungry["deaths"] == "memory 1" and hungry["done"] == "1"
    assert "killed at the memory limit (oom)" in hungry["flags"]
    assert re.fullmatch(r"\d+ %", double["CPU efficiency"])
    # findings at the top name the far-off requests and the deaths at the limit
    assert "runs killed at the walltime" in page.text or "numbers × sleeper: 1 run killed at the walltime" in page.text
    assert "walltime requested 10x or more above the longest run" in page.text
    # figures are inline: the finished-jobs curve and the timeline
    assert len(page.images) == 2 and all(s.startswith("data:image/") for s in page.images)


def test_how_an_expired_job_ended_counts_among_the_deaths(story):
    """An expired job whose scheduler said how it ended (a retry policy asks it), here a node
    failure: its group's deaths count it, and the expired jobs' line says it."""
    reg = bt.load_registry(story[0].file_dir, make_default=False)
    lost = story[1]["lost"]
    reg.status.loc[reg.status["job_id"] == lost, "reason"] = "node_fail"  # as the master records it
    page = Page(reg.report(None).html)
    deaths = page.row("group-table", algorithm="sleeper")["deaths"]
    assert sorted(deaths.split(", ")) == ["node_fail 1", "timeout 1"]
    assert f"(ended: node_fail 1): {lost}." in page.text


def test_missing_evidence_is_said_never_zero(tmp_path):
    """Jobs that never ran: no run times, no memory, no curve, no timeline; each says so."""
    reg = bt.make_registry(file_dir=tmp_path / "r", seed=1, conf_file=None, make_default=False)
    reg.batch_map(lambda x: x, x=[1, 2, 3])
    rep, text, page = write(reg, tmp_path)
    assert "No job has finished yet" in page.text and "No job has started yet" in page.text
    assert "no job was submitted" in page.text and "No job failed." in page.text
    row = page.tables["group-table"]["rows"][0]
    assert page.row("group-table", n="3")["run time min"] == "no run ended"
    assert all(v in ("", "no run ended", "0", "3") for v in row)
    assert page.images == []


def test_memory_not_measured_says_how_to_measure_it(reg, tmp_path):
    """A registry whose nodes recorded no memory at all (e.g. an old one): the section says how to turn it on."""
    reg.batch_map(lambda x: x, x=[1, 2])
    reg.submit_jobs(resources={"memory": 512})
    reg.status["max_rss"] = float("nan")  # as written by a node that recorded none
    _, _, page = write(reg, tmp_path)
    assert "No memory was measured for these jobs" in page.text and "measure_memory" in page.text
    row = page.row("group-table", n="2")
    assert row["peak memory"] == "not measured" and row["memory used / requested"] == ""
    assert "0 MiB" not in page.text


def test_the_pool_section(pooled, tmp_path):
    _, text, page = write(pooled, tmp_path)
    assert page.sections == ["glance", "errors", "groups", "timeline", "workers"]
    workers = page.tables["worker-table"]
    assert len(workers["rows"]) == 2
    assert sum(int(v) for v in page.column("worker-table", "done")) == 27
    assert sum(int(v) for v in page.column("worker-table", "error")) == 3
    assert set(page.column("worker-table", "state")) == {"exited"}
    # the default grouping of a batch_map: the argument with few values, not x (30 values)
    assert page.tables["group-table"]["head"][0] == "size"
    assert page.column("group-table", "size") == ["large", "small"]
    assert "the worker's" in text or "a worker's" in text
    assert "walltime: used at most" not in text  # a worker's walltime is for all its jobs: not flagged
    assert "RuntimeError: job <n> hit a bad case" in page.text


def test_by_a_column_with_many_values_is_binned(pooled, tmp_path):
    _, _, page = write(pooled, tmp_path, by="x")
    labels = page.column("group-table", "x")
    assert 2 < len(labels) <= 8 and labels[0].startswith("0 – ")
    assert sum(int(v) for v in page.column("group-table", "n")) == 30
    assert "x: 30 distinct values, shown in" in page.text
    _, _, page = write(pooled, tmp_path, by=["size", "x"])
    assert page.tables["group-table"]["head"][:2] == ["size", "x"]


def test_failures_are_listed_capped_with_a_count_of_the_rest(reg, tmp_path):
    reg.batch_map(lambda x: 1 / 0 if x % 2 else x, x=range(120))
    reg.submit_jobs()
    _, text, page = write(reg, tmp_path)
    assert "60 failed jobs, 1 kind of error" in page.text
    assert "and 20 more" in page.text  # 40 ids listed
    assert text.count('class="error-kind"') == 1 and text.count("<pre class=\"log\">") == 1


def test_ids_and_path_none(pooled, tmp_path):
    rep = pooled.report(None, ids=range(1, 11))
    assert rep.path is None and rep.n_jobs == 10 and "not written" in repr(rep)
    page = Page(rep.html)
    assert "10 of the registry's 30 (ids=)" in page.text
    frame = rep._repr_html_()
    assert frame.startswith("<iframe srcdoc=") and 'sandbox="allow-scripts"' in frame and "<table" not in frame


def test_bad_arguments_write_nothing(pooled, tmp_path):
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ValueError, match=r"by: 'nope' is neither a job parameter.*choose among \['x', 'size'"):
        pooled.report(tmp_path / "r.html", by="nope")
    with pytest.raises(TypeError, match="by: a column name or a list"):
        pooled.report(tmp_path / "r.html", by=3)
    with pytest.raises(ValueError, match="path: the folder .* does not exist"):
        pooled.report(tmp_path / "no" / "r.html")
    with pytest.raises(ValueError, match="path: .* is a folder"):
        pooled.report(tmp_path)
    with pytest.raises(TypeError, match="path: the HTML file"):
        pooled.report(3)
    with pytest.raises(ValueError, match="ids"):
        pooled.report(tmp_path / "r.html", ids=[999])
    assert sorted(os.listdir(tmp_path)) == before


def test_registry_shows_itself_at_a_glance_in_jupyter(pooled):
    out = pooled._repr_html_()
    assert "Registry" in out and "done 27" in out and "error 3" in out and "reg.report(" in out
    assert "<script" not in out and "<style" not in out  # inline styles only: nothing leaks into the notebook


def test_a_benchmark_has_its_scores(tmp_path):
    """Two tasks, three learners: the aggregate table, a score plot per scorer and the
    critical-difference diagram."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris, load_wine
    from sklearn.dummy import DummyClassifier
    from sklearn.naive_bayes import GaussianNB
    from sklearn.tree import DecisionTreeClassifier

    reg = bt.make_experiment_registry(file_dir=tmp_path / "bm", seed=1, conf_file=None, make_default=False)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    learners = {"dummy": DummyClassifier(), "tree": DecisionTreeClassifier(random_state=1), "bayes": GaussianNB()}
    reg.batchmark(bt.benchmark_grid({"iris": load_iris(return_X_y=True), "wine": load_wine(return_X_y=True)},
                                    learners, 3),
                  scoring=["accuracy", "balanced_accuracy"])
    reg.submit_jobs()
    _, text, page = write(reg, tmp_path)
    assert page.sections[-1] == "benchmark"
    agg = page.tables["benchmark-table"]
    assert agg["head"][:3] == ["task", "learner", "resampling"] and "accuracy_mean" in agg["head"]
    assert sorted(page.column("benchmark-table", "learner")) == sorted(list(learners) * 2)
    assert page.column("benchmark-table", "n") == ["3"] * 6
    assert page.tables["group-table"]["head"][:2] == ["problem", "algorithm"]
    assert len(page.images) == 2 + 2 + 1  # curve, timeline, one score plot per scorer, the CD diagram
    assert "Critical-difference diagram" in text and "mean ranks over the tasks" in page.text
    assert external_references(text) == []


def test_an_unreadable_algorithm_is_said_and_the_rest_reported(story, tmp_path):
    """An algorithm that cannot be unpickled here (e.g. the user's module is missing): the
    benchmark check says so, every other section is there."""
    reg = bt.load_registry(story[0].file_dir)
    path = reg.layout.algorithm("double")
    saved = path.read_bytes()
    try:
        path.write_bytes(b"not a pickle")
        _, _, page = write(reg, tmp_path)
    finally:
        path.write_bytes(saved)
    assert page.sections == ["glance", "errors", "groups", "timeline", "benchmark"]
    assert "could not be read" in page.text and "done 8" in page.text


def test_the_command_line(pooled, tmp_path, capsys):
    out = tmp_path / "cli.html"
    assert main(["report", str(pooled.file_dir), "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    page = Page(out.read_text())
    assert page.sections[:4] == ["glance", "errors", "groups", "timeline"]
    assert main(["report", str(pooled.file_dir), "-o", str(tmp_path / "x.html"), "--by", "nope"]) == 1
    assert "by: 'nope'" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "none"), "-o", str(out)]) == 1


# ------------------------------------------------------------------ in a real browser
@pytest.fixture(scope="module")
def browser():
    require_daemon(chromium.problem(), "BATCHTOOLS_TEST_BROWSER")
    with chromium.Chromium() as b:
        yield b


def test_chromium_renders_the_report_without_errors_or_requests(story, pooled, browser, tmp_path):
    for reg in (story[0], pooled):
        out = tmp_path / f"{reg.file_dir.parent.name}.html"
        reg.report(out)
        page = browser.open(out)
        try:
            assert page.problems(own_url=out.resolve().as_uri()) == []
            assert page.evaluate("document.querySelectorAll('section').length") >= 4
            # every figure decoded and drawn
            assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            assert page.first_paint() > 0
        finally:
            page.close()


def test_clicking_a_header_sorts_the_table(pooled, browser, tmp_path):
    out = tmp_path / "sort.html"
    pooled.report(out, by="x")
    page = browser.open(out)
    try:
        col = "Array.from(document.querySelectorAll('#group-table tbody tr')).map(r => r.cells[{k}].dataset.v)"
        head = page.evaluate("Array.from(document.querySelectorAll('#group-table thead th')).map(h => h.textContent)")
        n = head.index("n")
        page.click(f"#group-table thead th:nth-child({n + 1})")
        asc = [float(v) for v in page.evaluate(col.format(k=n))]
        assert asc == sorted(asc)
        assert page.evaluate(f"document.querySelectorAll('#group-table thead th')[{n}].getAttribute('aria-sort')") \
            == "ascending"
        page.click(f"#group-table thead th:nth-child({n + 1})")
        desc = [float(v) for v in page.evaluate(col.format(k=n))]
        assert desc == sorted(desc, reverse=True)
        # the ranges of x sort by their lower end, as numbers (not as text: "10" after "9")
        page.click("#group-table thead th:nth-child(1)")
        page.click("#group-table thead th:nth-child(1)")
        lows = [float(v) for v in page.evaluate(col.format(k=0))]
        assert lows == sorted(lows, reverse=True) and len(lows) > 2
        assert page.problems(own_url=out.resolve().as_uri()) == []
    finally:
        page.close()


def test_while_jobs_run_the_report_gives_an_eta(mreg, tmp_path):
    """Two short jobs done, two long ones running, two waiting in their chunks: elapsed 'so far' and an ETA."""
    mreg.batch_map(time.sleep, [0.05, 0.05, 30, 30, 30, 30])
    mreg.submit_jobs(pd.DataFrame({"job_id": range(1, 7), "chunk": [1, 2, 1, 2, 1, 2]}))
    try:
        wait_until(lambda: mreg.get_status().done == 2 and mreg.get_status().running == 2, 60,
                   "two jobs done and two running")
        _, _, page = write(mreg, tmp_path)
        assert re.search(r"ETA\s+\S+ for the 4 jobs queued or running", page.text), page.text
        assert "so far" in page.text
        arg = page.tables["group-table"]["head"][0]  # grouped by the one argument, 2 values
        assert page.row("group-table", **{arg: "30"})["left"] == "4"
        assert page.row("group-table", **{arg: "30"})["run time min"] == "no run ended"
        assert page.row("group-table", **{arg: "0.05"})["done"] == "2"
    finally:
        mreg.kill_jobs()


def reports_then_waits(gate, report, job):
    """Say how far it got (if ``report``), then wait (up to 2 minutes) for the file ``gate``."""
    import os
    import time

    if report:
        job.progress(0.25, "epoch 1 of 4")
    deadline = time.monotonic() + 120
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.02)


def test_a_running_jobs_last_progress_is_shown(mreg, tmp_path):
    """Running now: each running job's last sign of life, or that it reports none."""
    gate = tmp_path / "gate"
    mreg.batch_map(reports_then_waits, report=[True, False], more_args={"gate": str(gate)})
    mreg.submit_jobs()
    try:
        # the node passes a job's progress on at most every 2 s: wait until the table has it
        wait_until(lambda: mreg.get_status().running == 2 and mreg.get_job_table(1)["progress"].notna().all(), 60,
                   "both jobs running, job 1's progress recorded")
        _, _, page = write(mreg, tmp_path)
        assert "Running now" in page.text
        first, second = page.row("running", job="1"), page.row("running", job="2")
        assert (first["progress"], first["message"]) == ("0.25", "epoch 1 of 4") and first["last progress"].endswith("ago")
        assert second["last progress"] == "none reported" and second["message"] == ""
    finally:
        gate.touch()
        mreg.kill_jobs()


# ------------------------------------------------------------------ on a real Slurm
@pytest.fixture
def slurm_story(tmp_path):
    """An experiment registry on the real Slurm: 5 jobs done and 1 failed in two chunks, asking far
    too much (1 h, 4 GiB)."""
    require_daemon(slurm_problem(), "BATCHTOOLS_TEST_SLURM")
    cf = bt.make_cluster_functions_slurm(scheduler_latency=0, fs_latency=5)
    gen = scheduler_registry(tmp_path / "slurm", cf, make=bt.make_experiment_registry, seed=2)
    reg = next(gen)
    try:
        reg.add_problem("numbers", fun=instance)
        reg.add_algorithm("double", fun=doubled)
        reg.add_algorithm("picky", fun=picky)
        reg.add_experiments({"numbers": pd.DataFrame({"n": [1, 2, 3]})}, {"double": None, "picky": None})
        reg.submit_jobs(reg.find_jobs().assign(chunk=[1, 1, 1, 2, 2, 2]),
                        resources={"walltime": 3600, "memory": 4096, "measure_memory": True})
        # on a Slurm shared with other tests, the jobs may wait in the queue
        assert reg.wait_for_jobs(timeout=900) is False
        yield reg
    finally:
        next(gen, None)  # cancels what a failed test left on Slurm


@pytest.mark.slurm
def test_a_run_on_slurm(slurm_story, tmp_path):
    reg = slurm_story
    status = reg.get_status()
    assert (status.done, status.error) == (5, 1), status
    _, text, page = write(reg, tmp_path)
    assert external_references(text) == []
    assert "Slurm" in page.text
    assert "done 5" in page.text and "nothing is queued or running" in page.text
    assert "ValueError: instance 2 is even, and picky wants odd numbers" in page.text
    assert page.row("group-table", algorithm="picky")["deaths"] == "error 1"
    # the jobs ran in well under a second, measured, and asked for an hour and 4 GiB: flagged
    double = page.row("group-table", algorithm="double")
    assert (double["n"], double["done"]) == ("3", "3")
    assert "/ 1h00m" in double["walltime used / requested"] and "/ 4.0 GiB" in double["memory used / requested"]
    assert double["peak memory"].endswith("MiB") and re.fullmatch(r"\d+ %", double["CPU efficiency"])
    assert "walltime: used at most" in double["flags"] and "memory: used at most" in double["flags"]
    assert "walltime requested 10x or more above the longest run" in page.text
    assert len(page.images) == 2 and all(s.startswith("data:image/") for s in page.images)
