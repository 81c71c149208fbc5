"""SageMaker's part in the sweep and evaluation tests, played on moto's server.

moto answers CreateTrainingJob with a job that is already Completed and has no call that changes a job's status, so
the server runs in the test's own process (moto's ThreadedMotoServer, on 127.0.0.1: every request of the launcher,
a separate process, still goes over HTTP) and FakeSageMaker patches moto's classes there:
- every CreateTrainingJob request body is recorded as sent;
- a new job starts InProgress, and a thread works out how it ends: `outcome(request)` returns ("Completed", the
  bytes of its model.tar.gz, which go to the job's output path in S3) or ("Failed", a reason);
- the job ends at the first DescribeTrainingJob after that outcome and after `polls` earlier describes, so it is
  seen in progress for a while, and the number of jobs in progress at each creation is recorded (max_parallel).
"""

import io
import json
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path

import boto3

SKIPPED_IN_MODEL_DIR = (".hydra", "checkpoints", "train.log")  # SageMaker puts these elsewhere (output.tar.gz, S3)


def model_tarball(run_dir: Path) -> bytes:
    """The model.tar.gz a SageMaker job writes from a run folder: what train.py put in $SM_MODEL_DIR."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for item in sorted(run_dir.iterdir()):
            if item.name not in SKIPPED_IN_MODEL_DIR:
                tar.add(item, arcname=item.name)
    return buffer.getvalue()


class FakeSageMaker:
    def __init__(self, endpoint: str, outcome: Callable[[dict], tuple[str, bytes | str]], polls: int = 3):
        self.endpoint, self.outcome, self.polls = endpoint, outcome, polls
        self.requests: list[dict] = []  # CreateTrainingJob bodies, in order
        self.in_progress_at_create: list[int] = []
        self._jobs: list = []  # moto's job objects, in creation order
        self._ends: dict[str, tuple[str, bytes | str]] = {}
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        self.errors: list[BaseException] = []

    def install(self, monkeypatch) -> None:
        from moto.sagemaker.models import FakeTrainingJob, SageMakerModelBackend
        from moto.sagemaker.responses import SageMakerResponse

        fake, create, init, describe = (
            self, SageMakerResponse.create_training_job, FakeTrainingJob.__init__,
            SageMakerModelBackend.describe_training_job,
        )  # fmt: skip

        def record_request(response):
            with fake._lock:
                fake.requests.append(json.loads(response.body))
            return create(response)

        def start_in_progress(job, *args, **kwargs):
            init(job, *args, **kwargs)
            job.training_job_status, job.secondary_status = "InProgress", "Training"
            fake._started(job)

        def end_when_ready(backend, training_job_name):
            job = backend.training_jobs.get(training_job_name)
            if job is not None and job.training_job_status == "InProgress":
                fake._maybe_end(job)
            return describe(backend, training_job_name)

        monkeypatch.setattr(SageMakerResponse, "create_training_job", record_request)
        monkeypatch.setattr(FakeTrainingJob, "__init__", start_in_progress)
        monkeypatch.setattr(SageMakerModelBackend, "describe_training_job", end_when_ready)

    def _started(self, job) -> None:
        with self._lock:
            self._jobs.append(job)
            self.in_progress_at_create.append(sum(j.training_job_status == "InProgress" for j in self._jobs))
            request = next(r for r in self.requests if r["TrainingJobName"] == job.training_job_name)
        threading.Thread(target=self._work_out, args=(job, request), daemon=True).start()

    def _work_out(self, job, request: dict) -> None:
        try:
            status, result = self.outcome(request)
            if status == "Completed":
                bucket, _, key = job.model_artifacts["S3ModelArtifacts"].removeprefix("s3://").partition("/")
                s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")
                s3.put_object(Bucket=bucket, Key=key, Body=result)
        except BaseException as err:  # the test reports it; the job fails as SageMaker's would
            self.errors.append(err)
            status, result = "Failed", f"test outcome raised {err!r}"
        with self._lock:
            self._ends[job.training_job_name] = (status, result)

    def _maybe_end(self, job) -> None:
        name = job.training_job_name
        with self._lock:
            self._seen[name] = self._seen.get(name, 0) + 1
            if name not in self._ends or self._seen[name] <= self.polls:
                return
            status, result = self._ends[name]
            job.training_job_status = job.secondary_status = status
            if status != "Completed":
                job.failure_reason = result  # DescribeTrainingJob's FailureReason

    @property
    def most_in_progress(self) -> int:
        return max(self.in_progress_at_create, default=0)
