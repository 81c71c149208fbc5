"""A SLURM job's allocation from the hardware group (hydra/launcher=slurm), and the check that every sweep job fits it.

Lightning on SLURM runs one srun task per device and refuses a job whose `--ntasks-per-node` or `--nodes` differ from
its `devices` / `num_nodes` (SLURMEnvironment.validate_settings) — but only once the job has waited in the queue and
loaded. conf/hydra/launcher/slurm.yaml interpolates the allocation from hardware.* with the resolvers below, and the
launcher (hydra_plugins/peftlab_slurm_launcher) checks every job's config against it before anything is submitted.
"""

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, ListConfig

from peftlab.errors import ConfigError

GPU_ACCELERATORS = ("gpu", "cuda")


def device_count(accelerator: str, devices: Any) -> int | None:
    """Processes Lightning runs on each node: a count, or GPU indices; None for `auto`/-1 on GPUs, which only the
    node knows (a SLURM job is allocated before it reaches one)."""
    if isinstance(devices, list | ListConfig):
        return len(devices)
    if devices == "auto" and accelerator == "cpu":
        return 1  # Lightning's CPU `auto`: one process
    if devices in ("auto", -1):
        return None
    return int(devices)


# The two resolvers of conf/hydra/launcher/slurm.yaml. They do not raise (an error inside a resolver reaches the user
# as OmegaConf's traceback): an unknown count is 0 there, which the launcher refuses in one line before submitting.
def tasks_per_node(accelerator: str, devices: Any) -> int:
    """srun tasks on each node: Lightning on SLURM runs one per device."""
    return device_count(accelerator, devices) or 0


def gpus_per_node(accelerator: str, devices: Any) -> int | None:
    """GPUs to request on each node: one per task on GPU hardware; none (no --gpus-per-node) otherwise."""
    return tasks_per_node(accelerator, devices) if accelerator in GPU_ACCELERATORS else None


def check_job_allocation(job: DictConfig, params: dict, overrides: Sequence[str], num: int) -> None:
    """Refuse, in one line, a sweep job whose hardware does not fit the allocation the launcher requests for all.

    hydra-submitit-launcher resolves hydra.launcher once, from the sweep's command line without its swept values,
    and submits every job with it; a job that sweeps hardware, or a hand-set hydra.launcher.nodes/tasks_per_node,
    would get an allocation Lightning refuses (or GPUs it cannot use).
    """
    hw = job.hardware
    tasks = device_count(hw.accelerator, hw.devices)
    if tasks is None:
        raise ConfigError(
            f"hardware.devices={hw.devices}: a SLURM job is allocated before it reaches a node, so "
            "hydra/launcher=slurm needs a count of devices (tasks) per node: set hardware.devices=N"
        )
    wanted = [("nodes", "hardware.num_nodes", hw.num_nodes, params.get("nodes") == hw.num_nodes)]
    wanted.append(("tasks_per_node", "hardware.devices", hw.devices, params.get("tasks_per_node") == tasks))
    if hw.accelerator in GPU_ACCELERATORS:
        wanted.append(("gpus_per_node", "hardware.devices", hw.devices, (params.get("gpus_per_node") or 0) >= tasks))
    for launcher_key, key, value, ok in wanted:
        if not ok:
            raise ConfigError(
                f"{key}={value} in sweep job {num} ({' '.join(overrides) or 'no overrides'}) does not fit "
                f"hydra.launcher.{launcher_key}={params.get(launcher_key)}: hydra/launcher=slurm gives every job of a "
                f"sweep the allocation of the command line's hardware (Lightning refuses a SLURM job whose tasks or "
                f"nodes differ from hardware.devices/num_nodes), so sweep one hardware setting per command and leave "
                f"hydra.launcher.{launcher_key} to it"
            )
