"""The SageMaker training job of a composed run: names, S3 layout, SDK v3 configs and the ModelTrainer.

Everything a job needs is planned from config first (JobPlan, no AWS call), so `dry_run=true` prints the very
configs that a real launch hands to `sagemaker.train.ModelTrainer`.
"""

import re
import time
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from peftlab.cloud.settings import AwsSettings, redact
from peftlab.config.sagemaker_schema import SageMakerSettings
from peftlab.errors import ConfigError

CHECKPOINT_DIR = "/opt/ml/checkpoints"  # SageMaker syncs it with CheckpointConfig.s3_uri (both ways, on restart)
# The container installs the project, then runs train.py through peftlab/cloud/container.py (see there).
COMMAND = "python -m pip install --quiet --no-cache-dir . && python -m peftlab.cloud.container"
# Overrides that steer the launch itself; every other command-line override is passed on to train.py.
# `source` and `task` steer an evaluation job: the artifact becomes its `model` input channel; `hparams_search` picks
# the sweeper, on the launching machine (its plugin need not be in the job's image).
LAUNCH_ONLY = re.compile(r"^[+~]*(dry_run|wait|sagemaker|hydra|task|source|hparams_search)(\.|=|$)")


@dataclass
class JobPlan:
    """What the job will be: every value is known before anything is uploaded or created."""

    base_job_name: str
    run_name: str
    image_uri: str
    instance: SageMakerSettings
    aws: AwsSettings
    hyperparameters: dict[str, str]
    environment: dict[str, str] = field(default_factory=dict)
    data_uri: str | None = None
    prefix: str = "peftlab"
    model_uri: str | None = None  # an evaluation job's model.tar.gz (its `model` channel)
    checkpoints: bool = True  # a training job syncs /opt/ml/checkpoints with checkpoint_uri

    @property
    def s3_root(self) -> str:
        return f"s3://{self.aws.bucket}/{self.prefix}"

    @property
    def output_uri(self) -> str:
        return f"{self.s3_root}/output"

    @property
    def checkpoint_uri(self) -> str:
        """Pinned per run (not the SDK's per-job default), so a new job with the same run_name resumes it."""
        return f"{self.s3_root}/checkpoints/{self.run_name}"


def train_overrides(overrides: list[str]) -> dict[str, str]:
    """Command-line overrides → hyperparameters {key: value}; the container turns them back into key=value."""
    kept = {}
    for item in overrides:
        if LAUNCH_ONLY.match(item):
            continue
        key, sep, value = item.partition("=")
        kept[key] = value if sep else ""
    return kept


def plan_job(
    cfg: DictConfig,
    instance: SageMakerSettings,
    aws: AwsSettings,
    overrides: list[str],
    point: str | None = None,
    title: str | None = None,
) -> JobPlan:
    """instance: the checked sagemaker group (config/sagemaker_schema.py); overrides: the launch's command line.

    point: a sweep point's id (a hash of its overrides): it ends the job's base name, so the point's jobs can be found
    again, and names its checkpoints, so every job of the point resumes the same run. title: the base name's start.
    """
    sm = cfg.sagemaker
    base, run_name = job_names(cfg, point, title)
    data = sm.get("data")
    if data and not str(data).startswith("s3://"):
        raise ConfigError(f"sagemaker.data={data}: an s3:// prefix holding the dataset's train/validation files")
    hyperparameters = train_overrides(overrides)
    hyperparameters.setdefault("hardware", cfg.hardware.name)  # the default hardware (cpu) would not be a GPU job
    environment = {str(k): str(v) for k, v in (sm.get("environment") or {}).items()}
    refuse_secrets(environment, hyperparameters)
    environment["PEFTLAB_CHECKPOINT_DIR"] = CHECKPOINT_DIR
    return JobPlan(
        base_job_name=base,
        run_name=run_name,
        image_uri=sm.image_uri or _pytorch_image(aws.region, sm.framework_version, sm.py_version, instance),
        instance=instance,
        aws=aws,
        hyperparameters=hyperparameters,
        environment=environment,
        data_uri=str(data) if data else None,
        prefix=str(sm.prefix).strip("/"),
    )


def job_names(cfg: DictConfig, point: str | None, title: str | None) -> tuple[str, str]:
    """(base job name, run name): the base ends with the sweep point's id, the run name names the checkpoints."""
    sm = cfg.sagemaker
    # Job names: [a-zA-Z0-9-], at most 63 characters; the SDK appends a 15-character timestamp.
    title = title or f"peftlab-{cfg.model.name}-{cfg.peft.method}-{cfg.dataset.name}"
    base = re.sub(r"[^a-zA-Z0-9-]+", "-", title)[:38].strip("-")
    if point:
        base = f"{base[: 37 - len(point)].strip('-')}-{point}"
    run_name = (f"{sm.run_name}-{point}" if sm.run_name else base) if point else None
    run_name = run_name or sm.run_name or f"{base}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}", run_name):
        raise ConfigError(f"sagemaker.run_name={run_name}: letters, digits, '.', '_' and '-' (an S3 key part)")
    return base, run_name


def refuse_secrets(environment: dict, hyperparameters: dict) -> None:
    """A job's environment and hyperparameters are visible in the console: a key that looks like a secret is refused."""
    for where, values in (("sagemaker.environment.", environment), ("", hyperparameters)):
        secret = [k for k in values if redact({k: "x"})[k] != "x"]
        if secret:
            raise ConfigError(
                f"{where}{secret[0]}: looks like a secret; a job's environment and hyperparameters are visible in "
                "the console, so pass secrets through AWS Secrets Manager or the execution role instead"
            )


def _pytorch_image(region: str, version: str, py_version: str, instance: SageMakerSettings) -> str:
    """The AWS PyTorch training image; the SDK reads its bundled table (no network)."""
    from sagemaker.core import image_uris

    try:
        return image_uris.retrieve(
            framework="pytorch",
            region=region,
            version=str(version),
            py_version=py_version,
            instance_type=instance.instance_type,
            image_scope="training",
        )
    except ValueError as err:
        raise ConfigError(f"sagemaker.framework_version={version}: no PyTorch training image ({err})") from err


def sdk_configs(plan: JobPlan) -> dict[str, Any]:
    """The SDK v3 config objects (sagemaker.core.training.configs) that ModelTrainer takes."""
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        InputData,
        OutputDataConfig,
        StoppingCondition,
    )

    instance = plan.instance
    # Spot is a Compute field in v3; max_wait only with spot (the API rejects it otherwise), >= max_run.
    stopping = {"max_runtime_in_seconds": instance.max_run}
    if instance.spot:
        stopping["max_wait_time_in_seconds"] = instance.max_wait
    return {
        "compute": Compute(
            instance_type=instance.instance_type,
            instance_count=instance.instance_count,
            volume_size_in_gb=instance.volume_size_gb,
            enable_managed_spot_training=instance.spot,
        ),
        "stopping_condition": StoppingCondition(**stopping),
        "checkpoint_config": (
            CheckpointConfig(s3_uri=plan.checkpoint_uri, local_path=CHECKPOINT_DIR) if plan.checkpoints else None
        ),
        "output_data_config": OutputDataConfig(s3_output_path=plan.output_uri),
        "input_data_config": [InputData(channel_name=name, data_source=uri) for name, uri in channels(plan)] or None,
    }


def channels(plan: JobPlan) -> list[tuple[str, str]]:
    """The job's S3 input channels besides the code: (name, s3 uri); each is /opt/ml/input/data/<name> in the job."""
    return [(name, uri) for name, uri in (("data", plan.data_uri), ("model", plan.model_uri)) if uri]


def model_trainer(plan: JobPlan, source_tarball: str, boto_session: Any = None):
    """A ModelTrainer for the plan; the SDK uploads source_tarball and unpacks it in the container's code dir."""
    import boto3
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.training.configs import SourceCode
    from sagemaker.train import ModelTrainer

    boto_session = boto_session or boto3.Session(region_name=plan.aws.region)
    session = Session(
        boto_session=boto_session, default_bucket=plan.aws.bucket, default_bucket_prefix=f"{plan.prefix}/code"
    )
    return ModelTrainer(
        sagemaker_session=session,
        role=plan.aws.role,
        base_job_name=plan.base_job_name,
        training_image=plan.image_uri,
        source_code=SourceCode(source_dir=source_tarball, command=COMMAND),
        hyperparameters=plan.hyperparameters,
        environment=plan.environment,
        **sdk_configs(plan),
    )


def request_preview(plan: JobPlan) -> dict[str, Any]:
    """The CreateTrainingJob request as the SDK will send it, minus what only exists after the upload
    (the code and driver channels' S3 keys and the job name's timestamp suffix)."""
    from sagemaker.core.utils.utils import serialize

    configs = sdk_configs(plan)
    compute = configs["compute"]
    request = {
        "TrainingJobName": f"{plan.base_job_name}-<timestamp>",
        "AlgorithmSpecification": {"TrainingImage": plan.image_uri, "TrainingInputMode": "File"},
        "RoleArn": plan.aws.role,
        "ResourceConfig": serialize(compute._to_resource_config()),
        "EnableManagedSpotTraining": bool(compute.enable_managed_spot_training),
        "StoppingCondition": serialize(configs["stopping_condition"]),
        "CheckpointConfig": serialize(configs["checkpoint_config"]) if plan.checkpoints else None,
        "OutputDataConfig": serialize(configs["output_data_config"]),
        "InputDataConfig": [
            {"ChannelName": "code", "S3Uri": f"{plan.s3_root}/code/{plan.base_job_name}/<job>/input/code/"},
            *({"ChannelName": name, "S3Uri": uri} for name, uri in channels(plan)),
        ],
        "HyperParameters": plan.hyperparameters,
        "Environment": plan.environment,
    }
    return redact({key: value for key, value in request.items() if value is not None})


def console_url(region: str, job_name: str) -> str:
    return f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/jobs/{job_name}"
