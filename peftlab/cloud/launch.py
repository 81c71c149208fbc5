"""launch(cfg): validate the run, plan the SageMaker job, print its request and cost estimate; unless dry_run, upload
the source tarball and create the job with the SDK v3 ModelTrainer (optionally waiting and streaming its logs).

task= picks what the job runs (TASKS): train.py, or evaluate.py on a training job's model.tar.gz (evaluate_job.py).
A -m sweep does not come here: the `sagemaker` Hydra launcher plans all its points (sweep.py).
"""

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from peftlab.cloud.evaluate_job import fetch_eval_metrics, plan_evaluation
from peftlab.cloud.sagemaker_job import COMMAND, JobPlan, console_url, model_trainer, plan_job, request_preview
from peftlab.cloud.settings import AwsSettings, resolve_aws_settings
from peftlab.cloud.source import write_source_tarball
from peftlab.config import validate
from peftlab.config.sagemaker_schema import SageMakerSettings, sagemaker_settings
from peftlab.cost import job_estimate, price_table
from peftlab.errors import ConfigError

log = logging.getLogger(__name__)


def check_training(cfg: DictConfig) -> None:
    # The run they train: its data lives in S3 or the hub, not here; peft's own checks run in the job (no torch here).
    validate(cfg, check_files=False, check_with_peft=False)


@dataclass(frozen=True)
class Task:
    plan: Callable[[DictConfig, SageMakerSettings, AwsSettings, list[str]], JobPlan]
    check: Callable[[DictConfig], None] | None = None  # before the AWS settings are looked up
    # After the job is created: None, or a function(cfg, plan, job_name, boto_session) -> dict merged into the result.
    finish: Callable[..., dict] | None = None


TASKS = {
    "train": Task(plan_job, check=check_training),
    # evaluate.py takes the model and method from the artifact's config.yaml: the job checks them.
    "evaluate": Task(plan_evaluation, finish=fetch_eval_metrics),
}


def command_line_overrides() -> list[str]:
    """The overrides launch_sagemaker.py was given (Hydra records them); [] outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def launch(cfg: DictConfig, overrides: list[str] | None = None, boto_session=None) -> dict:
    """Returns {"plan", "request", "estimate", "job_name", "console_url"} (job fields None on a dry run)."""
    name = cfg.get("task") or "train"
    if name not in TASKS:
        raise ConfigError(f"task={name}: allowed values are {', '.join(TASKS)}")
    task = TASKS[name]
    instance = sagemaker_settings(cfg)  # the instances to rent (the sagemaker group)
    if task.check is not None:
        task.check(cfg)
    aws = resolve_aws_settings(cfg.sagemaker)
    plan = task.plan(cfg, instance, aws, command_line_overrides() if overrides is None else overrides)
    request = request_preview(plan)
    cost = cost_estimate(cfg, plan)
    print(("DRY RUN: nothing is created. " if cfg.dry_run else "") + "SageMaker CreateTrainingJob request:")
    print(json.dumps(request, indent=2))
    print(f"region: {aws.region}\ncontainer command: {COMMAND}  (then train.py with the hyperparameters as overrides)")
    print(cost)
    result = {"plan": plan, "request": request, "estimate": cost, "job_name": None, "console_url": None}
    if cfg.dry_run:
        return result
    with tempfile.TemporaryDirectory(prefix="peftlab-source-") as staging:
        tarball = write_source_tarball(cfg, Path(staging))
        trainer = model_trainer(plan, str(tarball), boto_session=boto_session)
        trainer.train(wait=bool(cfg.wait), logs=bool(cfg.wait))
    job_name = trainer._latest_training_job.training_job_name  # the SDK's only handle on the created job
    result.update(job_name=job_name, console_url=console_url(aws.region, job_name))
    print(f"training job: {job_name}\nconsole: {result['console_url']}")
    print(f"outputs: {plan.output_uri}/{job_name}/output/model.tar.gz")
    if plan.checkpoints:
        print(f"checkpoints: {plan.checkpoint_uri}")
    if task.finish is not None:
        result.update(task.finish(cfg, plan, job_name, boto_session))
    return result


def cost_estimate(cfg: DictConfig, plan: JobPlan) -> str:
    """The most the job can cost (max_run at the cost group's prices), and the expected cost when steps and s/step
    are known (sagemaker.estimate.*, or trainer.max_steps)."""
    instance, planned = plan.instance, cfg.sagemaker.estimate
    steps = planned.steps or (cfg.trainer.max_steps if cfg.trainer.max_steps > 0 else None)
    return job_estimate(
        price_table(cfg.cost),
        instance.instance_type,
        instance.instance_count,
        instance.spot,
        instance.max_run,
        steps,
        planned.seconds_per_step,
    )
