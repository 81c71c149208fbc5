"""hydra/launcher=slurm (hydra-submitit-launcher): the allocation composed from the hardware group, the sbatch script
submitit would submit, the refusals before submitting, and the job-side DDP handling under SLURM's variables.

There is no SLURM cluster here: `sbatch` and `srun` are stand-ins on PATH. The `sbatch` one keeps the script it is
given and fails the submission, so a test reads exactly what a cluster would receive and nothing waits on a queue.
"""

import dataclasses
import os
import stat

import pytest
from conftest import CONF, TEST_OVERRIDES, compose_config, run_cli
from hydra import compose, initialize_config_dir

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install -e '.[slurm]'")

SLURM = "hydra/launcher=slurm"


def launcher(*overrides: str) -> dict:
    """hydra.launcher as the launcher receives it (interpolations resolved), from the real config tree."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*TEST_OVERRIDES, SLURM, *overrides], return_hydra_config=True)
    node = cfg.hydra.launcher
    return {key: node[key] for key in node if key not in ("submitit_folder", "name")}  # need a running app


@pytest.mark.parametrize(
    ("overrides", "nodes", "tasks", "gpus"),
    [
        (["hardware=ddp", "hardware.devices=4", "hardware.num_nodes=2"], 2, 4, 4),
        (["hardware=ddp"], 1, 2, 2),  # the preset's own devices
        (["hardware=ddp", "hardware.devices=[0,1,2]"], 1, 3, 3),  # GPU indices: one task each
        (["hardware=ddp", "hardware.accelerator=cpu", "hardware.devices=3"], 1, 3, None),  # CPU: no GPUs asked
        (["hardware=cpu"], 1, 1, None),
        (["hardware=gpu", "hardware.num_nodes=3"], 3, 1, 1),
    ],
)
def test_allocation_follows_the_hardware_group(overrides, nodes, tasks, gpus):
    got = launcher(*overrides)
    assert (got["nodes"], got["tasks_per_node"], got["gpus_per_node"]) == (nodes, tasks, gpus)
    assert got["_target_"] == "hydra_plugins.peftlab_slurm_launcher.slurm_launcher.SlurmLauncher"
    assert (got["timeout_min"], got["cpus_per_task"], got["mem_per_cpu"]) == (240, 4, "4G")
    assert got["max_num_timeout"] == 0 and got["signal_delay_s"] == 120  # the plugin's own defaults, kept


def test_defaults_and_plugin_keys_are_overridable():
    got = launcher(
        "hardware=ddp",
        "hydra.launcher.timeout_min=30",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.mem_per_cpu=null",
        "hydra.launcher.mem_gb=64",
    )
    assert (got["timeout_min"], got["partition"], got["mem_per_cpu"], got["mem_gb"]) == (30, "gpu", None, 64)


def test_the_rest_of_a_run_composes_as_without_the_launcher():
    with_slurm = compose_config(["hardware=ddp", "hardware.devices=4", SLURM])
    without = compose_config(["hardware=ddp", "hardware.devices=4"])
    assert with_slurm == without  # the option touches hydra.launcher only


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """`srun` (submitit only checks that it exists) and an `sbatch` that keeps its script and refuses the job."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = tmp_path / "submitted.sh"
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" "{script}"\necho "sbatch: no cluster here" >&2\nexit 1\n')
    for tool in bin_dir.iterdir():
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return script


def sweep(tmp_path, *overrides: str):
    return run_cli("-m", SLURM, f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides, timeout=120)


def sbatch_lines(script) -> list[str]:
    return [line for line in script.read_text().splitlines() if line.startswith("#SBATCH")]


def test_sbatch_script_of_a_two_node_ddp_sweep(tmp_path, fake_slurm):
    proc = sweep(tmp_path, "hardware=ddp", "hardware.devices=4", "hardware.num_nodes=2", "seed=0,1,2")
    assert "sbatch: no cluster here" in proc.stderr  # the submission was attempted, with this script:
    lines = sbatch_lines(fake_slurm)
    for flag in ("--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4", "--time=240", "--cpus-per-task=4"):
        assert f"#SBATCH {flag}" in lines
    assert "#SBATCH --mem-per-cpu=4G" in lines
    assert "#SBATCH --array=0-2%3" in lines  # one array task per sweep point, all three at once
    assert "#SBATCH --job-name=train" in lines  # not bash/interactive, which Lightning's SLURM detection skips
    submit = [line for line in fake_slurm.read_text().splitlines() if line.startswith("srun ")]
    assert len(submit) == 1 and submit[0].endswith(f"-m submitit.core._submit {tmp_path / 'sweep'}/.submitit/%j")
    assert f"--output {tmp_path / 'sweep'}/.submitit/%A_%a/%A_%a_%t_log.out" in submit[0]  # a log per task


def test_sbatch_script_on_cpu_asks_for_no_gpus(tmp_path, fake_slurm):
    proc = sweep(
        tmp_path, "hardware=ddp", "hardware.accelerator=cpu", "hardware.devices=2", "hydra.launcher.timeout_min=15"
    )
    assert "sbatch: no cluster here" in proc.stderr
    lines = sbatch_lines(fake_slurm)
    assert {"#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=2", "#SBATCH --time=15"} <= set(lines)
    assert not [line for line in lines if "gpu" in line]
    assert not [line for line in lines if line.startswith("#SBATCH --array")]  # one job: no array


@pytest.mark.parametrize(
    ("overrides", "first_words", "key"),
    [
        (["hardware=ddp", "hardware.devices=2,4"], "error: hardware.devices=4 in sweep job 1 ", "tasks_per_node"),
        (["hardware=cpu", "hardware.num_nodes=1,2"], "error: hardware.num_nodes=2 in sweep job 1 ", "nodes"),
        (
            ["hardware=ddp", "hydra.launcher.tasks_per_node=8"],
            "error: hardware.devices=2 in sweep job 0 ",
            "tasks_per_node",
        ),
        (
            ["hardware=ddp", "hydra.launcher.gpus_per_node=1"],
            "error: hardware.devices=2 in sweep job 0 ",
            "gpus_per_node",
        ),
        (["hardware=ddp", "hardware.devices=auto"], "error: hardware.devices=auto: ", None),
        (["hardware=ddp", "hardware.devices=-1"], "error: hardware.devices=-1: ", None),
    ],
)
def test_refused_before_anything_is_submitted(tmp_path, fake_slurm, overrides, first_words, key):
    proc = sweep(tmp_path, *overrides, "seed=0")
    assert proc.returncode == 2, proc.stderr[-3000:]
    message = proc.stderr.strip()
    assert "\n" not in message and message.startswith(first_words)
    if key:
        assert f"hydra.launcher.{key}=" in message
    assert not fake_slurm.exists()  # sbatch never ran


# What srun sets in each task of a 1-node, 2-task job (the variables Lightning's SLURMEnvironment reads).
SRUN_TASK = {
    "SLURM_NTASKS": "2",
    "SLURM_NTASKS_PER_NODE": "2",
    "SLURM_NNODES": "1",
    "SLURM_JOB_NAME": "train",
    "SLURM_JOB_ID": "4242",
    "SLURM_NODELIST": "node7",
    "SLURM_PROCID": "1",
    "SLURM_LOCALID": "1",
    "SLURM_NODEID": "0",
}


@pytest.fixture
def slurm_task(monkeypatch):
    for name in [n for n in os.environ if n.startswith("SLURM_")]:
        monkeypatch.delenv(name)
    for name in ("MASTER_ADDR", "MASTER_PORT"):  # Lightning sets them from SLURM's: removed again afterwards
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    for name, value in SRUN_TASK.items():
        monkeypatch.setenv(name, value)
    # A Trainer built as SLURM's rank 1 sets Lightning's process-wide rank; restored afterwards, or every later
    # Trainer in this test process would log nothing (loggers write on rank 0 only).
    from lightning_utilities.core.rank_zero import rank_zero_only as utils_rank_zero_only
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    for function in (rank_zero_only, utils_rank_zero_only):
        monkeypatch.setattr(function, "rank", getattr(function, "rank", 0))


@pytest.fixture
def ddp_cpu_settings(monkeypatch, tmp_path):
    from peftlab.config import validate
    from peftlab.run import distributed

    monkeypatch.setattr(distributed, "in_multirun", lambda: True)  # as in a -m sweep job
    cfg = compose_config(["hardware=ddp", "hardware.accelerator=cpu", "hardware.devices=2"], tmp_path / "run")
    settings = validate(cfg, check_with_peft=False)
    return cfg, dataclasses.replace(settings, composed=cfg)  # as run.job_settings, without peft's check


def test_a_sweep_job_trains_in_the_srun_task(slurm_task, ddp_cpu_settings):
    from peftlab.run import distributed

    _, settings = ddp_cpu_settings
    # srun started every rank: the job runs in this process, not re-run as `python train.py` (under submitit the
    # entry point is submitit's, hydra #2231)
    assert not distributed.needs_own_process_group(settings.hardware)


def test_a_sweep_job_off_slurm_still_gets_its_own_process_group(monkeypatch, ddp_cpu_settings):
    from peftlab.run import distributed

    for name in [n for n in os.environ if n.startswith("SLURM_")]:
        monkeypatch.delenv(name)
    _, settings = ddp_cpu_settings
    assert distributed.needs_own_process_group(settings.hardware)


def test_lightning_takes_the_ranks_from_slurm(slurm_task, ddp_cpu_settings):
    from lightning_fabric.plugins.environments import SLURMEnvironment

    from peftlab.trainer.build import build_trainer

    _, settings = ddp_cpu_settings
    trainer = build_trainer(settings)  # peftlab sets no cluster environment of its own
    env = trainer._accelerator_connector.cluster_environment
    assert isinstance(env, SLURMEnvironment) and env.creates_processes_externally
    assert (trainer.world_size, trainer.global_rank, trainer.local_rank) == (2, 1, 1)
    assert (trainer.num_devices, trainer.num_nodes) == (2, 1)
    assert env.main_address == "node7" and env.main_port == 15000 + 4242
