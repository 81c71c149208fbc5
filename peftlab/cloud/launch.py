"""launch(cfg): validate the run, plan the SageMaker job, print its request and cost estimate; unless dry_run, upload
the source tarball and create the job with the SDK v3 ModelTrainer (optionally waiting and streaming its logs)."""

import json
import logging
import tempfile
from pathlib import Path

from omegaconf import DictConfig

from peftlab.cloud.cost import estimate, format_table, price_table
from peftlab.cloud.sagemaker_job import COMMAND, JobPlan, console_url, model_trainer, plan_job, request_preview
from peftlab.cloud.settings import resolve_aws_settings
from peftlab.cloud.source import write_source_tarball
from peftlab.config import validate

log = logging.getLogger(__name__)


def command_line_overrides() -> list[str]:
    """The overrides launch_sagemaker.py was given (Hydra records them); [] outside a Hydra app."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def launch(cfg: DictConfig, overrides: list[str] | None = None, boto_session=None) -> dict:
    """Returns {"plan", "request", "estimate", "job_name", "console_url"} (job fields None on a dry run)."""
    settings = validate(cfg, check_files=False)  # the data lives in S3 or the hub, not on this machine
    hw = settings.hardware
    aws = resolve_aws_settings(cfg.sagemaker, hardware_region=hw.region)
    plan = plan_job(cfg, hw, aws, command_line_overrides() if overrides is None else overrides)
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
    print(f"outputs: {plan.output_uri}/{job_name}/output/model.tar.gz\ncheckpoints: {plan.checkpoint_uri}")
    return result


def cost_estimate(cfg: DictConfig, plan: JobPlan) -> str:
    """The most the job can cost (max_run at the table's prices), and the expected cost when steps and s/step are
    known (sagemaker.estimate.*, or trainer.max_steps)."""
    hw = plan.hardware
    table = price_table(cfg.cost)
    price = table.price(hw.instance_type)
    rate = price.spot if hw.spot else price.on_demand
    cap_h = hw.max_run / 3600
    lines = [
        f"cost estimate ({'spot' if hw.spot else 'on-demand'}, {table.region} prices as of {table.as_of}): "
        f"at most ${cap_h * rate * hw.instance_count:.2f} = {cap_h:.2f} h (max_run) × ${rate}/h "
        f"× {hw.instance_count} instance(s)"
    ]
    steps = cfg.sagemaker.estimate.steps or (cfg.trainer.max_steps if cfg.trainer.max_steps > 0 else None)
    seconds = cfg.sagemaker.estimate.seconds_per_step
    if steps and seconds:
        rows = estimate(table, int(steps), {hw.instance_type: float(seconds)}, hw.instance_count)
        lines.append(format_table(rows, table))
    else:
        lines.append(
            "expected cost: give sagemaker.estimate.steps=N (or trainer.max_steps) and "
            "sagemaker.estimate.seconds_per_step=S (python -m peftlab.cost has the table for several instances)"
        )
    return "\n".join(lines)
