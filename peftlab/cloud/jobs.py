"""Training jobs on AWS for sweeps and evaluations: find a job again by its base name, create one (SDK v3
ModelTrainer), poll until jobs end, and fetch what they wrote to S3.

The SDK waits for one job at a time (TrainingJob.wait); a sweep keeps up to max_parallel jobs going and follows them
all, so the scheduling loop (run_jobs) is written here, on DescribeTrainingJob. Every boto3 call is bounded
(CLIENT_CONFIG: connect and read timeouts, a few retries).
"""

import logging
import tarfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from peftlab.cloud.sagemaker_job import JobPlan, model_trainer
from peftlab.errors import PeftlabError

log = logging.getLogger(__name__)

ENDED = ("Completed", "Failed", "Stopped")  # the statuses a job never leaves (InProgress and Stopping do)


def client_config():
    from botocore.config import Config

    return Config(connect_timeout=10, read_timeout=60, retries={"max_attempts": 5, "mode": "standard"})


@dataclass
class JobState:
    """What DescribeTrainingJob says of one job."""

    name: str
    status: str
    failure_reason: str | None = None
    model_artifact: str | None = None  # s3://.../<job>/output/model.tar.gz

    @property
    def ended(self) -> bool:
        return self.status in ENDED


class SageMakerJobs:
    """One boto3 session's SageMaker and S3 clients; the endpoint comes from boto3's own settings
    (AWS_ENDPOINT_URL: a local moto server in the tests)."""

    def __init__(self, region: str, boto_session: Any = None):
        import boto3

        self.session = boto_session or boto3.Session(region_name=region)
        self.sagemaker = self.session.client("sagemaker", config=client_config())
        self.s3 = self.session.client("s3", config=client_config())

    def latest(self, base_job_name: str) -> JobState | None:
        """The newest job whose name holds base_job_name (the SDK adds a timestamp to it), or None."""
        pages = self.sagemaker.get_paginator("list_training_jobs").paginate(NameContains=base_job_name)
        jobs = [job for page in pages for job in page["TrainingJobSummaries"]]
        if not jobs:
            return None
        return self.describe(max(jobs, key=lambda job: job["CreationTime"])["TrainingJobName"])

    def describe(self, name: str) -> JobState:
        job = self.sagemaker.describe_training_job(TrainingJobName=name)
        artifact = (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
        return JobState(name, job["TrainingJobStatus"], job.get("FailureReason"), artifact)

    def create(self, plan: JobPlan, source: str) -> str:
        """CreateTrainingJob through ModelTrainer (source: the code tarball, a local file or s3://...tar.gz, which
        the SDK then uses as is); returns the job's name."""
        trainer = model_trainer(plan, source, boto_session=self.session)
        trainer.train(wait=False, logs=False)
        return trainer._latest_training_job.training_job_name  # the SDK's only handle on the created job

    def upload(self, path: Path, uri: str) -> str:
        bucket, key = split_s3(uri)
        self.s3.upload_file(str(path), bucket, key)
        return uri

    def unpack(self, uri: str, folder: Path) -> None:
        """Download a .tar.gz from S3 and extract it into folder ("data" filter: nothing lands outside it)."""
        bucket, key = split_s3(uri)
        folder.mkdir(parents=True, exist_ok=True)
        archive = folder / Path(key).name
        self.s3.download_file(bucket, key, str(archive))
        try:
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(folder, filter="data")
        finally:
            archive.unlink()


def split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise PeftlabError(f"{uri}: not an s3:// URI")
    return parsed.netloc, parsed.path.lstrip("/")


def run_jobs(
    jobs: SageMakerJobs,
    to_create: list[tuple[int, JobPlan]],
    running: dict[int, str],
    source: Callable[[], str],
    on_end: Callable[[int, JobState], None],
    max_parallel: int,
    poll_seconds: float,
) -> None:
    """Create the planned jobs in order, never more than max_parallel in progress (running ones included), and call
    on_end(index, state) as each ends. source(): the code tarball's URI, asked for once a job is to be created."""
    queue, running = deque(to_create), dict(running)
    while queue or running:
        while queue and len(running) < max_parallel:
            index, plan = queue.popleft()
            running[index] = jobs.create(plan, source())
            log.info("#%d: created %s", index, running[index])
        time.sleep(poll_seconds)
        for index, name in list(running.items()):
            state = jobs.describe(name)
            if state.ended:
                del running[index]
                log.info("#%d: %s %s", index, name, state.status)
                on_end(index, state)


def wait_for(jobs: SageMakerJobs, name: str, poll_seconds: float, deadline_s: float) -> JobState:
    """Poll one job until it ends; deadline_s bounds the wait (a job's own max_run/max_wait end it anyway)."""
    give_up = time.monotonic() + deadline_s
    while True:
        state = jobs.describe(name)
        if state.ended:
            return state
        if time.monotonic() > give_up:
            raise PeftlabError(f"{name}: still {state.status} after {deadline_s:.0f} s; it keeps running on SageMaker")
        time.sleep(poll_seconds)
