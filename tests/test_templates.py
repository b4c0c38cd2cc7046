import pytest

import batchtools as bt


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
    for name in ("torque", "sge", "lsf", "openlava"):
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
