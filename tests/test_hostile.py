"""Hostile and odd input: clear errors up front (the registry unchanged), odd registry paths on every
backend, shell-safe scripts, no code run from places others can write.

Each table test prints its counts (cases tried / passed), which the closing note of the issue quotes.
"""

import os
import pickle
import shlex
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import batchtools as bt
from batchtools.backends import ssh as ssh_mod
from batchtools.backends import template_names
from batchtools.backends.templates import Raw, cf_read_brew_template
from batchtools.core.contract.collection import JobCollection
from conftest import require_daemon, snapshot


def inc(x):
    return x + 1


# ------------------------------------------------------------------ bad calls
def bad_calls(tmp_path: Path) -> list[tuple[str, object, type, str]]:
    """(what, call, exception type, pattern the message must match: the argument and the way out)."""
    lock = threading.Lock()
    planted = tmp_path / "afile"
    planted.write_text("x")
    return [
        ("make_registry(file_dir=123)", lambda: bt.make_registry(file_dir=123), TypeError, "file_dir: must be a folder path"),
        ("make_registry(file_dir=b'x')", lambda: bt.make_registry(file_dir=b"x"), TypeError, "file_dir: must be a folder path"),
        ("make_registry below a file", lambda: bt.make_registry(file_dir=planted / "reg"), NotADirectoryError, "is a file"),
        ("make_registry with a newline", lambda: bt.make_registry(file_dir=tmp_path / "a\nb"), ValueError,
         r"control character.*\\n"),
        ("load_registry(None)", lambda: bt.load_registry(None), TypeError, "file_dir: must be a folder path"),
        ("2-d ids", lambda: bt.find_jobs(ids=[[1, 2], [3, 4]]), ValueError, "ids: job ids must be one-dimensional"),
        ("ids=[2**70]", lambda: bt.find_jobs(ids=[2**70]), ValueError, "ids: job ids must be positive ints"),
        ("ids='1'", lambda: bt.find_jobs(ids="1"), TypeError, "ids: expected job ids"),
        ("ids=[1.5]", lambda: bt.find_jobs(ids=[1.5]), TypeError, "ids: job ids must be whole numbers"),
        ("unknown ids", lambda: bt.find_jobs(ids=[99]), ValueError, "ids: 1 job id.*do not exist"),
        ("reduce_results_list(fun='x')", lambda: bt.reduce_results_list(fun="x"), TypeError, "fun: must be callable"),
        ("reduce_results(fun=None)", lambda: bt.reduce_results(None), TypeError, "fun: must be callable"),
        ("grep_logs(pattern='(')", lambda: bt.grep_logs(pattern="("), ValueError,
         "pattern:.*not a valid regular expression.*fixed=True"),
        ("grep_logs(pattern='')", lambda: bt.grep_logs(pattern=""), ValueError, "pattern: a non-empty string"),
        ("chunk(5)", lambda: bt.chunk(5, n_chunks=2), TypeError, "x: must be a list"),
        ("chunk(both sizes)", lambda: bt.chunk([1, 2], n_chunks=1, chunk_size=1), ValueError,
         "n_chunks, chunk_size: give exactly one"),
        ("lpt([1, 'a'])", lambda: bt.lpt([1, "a"], n_chunks=2), TypeError, "x: weights must be numbers"),
        ("lpt(n_chunks=0)", lambda: bt.lpt([1], n_chunks=0), ValueError, "n_chunks: must be a positive int"),
        ("binpack(chunk_size='5')", lambda: bt.binpack([1, 2], chunk_size="5"), TypeError,
         "chunk_size: must be a finite number"),
        ("binpack([inf])", lambda: bt.binpack([float("inf")]), ValueError, "x: weights must be finite"),
        ("template=123", lambda: bt.make_cluster_functions_slurm(template=123), TypeError, "template:"),
        ("template syntax error", lambda: bt.make_cluster_functions_slurm(template="#!/bin/sh\n{% if %}\n"),
         ValueError, r"template: <template text>, line 2"),
        ("remove_algorithms(5)", lambda: bt.remove_algorithms(5, reg=make_exp(tmp_path)), TypeError,
         "name: the algorithm name"),
        ("add_problem('..')", lambda: bt.add_problem("..", reg=make_exp(tmp_path)), ValueError,
         "name: a problem name must.*starting with a letter or digit"),
        ("design with duplicate columns", lambda: bt.add_experiments(
            {"p": pd.DataFrame([[1, 2]], columns=["n", "n"])}, {"a": None}, reg=make_exp(tmp_path)),
         ValueError, r"duplicate column.*\['n'\]"),
        ("batch_map over locks", lambda: bt.batch_map(inc, x=[lock, lock], reg=fresh(tmp_path)), TypeError,
         "x: the value of job 1 .lock. cannot be stored"),
        ("batch_export with a lock", lambda: bt.batch_export({"a": 1, "lk": lock}), TypeError,
         "export: 'lk' cannot be serialised.*nothing was exported"),
        ("submit_workers(heartbeat=nan)", lambda: bt.submit_workers(1, heartbeat=float("nan")), ValueError,
         "heartbeat: must be a finite number"),
        ("submit_workers(n_workers=-1)", lambda: bt.submit_workers(-1), ValueError, "n_workers: must be an int"),
        ("make_cluster_functions(poll=-1)", lambda: bt.make_cluster_functions("X", inc, poll=-1), ValueError,
         "poll: must be a finite number of seconds > 0"),
        ("make_cluster_functions(fs_latency=inf)", lambda: bt.make_cluster_functions("X", inc, fs_latency=float("inf")),
         ValueError, "fs_latency: must be a finite"),
        ("kill_jobs(kill_timeout='x')", lambda: bt.kill_jobs(kill_timeout="x"), ValueError,
         "kill_timeout: must be a finite number"),
        ("wait_for_jobs(timeout=nan)", lambda: bt.wait_for_jobs(timeout=float("nan")), ValueError,
         "timeout: must be a number of seconds"),
        ("walltime=inf", lambda: bt.submit_jobs(resources={"walltime": float("inf")}), ValueError,
         "resources: walltime must be a finite positive number"),
        ("walltime=-1", lambda: bt.submit_jobs(resources={"walltime": -1}), ValueError,
         "resources: walltime must be a finite positive number"),
        ("memory='lots'", lambda: bt.submit_jobs(resources={"memory": "lots"}), ValueError,
         "resources: memory must be a positive integer"),
        ("resources with a file", lambda: bt.submit_jobs(resources={"f": sys.stdout}), TypeError,
         "resources: f cannot be stored"),
        ("resources not a dict", lambda: bt.submit_jobs(resources=["walltime"]), TypeError, "resources: must be a dict"),
        ("tags with a comma", lambda: bt.add_job_tags([1], "a,b"), ValueError, "tags: must be non-empty strings"),
        ("set_job_names wrong length", lambda: bt.set_job_names([1, 2], ["a"]), ValueError, "names: need one name per job"),
        ("sleep='x'", lambda: bt.submit_jobs(sleep="x"), TypeError, "sleep: must be None"),
        ("Worker('-oProxyCommand=x')", lambda: bt.Worker("-oProxyCommand=touch PWNED", ncpus=1), ValueError,
         "nodename: must be a host name"),
        ("Worker('a b')", lambda: bt.Worker("a b", ncpus=1), ValueError, "nodename: must be a host name"),
        ("Worker(ncpus=0)", lambda: bt.Worker("localhost", ncpus=0), ValueError, "ncpus: must be a positive int"),
        ("Multicore(ncpus=0)", lambda: bt.make_cluster_functions_multicore(0), ValueError, "ncpus: must be a positive"),
        ("load_registry(writeable='yes')", lambda: bt.load_registry(tmp_path / "main", writeable="yes"), TypeError,
         "writeable: must be True or False"),
        ("load_registry(force=True) read-only", lambda: bt.load_registry(tmp_path / "main", force=True), ValueError,
         "force: takes the writeable lease"),
        ("find_jobs('x >')", lambda: bt.find_jobs("x >"), ValueError, "expr: cannot evaluate"),
        ("find_jobs(3)", lambda: bt.find_jobs(3), TypeError, "expr: must be a query string"),
        ("estimate_runtimes(list)", lambda: bt.estimate_runtimes([1, 2]), TypeError, "tab: a DataFrame"),
        ("unwrap(list)", lambda: bt.unwrap([1]), TypeError, "df: expected a DataFrame"),
        ("ijoin(x, 1)", lambda: bt.ijoin(bt.find_jobs(), 1), TypeError, "y: expected a DataFrame"),
        ("seed='1'", lambda: bt.make_registry(file_dir=tmp_path / "s", seed="1"), TypeError, "seed: must be an int"),
    ]


_n = [0]


def fresh(tmp_path: Path):
    _n[0] += 1
    return bt.make_registry(file_dir=tmp_path / f"fresh{_n[0]}", conf_file=None, make_default=False)


def make_exp(tmp_path: Path):
    _n[0] += 1
    reg = bt.make_experiment_registry(file_dir=tmp_path / f"exp{_n[0]}", conf_file=None, make_default=False)
    bt.add_problem("p", fun=lambda data, job, n: n, reg=reg)
    bt.add_algorithm("a", fun=lambda instance: instance, reg=reg)
    return reg


def test_bad_calls_are_refused_clearly_and_change_nothing(tmp_path, capsys):
    reg = bt.make_registry(file_dir=tmp_path / "main", seed=1, conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(inc, x=[1, 2, 3])
    bt.submit_jobs([1, 2])
    before = snapshot(reg.file_dir)
    tables = {k: v.copy() for k, v in reg.tables.items()}
    passed = []
    for what, call, exc, pattern in bad_calls(tmp_path):
        with pytest.raises(exc, match=pattern):
            call()
        assert snapshot(reg.file_dir) == before, what
        assert all(reg.tables[k].equals(t) for k, t in tables.items()), what
        passed.append(what)
    assert not (tmp_path / "PWNED").exists()
    with capsys.disabled():
        print(f"\nbad calls: {len(passed)} tried, {len(passed)} refused with a message naming the argument, "
              "registry unchanged after each")


def test_walltime_is_rounded_up_to_what_a_scheduler_can_express(tmp_path):
    from batchtools.core.jobstate.resources import validate_resources

    assert validate_resources({"walltime": 0.5})["walltime"] == 1
    assert validate_resources({"walltime": 61.2})["walltime"] == 62
    jc = JobCollection(file_dir=str(tmp_path), work_dir=str(tmp_path), job_hash="job1", jobs=[{"job_id": 1}], seed=1,
                       resources=validate_resources({"walltime": 0.5}), log_file=str(tmp_path / "l.log"))
    expected = {"slurm": "--time=0:01", "sge": "h_rt=1", "torque": "walltime=1", "pbspro": "walltime=1",
                "lsf": "-W 1", "openlava": "-W 1"}
    assert sorted(expected) == sorted(template_names()), "a shipped template without its expected time limit here"
    for name, expect in expected.items():
        script = cf_read_brew_template(name).render(resources=jc.resources, log_file="x", job_name="j",
                                                    command=Raw("true"), **NOT_ARRAY)
        assert expect in script, (name, script)


# --------------------------------------------------------- odd registry paths
# the other variables a shipped template uses (rendered by hand here; an unknown name is an error)
NOT_ARRAY = {"array_jobs": False, "n_array_jobs": 1, "array_throttle": None, "debug": "", "warning": None}

ODD_NAMES = ["with space", " lead", "trail ", "a; b", "q'uote", 'dq"uote', "$(touch PWNED)", "`touch PWNED`",
             "pct%x", "back\\slash", "dollar$HOME", "star*?", "ümlaut-é", "-dash", "new\nline", "tab\tx"]


def try_path(tmp_path: Path, name: str, backend: str, make_cf) -> str:
    """One cell of the matrix: 'ok' (jobs ran, right results), or 'refused: ...' (an error naming the
    character, before anything ran). Anything else fails the test."""
    base = tmp_path / backend.replace(" ", "_")
    base.mkdir(exist_ok=True)
    path = base / name / "reg"
    try:
        reg = bt.make_registry(file_dir=path, seed=1, conf_file=None, make_default=False)
    except ValueError as e:
        assert "control character" in str(e) and "file_dir" in str(e)
        return "refused: make_registry"
    try:
        try:
            reg.cluster_functions = make_cf()
        except ValueError as e:
            assert "file_dir" in str(e) and "contains" in str(e)
            return f"refused: {backend}"
        bt.batch_map(inc, x=[1, 2, 3], reg=reg)
        if backend == "pool":
            bt.submit_workers(2, idle_timeout=0, reg=reg)
        else:
            bt.submit_jobs(bt.find_jobs(reg=reg).assign(chunk=[1, 1, 2]), reg=reg)
        assert bt.wait_for_jobs(reg=reg, timeout=600), bt.get_error_messages(reg=reg)
        assert bt.reduce_results_list(reg=reg) == [2, 3, 4]
        assert "Starting job" in "\n".join(bt.get_log(3, reg=reg))
        return "ok"
    finally:
        if getattr(reg, "cluster_functions", None) is not None:
            reg.cluster_functions.close()


def run_matrix(tmp_path: Path, backend: str, make_cf, capsys) -> dict:
    results = {name: try_path(tmp_path, name, backend, make_cf) for name in ODD_NAMES}
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()
    with capsys.disabled():
        ok = sum(r == "ok" for r in results.values())
        print(f"\npaths x {backend}: {len(results)} tried, {ok} work, {len(results) - ok} refused up front "
              f"({', '.join(repr(n) for n, r in results.items() if r != 'ok')}), 0 silent failures")
    return results


@pytest.mark.parametrize("backend", ["Interactive", "Multicore", "Socket", "pool"])
def test_odd_paths_on_local_backends(tmp_path, backend, capsys):
    make = {"Interactive": bt.make_cluster_functions_interactive, "Multicore": lambda: bt.make_cluster_functions_multicore(2),
            "Socket": lambda: bt.make_cluster_functions_socket(2), "pool": lambda: bt.make_cluster_functions_multicore(2)}
    results = run_matrix(tmp_path, backend, make[backend], capsys)
    assert {n for n, r in results.items() if r != "ok"} == {"new\nline", "tab\tx"}


def test_odd_paths_on_ssh(tmp_path, capsys):
    from test_ssh import sshd_ok

    problem = sshd_ok()
    require_daemon(problem and f"sshd is not usable: {problem}", "BATCHTOOLS_TEST_SSH")
    workers = [bt.Worker("bt-node-a", ncpus=2, max_load=100)]
    try:
        results = run_matrix(tmp_path, "SSH", lambda: bt.make_cluster_functions_ssh(workers), capsys)
    finally:
        workers[0].close()
    assert {n for n, r in results.items() if r != "ok"} == {"new\nline", "tab\tx"}


def test_odd_paths_on_slurm(tmp_path, capsys):
    from test_slurm import slurm_problem

    require_daemon(slurm_problem(), "BATCHTOOLS_TEST_SLURM")

    def make():
        cf = bt.make_cluster_functions_slurm(scheduler_latency=0, fs_latency=5)
        cf.poll, cf.poll_max = 0.5, 2
        return cf

    results = run_matrix(tmp_path, "Slurm", make, capsys)
    assert {n for n, r in results.items() if r != "ok"} == {"new\nline", "tab\tx", "back\\slash"}


def test_odd_paths_on_sge(tmp_path, capsys):
    from test_sge import sge_problem

    require_daemon(sge_problem(), "BATCHTOOLS_TEST_SGE")

    def make():
        cf = bt.make_cluster_functions_sge(scheduler_latency=0, fs_latency=5)
        cf.poll, cf.poll_max = 0.5, 2
        return cf

    results = run_matrix(tmp_path, "SGE", make, capsys)
    refused = {n for n, r in results.items() if r != "ok"}
    assert refused == {"new\nline", "tab\tx", "q'uote", 'dq"uote', "$(touch PWNED)", "dollar$HOME"}


@pytest.mark.parametrize("name", ["torque", "lsf", "openlava"])
def test_untestable_schedulers_refuse_unusual_paths(tmp_path, name):
    make = {"torque": bt.make_cluster_functions_torque, "lsf": bt.make_cluster_functions_lsf,
            "openlava": bt.make_cluster_functions_openlava}[name]
    for odd in ("with space", "a;b", "q'x", "$(x)"):
        reg = bt.make_registry(file_dir=tmp_path / name / odd / "reg", conf_file=None, make_default=False)
        with pytest.raises(ValueError, match=f"the {name.upper() if name == 'torque' else {'lsf': 'LSF', 'openlava': 'OpenLava'}[name]} backend accepts"):
            reg.cluster_functions = make()


# ------------------------------------------------------------ values in scripts
HOSTILE = ["$(touch PWNED)", "`touch PWNED`", "a; touch PWNED", "x' ; touch PWNED; '", 'x" ; touch PWNED; "',
           "with space", "pct%s"]


@pytest.mark.parametrize("template", [*template_names(), "custom"])
def test_hostile_values_reach_scripts_as_literal_words(tmp_path, template, capsys):
    """Every value a template prints is one literal shell word: running the rendered script (with
    `true` as the interpreter) creates no file, and each directive holds the exact path."""
    custom = ("#!/bin/bash\n#X --out={{ log_file }}\ncd {{ uri }}/.. 2>/dev/null; echo {{ job_name }} {{ uri }}\n"
              "{{ command }}\n")
    tmpl = cf_read_brew_template(custom if template == "custom" else template)
    tried = 0
    for value in HOSTILE:
        work = tmp_path / f"w{tried}"
        work.mkdir()
        log_file = f"/tmp/{value}/x.log"
        uri = f"/tmp/{value}/jobs/j.pkl"
        script = tmpl.render(log_file=log_file, uri=uri, job_name=value, resources={},
                             command=Raw(shlex.join(["true", "-m", "batchtools.worker", uri])), **NOT_ARRAY)
        path = work / "job.sh"
        path.write_text(script)
        subprocess.run(["bash", str(path)], cwd=work, capture_output=True, timeout=30)
        assert not (work / "PWNED").exists(), script
        directive = next(line for line in script.splitlines() if log_file[:5] in line and line.startswith("#"))
        assert log_file in shlex.split(directive.replace("=", " ", 1).split(" ", 1)[1]), directive
        tried += 1
    with capsys.disabled():
        print(f"\nhostile values x {template} template: {tried} tried, {tried} literal, 0 executed")


def test_raw_opt_out_for_template_authors():
    tmpl = cf_read_brew_template("#!/bin/sh\nA={{ x }}\nB={{ x | raw }}\nC={{ x | q }}\n")
    out = tmpl.render(x="a b")
    assert out.splitlines()[1:] == ["A='a b'", "B=a b", "C='a b'"]


# ------------------------------------------------------------------------ SSH
def test_ssh_control_sockets_live_in_a_private_folder(tmp_path, monkeypatch):
    d = tmp_path / "ctl"
    monkeypatch.setattr(ssh_mod, "CONTROL_DIR", str(d))
    assert ssh_mod.private_control_dir() == str(d) and stat.S_IMODE(os.stat(d).st_mode) == 0o700
    os.chmod(d, 0o777)  # someone opened it up (or pre-created it for everyone)
    with pytest.raises(PermissionError, match="not a folder private to you"):
        ssh_mod.private_control_dir()
    os.chmod(d, 0o700)
    assert "--" in bt.Worker("somehost", ncpus=1)._argv("probe")


def test_ssh_control_sockets_fit_a_unix_socket_path_under_a_long_tmpdir(tmp_path, monkeypatch):
    long_tmp = tmp_path / ("t" * 60)
    long_tmp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(long_tmp))
    folder = ssh_mod._default_control_dir()
    assert not folder.startswith(str(long_tmp)) and folder.startswith("/tmp/")
    assert len(folder) + 1 + ssh_mod.SOCKET_NAME_LEN <= ssh_mod.SOCKET_PATH_MAX
    short = tempfile.mkdtemp(dir="/tmp", prefix="s")
    try:
        monkeypatch.setattr("tempfile.tempdir", short)
        assert ssh_mod._default_control_dir() == os.path.join(short, f"batchtools-ssh-{os.getuid()}")
    finally:
        os.rmdir(short)


# ---------------------------------------------- code from places others can write
def test_planted_configuration_and_template_are_not_used(tmp_path, caplog):
    conf = tmp_path / "batchtools.conf.py"
    conf.write_text(f"open({str(tmp_path / 'RAN')!r}, 'w').close()\n")
    os.chmod(conf, 0o666)
    tmpl = tmp_path / "batchtools.slurm.tmpl"
    tmpl.write_text("#!/bin/sh\ntouch PWNED\n{{ command }}\n")
    os.chmod(tmpl, 0o666)
    with caplog.at_level("WARNING", logger="batchtools"):
        bt.make_registry(file_dir=tmp_path / "r")
        cf = bt.make_cluster_functions_slurm()
    assert not (tmp_path / "RAN").exists()
    assert "not running it" in caplog.text and str(conf) in caplog.text
    assert "skipping" in caplog.text and str(tmpl) in caplog.text
    assert cf is not None
    os.chmod(conf, 0o644)  # the user's own file: used
    bt.make_registry(file_dir=tmp_path / "r2")
    assert (tmp_path / "RAN").exists()
    (tmp_path / "RAN").unlink()
    with pytest.raises(PermissionError, match="conf_file:.*writable by other users"):
        os.chmod(conf, 0o666)
        bt.make_registry(file_dir=tmp_path / "r3", conf_file=str(conf))


def test_command_line_runs_no_configuration_unless_asked(tmp_path):
    reg = bt.make_registry(file_dir=tmp_path / "registry", conf_file=None)
    bt.batch_map(inc, x=[1])
    reg.lease.release()
    conf = tmp_path / "batchtools.conf.py"
    conf.write_text(f"open({str(tmp_path / 'RAN')!r}, 'w').close()\n")
    os.chmod(conf, 0o644)
    out = subprocess.run([sys.executable, "-m", "batchtools.cli", "status"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0 and "Status for 1 jobs" in out.stdout
    assert not (tmp_path / "RAN").exists()
    out = subprocess.run([sys.executable, "-m", "batchtools.cli", "--conf", str(conf), "status"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert out.returncode == 0 and (tmp_path / "RAN").exists()


def test_umask_000_creates_no_world_writable_entry_and_load_refuses_one(tmp_path):
    code = f"""
import os, batchtools as bt
os.umask(0)
reg = bt.make_registry(file_dir={str(tmp_path / 'reg')!r}, conf_file=None)
reg.cluster_functions = bt.make_cluster_functions_interactive()
bt.batch_map(lambda x: x, x=[1, 2]); bt.submit_jobs([1]); bt.submit_workers(1, ids=[2]); bt.add_job_tags([1], "t")
bt.batch_export({{"a": 1}})
"""
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    exposed = [str(p) for p in (tmp_path / "reg").rglob("*") if p.lstat().st_mode & 0o002]
    assert exposed == [] and not (tmp_path / "reg").stat().st_mode & 0o002
    os.chmod(tmp_path / "reg" / "results", 0o777)
    with pytest.raises(PermissionError, match=r"can be changed by any user.*results.*chmod -R o-w"):
        bt.load_registry(tmp_path / "reg")
    os.environ["BATCHTOOLS_ALLOW_WORLD_WRITABLE"] = "1"
    try:
        assert bt.load_registry(tmp_path / "reg").get_status().defined == 2
    finally:
        del os.environ["BATCHTOOLS_ALLOW_WORLD_WRITABLE"]


def test_registry_pickles_are_trusted_like_code(tmp_path):
    """The documented rule, checked: a replaced result is unpickled by the owner's session, which
    is why load refuses registries others can write to (see the test above)."""
    reg = bt.make_registry(file_dir=tmp_path / "r", conf_file=None)
    reg.cluster_functions = bt.make_cluster_functions_interactive()
    bt.batch_map(inc, x=[1])
    bt.submit_jobs()
    assert pickle.loads(reg.store.raw(1)) == 2
    assert np.isclose(bt.load_result(1), 2)
