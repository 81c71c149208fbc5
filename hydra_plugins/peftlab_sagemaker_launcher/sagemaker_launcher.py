"""Hydra launcher plugin: the points of a -m sweep become SageMaker training jobs (peftlab/cloud/sweep.py).

Hydra instantiates launchers only from the hydra_plugins namespace, so this thin class lives here; Hydra imports it
at every start-up of every app, so it imports nothing of peftlab's SageMaker code until a sweep launches (a local
train.py stays free of boto3 and the SDK). Its option is peftlab/conf/hydra/launcher/sagemaker.yaml, which
launch_sagemaker.yaml selects.
"""

from collections.abc import Sequence

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class SageMakerLauncher(Launcher):
    def __init__(self) -> None:
        self.sweep = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        # task_function (launch_sagemaker.py's single-job launch) is not called: every point is planned and created
        # here, so one upload serves all of them and the jobs run side by side.
        self.hydra_context, self.config = hydra_context, config

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from peftlab.cli import run_command  # a bad setting: one `error:` line and exit code 2, as everywhere

        return run_command(self._launch, job_overrides, initial_job_idx)

    def _launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from hydra.core.utils import configure_log, setup_globals

        from peftlab.cloud.sweep import SageMakerSweep

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        if self.sweep is None:
            self.sweep = SageMakerSweep(self.hydra_context, self.config)
        return self.sweep.launch(job_overrides, initial_job_idx)
