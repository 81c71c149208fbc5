"""Hydra launcher plugin: hydra-submitit-launcher's SlurmLauncher, after a check of every sweep job's hardware.

Submitting, waiting and the job-side run are the plugin's (and submitit's), handed over whole. The check is ours
because no library does it: the plugin resolves hydra.launcher once for the whole sweep, so a job whose hardware
differs would be submitted anyway and refused by Lightning only after its wait in the queue
(peftlab/config/slurm.py). It wraps the plugin's launcher instead of subclassing it: Hydra imports every hydra_plugins
module at each start-up, and an install without the [slurm] extra must not fail or warn there.
Its option is peftlab/conf/hydra/launcher/slurm.yaml.
"""

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class SlurmLauncher(Launcher):
    def __init__(self, **params: Any) -> None:
        from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher

        self.submitit = SubmititSlurmLauncher(**params)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.submitit.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from peftlab.cli import run_command  # a bad setting: one `error:` line and exit code 2, as everywhere

        run_command(self._check, job_overrides, initial_job_idx)
        return self.submitit.launch(job_overrides, initial_job_idx)

    def _check(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> None:
        from peftlab.config.slurm import check_job_allocation

        launcher = self.submitit
        for num, overrides in enumerate(job_overrides, start=initial_job_idx):
            job = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
            check_job_allocation(job, launcher.params, overrides, num)
