"""Fetch a training artifact (SageMaker's model.tar.gz on S3, or a local tarball) into a folder to evaluate.

boto3 is imported only here and only for s3:// sources; AWS_ENDPOINT_URL(_S3) points it at another endpoint
(a local S3 for tests). The unpacked folder is then evaluated exactly like a local run folder.
"""

import tarfile
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from peftlab.errors import ConfigError


def fetch_artifact(source: str, work_dir: str | None = None) -> Path:
    """Download (s3://) or open (local path) a .tar.gz and unpack it; returns the unpacked folder."""
    target = Path(work_dir or tempfile.mkdtemp(prefix="peftlab-artifact-"))
    target.mkdir(parents=True, exist_ok=True)
    parsed = urlparse(source)
    if parsed.scheme == "s3":
        archive = target / Path(parsed.path).name
        _download_s3(parsed.netloc, parsed.path.lstrip("/"), archive, source)
    elif parsed.scheme in ("", "file"):
        archive = Path(parsed.path).expanduser()
        if not archive.is_file():
            raise ConfigError(f"source={source}: file not found")
    else:
        raise ConfigError(f"source={source}: unsupported scheme '{parsed.scheme}' (use s3:// or a local path)")
    unpacked = target / "unpacked"
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(unpacked, filter="data")  # "data": no absolute paths, links out of the folder, devices
    except tarfile.TarError as err:
        raise ConfigError(f"source={source}: not a readable tar archive ({err})") from err
    return unpacked


def _download_s3(bucket: str, key: str, destination: Path, source: str) -> None:
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError as err:
        raise ConfigError("source=s3://...: needs boto3 (pip install boto3)") from err
    try:
        boto3.client("s3").download_file(bucket, key, str(destination))
    except (BotoCoreError, ClientError) as err:
        raise ConfigError(f"source={source}: download failed ({err})") from err
