"""task=evaluate: evaluate.py as a SageMaker job on a training job's model.tar.gz, and its eval_metrics.json back.

`python launch_sagemaker.py task=evaluate source=s3://.../model.tar.gz dataset=sst2 hardware=g4dn`. The artifact is
the job's `model` input channel (SageMaker copies it in; container.py passes it to evaluate.py as source=), the
command line's other overrides configure evaluate.py, and what evaluate.py writes to $SM_MODEL_DIR comes back as the
job's model.tar.gz, from which eval_metrics.json (with compare.csv/.md) lands in the launch folder.
"""

import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from omegaconf import DictConfig

from peftlab.cloud.jobs import SageMakerJobs, wait_for
from peftlab.cloud.sagemaker_job import JobPlan, plan_job
from peftlab.cloud.settings import AwsSettings
from peftlab.config.sagemaker_schema import SageMakerSettings
from peftlab.errors import ConfigError, PeftlabError

SCRIPT = "evaluate.py"  # PEFTLAB_SCRIPT: what container.py runs instead of train.py
FETCHED = ("eval_metrics.json", "compare.csv", "compare.md")


def plan_evaluation(cfg: DictConfig, instance: SageMakerSettings, aws: AwsSettings, overrides: list[str]) -> JobPlan:
    """The evaluation job: no checkpoints (nothing to resume), the artifact as its `model` channel."""
    source = str(cfg.get("source") or "")
    if not (source.startswith("s3://") and source.endswith(".tar.gz")):
        raise ConfigError(
            f"source={cfg.get('source')}: task=evaluate needs the s3://.../model.tar.gz that a training job wrote"
        )
    if instance.instance_count != 1:
        raise ConfigError(f"sagemaker.instance_count={instance.instance_count}: an evaluation job runs on 1 instance")
    plan = plan_job(cfg, instance, aws, overrides, title=f"peftlab-eval-{cfg.dataset.name}")
    environment = {k: v for k, v in plan.environment.items() if k != "PEFTLAB_CHECKPOINT_DIR"}
    return replace(plan, environment={**environment, "PEFTLAB_SCRIPT": SCRIPT}, model_uri=source, checkpoints=False)


def fetch_eval_metrics(cfg: DictConfig, plan: JobPlan, job_name: str, boto_session=None) -> dict:
    """Wait for the job (bounded by its own stop conditions), then put its eval_metrics.json in the launch folder."""
    jobs = SageMakerJobs(plan.aws.region, boto_session)
    deadline = plan.instance.max_run + (plan.instance.max_wait or 0) + 600
    state = wait_for(jobs, job_name, float(cfg.sagemaker.poll_seconds), deadline)
    if state.status != "Completed":
        raise PeftlabError(f"{job_name}: {state.status} ({state.failure_reason or 'no reason given'})")
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="peftlab-eval-") as staging:
        jobs.unpack(state.model_artifact or "", Path(staging))
        for name in FETCHED:
            if (Path(staging) / name).is_file():
                shutil.copy2(Path(staging) / name, out / name)
    metrics = out / FETCHED[0]
    if not metrics.is_file():
        raise PeftlabError(f"{job_name}: its model.tar.gz holds no {FETCHED[0]}")
    print(f"eval metrics: {metrics}")
    rows = json.loads(metrics.read_text())
    for row in rows:
        print("  " + ", ".join(f"{k}={v:.4f}" for k, v in row.items() if k.startswith("val/")))
    return {"eval_metrics": str(metrics), "rows": rows}
