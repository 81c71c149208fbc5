"""The AWS settings a SageMaker launch needs (bucket, execution role, region): config, then environment, then .env,
then Terraform's outputs. A missing one is a single error naming the variable to set.

Only these names are read from a .env file (python-dotenv parses it; nothing is put into os.environ), so credentials
kept there are never copied into the config, the job request or the logs.
"""

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peftlab.errors import ConfigError

# (key under sagemaker.*, environment / .env variable, `terraform output -json` name) in lookup order per source.
SOURCES = (
    ("bucket", "PEFTLAB_BUCKET", "bucket_name"),
    ("role", "PEFTLAB_SAGEMAKER_ROLE", "role_arn"),
    ("region", "AWS_REGION", "region"),
)
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Keys whose values are never printed or saved (a .env or a config may hold them): matched case-insensitively.
SECRET_KEY = re.compile(r"secret|token|password|passwd|credential|access_key|session_key|api_key|private", re.I)
REDACTED = "***"


class MissingSettingError(ConfigError):
    """A bucket, role or region was found in none of the places it may come from."""


@dataclass(frozen=True)
class AwsSettings:
    bucket: str
    role: str
    region: str


def resolve_aws_settings(node: Any, env: dict[str, str] | None = None) -> AwsSettings:
    """node: the `sagemaker` config section (bucket, role, region, env_file, terraform_outputs)."""
    env = os.environ if env is None else env
    dotenv = _read_dotenv(node.get("env_file"))
    terraform = _read_terraform_outputs(node.get("terraform_outputs"))
    values = {}
    for key, variable, output in SOURCES:
        candidates = [node.get(key), env.get(variable), dotenv.get(variable), terraform.get(output)]
        if key == "region":  # boto3's own variable, after ours
            candidates = [*candidates[:2], env.get("AWS_DEFAULT_REGION"), *candidates[2:]]
        value = next((str(v) for v in candidates if v), None)
        if value is None:
            raise MissingSettingError(
                f"{variable} is not set: the SageMaker {key} comes from sagemaker.{key}=..., the environment "
                f"variable {variable}, a .env file ({node.get('env_file') or 'none given'}) or Terraform's outputs "
                "(sagemaker.terraform_outputs=<file from `terraform output -json`>)"
            )
        values[key] = value
    bucket = values["bucket"].removeprefix("s3://").strip("/")
    if not BUCKET.match(bucket):
        raise ConfigError(f"sagemaker.bucket={bucket}: an S3 bucket name (3-63 lower-case letters, digits, . or -)")
    if not ROLE_ARN.match(values["role"]):
        raise ConfigError(
            f"sagemaker.role={values['role']}: an IAM role ARN, arn:aws:iam::<12-digit account>:role/<name>"
        )
    return AwsSettings(bucket=bucket, role=values["role"], region=values["region"])


def _read_dotenv(path: str | None) -> dict[str, str]:
    """The three variables we need from a .env file, and nothing else from it."""
    if not path or not Path(path).is_file():
        return {}
    from dotenv import dotenv_values  # python-dotenv: quoting, comments and `export` lines handled as shells do

    wanted = {variable for _, variable, _ in SOURCES}
    return {k: v for k, v in dotenv_values(path).items() if k in wanted and v}


def _read_terraform_outputs(path: str | None) -> dict[str, str]:
    """`terraform -chdir=infra output -json > infra/outputs.json`: {"bucket_name": {"value": ...}, ...}."""
    if not path:
        return {}
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"sagemaker.terraform_outputs={path}: file not found (write it with terraform output -json)")
    try:
        outputs = json.loads(file.read_text())
        return {name: out["value"] for name, out in outputs.items() if not out.get("sensitive")}
    except (ValueError, AttributeError, KeyError, TypeError) as err:
        raise ConfigError(f"sagemaker.terraform_outputs={path}: not `terraform output -json` output ({err})") from err


def redact(value: Any) -> Any:
    """A copy of a nested dict/list with the values of secret-looking keys replaced by ***."""
    if isinstance(value, dict):
        return {k: REDACTED if SECRET_KEY.search(str(k)) and v else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
