import pytest

import batchtools as bt
from batchtools.backends import template_names


def test_template_lookup_order(tmp_path, monkeypatch):
    shipped = bt.find_template_file("slurm")
    assert shipped.endswith("slurm-simple.tmpl")
    (tmp_path / "xdg" / "batchtools").mkdir(parents=True)
    (tmp_path / "xdg" / "batchtools" / "slurm.tmpl").write_text("#xdg\n")
    assert bt.find_template_file("slurm").endswith("xdg/batchtools/slurm.tmpl")
    (tmp_path / "batchtools.slurm.tmpl").write_text("#local\n")
    assert bt.find_template_file("slurm") == str(tmp_path / "batchtools.slurm.tmpl")
    assert bt.find_template_file(str(tmp_path / "batchtools.slurm.tmpl")).endswith("batchtools.slurm.tmpl")
    with pytest.raises(FileNotFoundError, match="looked in"):
        bt.find_template_file("nosuchscheduler")
    for name in template_names():
        assert bt.find_template_file(name)


def render(reg, resources, names=None, template="slurm"):
    bt.batch_map(lambda x: x, x=[1, 2])
    if names:
        bt.set_job_names([1], names)
    jc = bt.make_job_collection([1], resources=resources)
    path = bt.cf_brew_template(reg, bt.cf_read_brew_template(template), jc)
    return open(path).read()


def test_slurm_template_resources(reg):
    text = render(reg, {"walltime": 3690, "memory": 2048, "ncpus": 4, "ntasks": 2, "partition": "short",
                        "account": "proj-1", "gpus": 1, "omp_threads": 2})
    for line in ("#SBATCH --time=61:30", "#SBATCH --mem-per-cpu=2048", "#SBATCH --cpus-per-task=4",
                 "#SBATCH --ntasks=2", "#SBATCH --partition=short", "#SBATCH --account=proj-1",
                 "#SBATCH --gpus=1", "export OMP_NUM_THREADS=2", "-m batchtools.worker"):
        assert line in text, line
    assert "#SBATCH --array" not in text


def test_no_shell_injection(reg):
    with pytest.raises(ValueError, match="not allowed in a job script"):
        render(reg, {"partition": "short; rm -rf ~"})
    bt.clear_registry()
    text = render(reg, {}, names=["evil$(reboot)\n#SBATCH --x"])
    assert "$(" not in text and "evil__reboot___SBATCH_--x" in text
    bt.clear_registry()
    with pytest.raises(TypeError, match="job script"):
        render(reg, {"partition": object()})


def test_an_unknown_template_variable_is_an_error_naming_it(reg):
    with pytest.raises(ValueError, match="'job_hashh' is undefined.*job_hash"):
        render(reg, {}, template="#!/bin/sh\n# {{ job_hashh }}\n{{ command }}\n")


def test_r_template_variables_exist(reg):
    names = ("job_hash", "job_name", "log_file", "uri", "resources", "array_jobs", "array_var", "jobs", "file_dir",
             "work_dir", "seed", "packages", "namespaces", "source", "load", "compress", "hooks")
    text = render(reg, {"walltime": 60}, template="#!/bin/sh\n" + "".join(f"{n}={{{{ {n} }}}}\n" for n in names))
    values = dict(line.split("=", 1) for line in text.splitlines()[1:])
    jc_hash = values["job_hash"]
    assert jc_hash.startswith("job") and values["uri"].endswith(f"jobs/{jc_hash}.pkl")
    assert values["seed"] == str(reg.seed) and values["file_dir"] == str(reg.file_dir)
    assert values["log_file"].endswith(f"logs/{jc_hash}.log")
    # a resource that is not set is None (empty), a resource that is set is there
    bt.clear_registry()
    text = render(reg, {"walltime": 60}, template="#!/bin/sh\nA={{ resources.walltime }}\nB={{ resources.nope }}\n")
    assert text.splitlines()[1:] == ["A=60", "B="]


def test_slurm_dortmund_template(reg):
    text = render(reg, {"walltime": 3600, "memory": 2048, "ncpus": 2}, template="slurm-dortmund")
    for line in ("#SBATCH --time=60", "#SBATCH --mem-per-cpu=2048", "#SBATCH --cpus-per-task=2", "#SBATCH --ntasks=1",
                 "#SBATCH --partition=all", "-m batchtools.worker"):
        assert line in text, line
    assert "mpirun -np" not in text
    bt.clear_registry()
    text = render(reg, {"walltime": 60, "memory": 200, "ncpus": 4, "mpi": True}, template="slurm-dortmund")
    assert "#SBATCH --ntasks=4" in text and "#SBATCH --cpus-per-task=1" in text and "mpirun -np 1 " in text
    bt.clear_registry()
    with pytest.raises(ValueError, match="walltime must be 1 to 172800"):
        render(reg, {"memory": 200}, template="slurm-dortmund")
