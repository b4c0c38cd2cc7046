"""The timeline (plot_timeline): rows packed by concurrent slot, legend, color_by, 10,000 jobs."""

import time

import numpy as np
import pandas as pd
import pytest

import batchtools as bt
from batchtools.plot import _pack
from conftest import snapshot

pytest.importorskip("matplotlib")


def fake_run(reg, lanes):
    """Pretend the jobs ran: ``lanes`` is a list of (batch_id, job ids, start); the jobs of a lane
    run one after the other, one second each (and job 3 fails if it is there)."""
    st = reg.status
    for c in ("submitted", "started", "done"):
        st[c] = st[c].astype(float)
    for name in ("batch_id", "job_hash", "error"):
        st[name] = st[name].astype(object)
    for batch, ids, start in lanes:
        for k, job_id in enumerate(ids):
            i = int(np.searchsorted(st["job_id"].to_numpy(), job_id))
            st.loc[i, ["submitted", "started", "done"]] = [start - 1, start + k, start + k + 1]
            st.loc[i, "batch_id"] = batch
            st.loc[i, "job_hash"] = f"hash-{batch}"
            if job_id == 3:
                st.loc[i, "error"] = "ValueError: three"


def row_labels(fig):
    return [t.get_text() for t in fig.axes[0].get_yticklabels()]


def legend_labels(fig):
    return [t.get_text() for t in fig.axes[0].get_legend().get_texts()]


def test_pack_uses_as_few_rows_as_overlap():
    start = np.array([0.0, 0.5, 1.0, 2.0, 2.5, 10.0])
    end = np.array([1.0, 2.0, 2.5, 3.0, 4.0, 11.0])
    rows = _pack(start, end)
    assert rows.max() + 1 == 2  # at most two intervals overlap at any time
    for r in set(rows.tolist()):  # intervals in one row never overlap
        s, e = start[rows == r], end[rows == r]
        o = np.argsort(s)
        assert (s[o][1:] >= e[o][:-1]).all()


def test_chunks_are_packed_onto_concurrent_slots(reg):
    bt.batch_map(lambda x: x, x=range(1, 13))
    # six scheduler jobs of two jobs each, at most two running at once
    fake_run(reg, [(f"b{k}", [2 * k + 1, 2 * k + 2], 1000.0 + 2 * (k // 2)) for k in range(6)])
    fig = bt.plot_timeline()
    assert row_labels(fig) == ["slot 1", "slot 2"]
    assert "12 jobs on 2 slots" in fig.axes[0].get_title()
    assert sum(len(c.get_paths()) for c in fig.axes[0].collections) == 12  # one bar per job
    by_batch = bt.plot_timeline(rows="batch")
    assert row_labels(by_batch) == [f"b{k}" for k in range(6)]
    assert legend_labels(fig) == ["done (11)", "error (1)"]


def test_color_by_a_parameter_and_an_experiment_column(reg, tmp_path):
    bt.batch_map(lambda x, kind: x, x=range(1, 7), kind=["a", "b", "c"] * 2)
    fake_run(reg, [("b1", [1, 2, 3], 0.0), ("b2", [4, 5, 6], 0.0)])
    fig = bt.plot_timeline(color_by="kind")
    assert legend_labels(fig) == ["a (2)", "b (2)", "c (2)", "error (1)"]
    assert fig.axes[0].get_legend().get_title().get_text() == "kind"
    colors = {tuple(c) for coll in fig.axes[0].collections for c in coll.get_facecolors()}
    assert len(colors) == 3

    ereg = bt.make_experiment_registry(file_dir=tmp_path / "exp", seed=1, conf_file=None)
    bt.add_problem("p", fun=lambda data, job, n: n)
    bt.add_algorithm("svm", fun=lambda instance: instance)
    bt.add_algorithm("forest", fun=lambda instance: instance)
    bt.add_experiments({"p": pd.DataFrame({"n": [1, 2]})}, repls=2)
    fake_run(ereg, [("w", list(range(1, 9)), 0.0)])
    fig = bt.plot_timeline(color_by="algorithm")
    assert legend_labels(fig)[:2] == ["forest (4)", "svm (4)"]
    many = bt.plot_timeline(color_by="n")  # a parameter of the problem design
    assert legend_labels(many)[:2] == ["1 (4)", "2 (4)"]


def test_bad_arguments_are_refused_before_anything(reg):
    bt.batch_map(lambda x: x, x=[1, 2])
    bt.submit_jobs()
    before = snapshot(reg.file_dir)
    with pytest.raises(ValueError, match="color_by: 'nope'.*choose one of \\['x'"):
        bt.plot_timeline(color_by="nope")
    with pytest.raises(ValueError, match="rows: one of"):
        bt.plot_timeline(rows="node")
    with pytest.raises(TypeError, match="color_by"):
        bt.plot_timeline(color_by=3)
    assert snapshot(reg.file_dir) == before


def test_nothing_started_yet(reg):
    bt.batch_map(lambda x: x, x=[1, 2])
    assert bt.plot_timeline().axes[0].get_title() == "no job has started yet"


def test_ten_thousand_jobs_draw_fast(reg, tmp_path):
    n = 10_000
    bt.batch_map(lambda x, algo: x, x=range(n), algo=["a", "b", "c", "d"] * (n // 4))
    st = reg.status
    rng = np.random.default_rng(1)
    # 200 chunks of 50 jobs on 8 slots, each job 0.1-2 s
    t = 1_000.0 + np.zeros(8)
    started, done = np.empty(n), np.empty(n)
    batch = np.empty(n, dtype=object)
    for c in range(200):
        slot = int(np.argmin(t))
        for k in range(50):
            j = c * 50 + k
            started[j] = t[slot]
            t[slot] += rng.uniform(0.1, 2.0)
            done[j] = t[slot]
            batch[j] = f"{c}"
        t[slot] += 0.5
    st["submitted"], st["started"], st["done"] = started - 1, started, done
    st["batch_id"] = pd.Series(batch, dtype=object)
    st["job_hash"] = pd.Series(["h" + b for b in batch], dtype=object)
    t0 = time.perf_counter()
    fig = bt.plot_timeline()
    fig.savefig(tmp_path / "t.png", dpi=100)
    by_algo = bt.plot_timeline(color_by="algo")
    by_algo.savefig(tmp_path / "a.png", dpi=100)
    took = time.perf_counter() - t0
    assert row_labels(fig) == [f"slot {k}" for k in range(1, 9)]
    # the legend counts the bars that show; the title says how many jobs are too short to see
    shown = [int(t.split("(")[1].rstrip(")")) for t in legend_labels(by_algo)]
    hidden = int(by_algo.axes[0].get_title().split("(")[1].split()[0].replace(",", ""))
    assert [t.split()[0] for t in legend_labels(by_algo)] == ["a", "b", "c", "d"]
    assert sum(shown) + hidden == n and min(shown) > 1000
    assert all(c.get_rasterized() for c in fig.axes[0].collections)
    assert took < 30, f"two timelines of 10,000 jobs took {took:.2f} s"  # speed: make bench


def test_pool_workers_get_one_row_each(reg):
    bt.batch_map(lambda x: x, x=range(4))
    bt.submit_workers(1)
    fig = bt.plot_timeline()
    assert row_labels(fig) == ["worker 1"]
    assert "4 jobs on 1 worker," in fig.axes[0].get_title()


def test_numeric_color_by_with_many_values_gets_a_colour_scale(reg):
    bt.batch_map(lambda x: x, x=range(1, 31))
    fake_run(reg, [("b1", list(range(1, 16)), 0.0), ("b2", list(range(16, 31)), 0.0)])
    fig = bt.plot_timeline(color_by="x")
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "x"  # the colour bar
    assert legend_labels(fig) == ["error (1)"]  # job 3 failed: hatched, in the legend
    assert fig.axes[0].get_legend().get_title().get_text() == ""
