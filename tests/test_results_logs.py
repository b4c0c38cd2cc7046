import pandas as pd
import pytest

import batchtools as bt


def test_load_and_reduce(reg):
    bt.batch_map(lambda x: x * 2, x=[1, 2, 3])
    bt.submit_jobs([1, 2])
    assert bt.load_result(2) == 4
    with pytest.raises(FileNotFoundError, match="not done"):
        bt.load_result(3)
    with pytest.raises(ValueError, match="do not exist"):
        bt.load_result(9)
    assert bt.reduce_results_list() == [2, 4]
    assert bt.reduce_results_list(fun=lambda r: r + 1) == [3, 5]
    with pytest.raises(ValueError, match="missing_val"):
        bt.reduce_results_list(ids=[1, 3])
    assert bt.reduce_results_list(ids=[1, 3], missing_val=None) == [2, None]
    assert bt.reduce_results(lambda a, b: a + b) == 6
    assert bt.reduce_results(lambda a, b: a + b, init=10) == 16
    with pytest.raises(TypeError, match="callable"):
        bt.reduce_results(None)


def test_reduce_results_dataframe(reg):
    bt.batch_map(lambda x: {"x": x, "sq": x * x}, x=[1, 2])
    bt.submit_jobs()
    df = bt.reduce_results_dataframe()
    assert df.columns.tolist() == ["job_id", "x", "sq"]
    assert df["sq"].tolist() == [1, 4]
    bt.clear_registry()
    bt.batch_map(lambda x: x / 2, x=[1, 2])
    bt.submit_jobs()
    df = bt.reduce_results_dataframe()
    assert df["result"].tolist() == [0.5, 1.0]
    bt.clear_registry()
    bt.batch_map(lambda x: pd.DataFrame({"a": [x, x]}), x=[1, 2])
    bt.submit_jobs()
    df = bt.reduce_results_dataframe()
    assert df["job_id"].tolist() == [1, 1, 2, 2]


def test_error_handling_example(reg):
    """The vignette's example: 10 jobs, one warning, two errors."""
    import warnings

    def f(x):
        if x == 3:
            warnings.warn("x is three", stacklevel=2)
        if x in (5, 8):
            raise ValueError(f"x is {x}")
        print("computing", x)
        return x

    bt.batch_map(f, x=range(1, 11))
    bt.submit_jobs()
    assert bt.find_errors()["job_id"].tolist() == [5, 8]
    msgs = bt.get_error_messages()
    assert msgs["message"].tolist() == ["ValueError: x is 5", "ValueError: x is 8"]
    assert msgs["terminated"].all() and msgs["error"].all()
    log5 = bt.get_log(5)
    assert any("Traceback" in line for line in log5)
    assert any("ValueError: x is 5" in line for line in log5)
    assert any("UserWarning: x is three" in line for line in bt.get_log(3))
    assert "computing 1" in bt.get_log(1)
    hits = bt.grep_logs(pattern="x is three", fixed=True)
    assert hits["job_id"].tolist() == [3]
    assert bt.grep_logs(pattern="COMPUTING 2$", ignore_case=True)["job_id"].tolist() == [2]
    missing = bt.get_error_messages(ids=[1, 5], missing_as_error=True)
    assert missing["error"].tolist() == [False, True]


def test_logs_of_chunk_are_split_per_job(mreg):
    bt.batch_map(lambda x: print(f"job says {x}") or x, x=[1, 2, 3])
    ids = bt.find_jobs()
    ids["chunk"] = 1
    bt.submit_jobs(ids)
    assert bt.wait_for_jobs()
    for i in (1, 2, 3):
        lines = bt.get_log(i)
        assert f"job says {i}" in lines
        assert not any(f"job says {j}" in line for j in (1, 2, 3) if j != i for line in lines)


def test_a_jobs_log_has_its_collections_header_and_footer_only(reg):
    """R's getLog: the job's lines and its collection's lines of no job (header, hook output, footer),
    never another job's; Interactive appends a session's collections to one log."""
    reg.cluster_functions.hooks = {"pre_do_collection": lambda jc: print("hook of", jc.job_hash)}
    bt.batch_map(lambda x: print(f"job says {x}") or x, x=[1, 2, 3])
    ids = bt.find_jobs()
    ids["chunk"] = [1, 1, 2]
    bt.submit_jobs(ids)
    hashes = bt.get_job_status()["job_hash"].tolist()
    assert len(set(bt.get_job_status()["log_file"])) == 1  # one session log
    for i in (1, 2, 3):
        lines = bt.get_log(i)
        assert lines[0].startswith("### [bt]: This is batchtools") and lines[-1] == "### [bt]: Calculation finished!"
        assert [line for line in lines if line.startswith("job says")] == [f"job says {i}"]
        assert [line for line in lines if line.startswith("hook of")] == [f"hook of {hashes[i - 1]}"]
        assert sum(line.startswith("### [bt]: This is batchtools") for line in lines) == 1
    with pytest.raises(ValueError, match="exactly one job id, got 2"):
        bt.get_log([1, 2])
    # a job run again (here: a new submission into the same session log) shows its newest run
    bt.submit_jobs([1])
    assert sum(line == "job says 1" for line in bt.get_log(1)) == 1


def test_log_errors(reg):
    bt.batch_map(lambda x: x, x=[1])
    with pytest.raises(FileNotFoundError, match="never submitted"):
        bt.get_log(1)
    with pytest.raises(ValueError, match="pattern"):
        bt.grep_logs(pattern="")


def test_stale_update_after_reset_is_ignored(reg):
    """An update written by a job's previous run must not resurrect it after a reset."""
    import pickle

    bt.batch_map(lambda x: x, x=[1])
    bt.submit_jobs()
    old_hash = bt.get_job_status()["job_hash"][0]
    bt.reset_jobs(1)
    upd = reg.layout.update(old_hash, "late-0")
    upd.write_bytes(pickle.dumps([[1, 1.0, 2.0, None, float("nan")]]))
    bt.sync_registry()
    assert bt.find_done().empty and not upd.exists()


def test_read_only_sync_keeps_update_files(reg):
    reg.cluster_functions = bt.make_cluster_functions_interactive(external=True)
    bt.batch_map(lambda x: x, x=[1])
    bt.submit_jobs()  # external: updates arrive as files; submit_jobs merges them
    ro = bt.load_registry(reg.file_dir, conf_file=None)
    assert bt.find_done(reg=ro)["job_id"].tolist() == [1]


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    from batchtools.core.persistence.files import atomic_write_bytes

    target = tmp_path / "t.pkl"
    atomic_write_bytes(target, b"old")

    class Boom(bytes):
        pass

    with pytest.raises(TypeError):
        atomic_write_bytes(target, object())  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["t.pkl"]
