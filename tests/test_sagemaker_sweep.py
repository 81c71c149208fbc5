"""Sweeps and evaluations as SageMaker jobs, against moto's server on 127.0.0.1 with the test playing SageMaker
(sagemaker_fake.py): `python launch_sagemaker.py -m ...` (the `sagemaker` Hydra launcher) and `task=evaluate`."""

import json
import os
import sys

import boto3
import forked_commands
import pytest
from conftest import REPO
from sagemaker_fake import FakeSageMaker, model_tarball

pytest.importorskip("sagemaker.train", reason="the SageMaker SDK v3 (pip install -e '.[sagemaker]')")
pytest.importorskip("moto.server", reason="moto[server] (dev extra)")

BUCKET = "peftlab-sweeps"
ROLE = "arn:aws:iam::123456789012:role/peftlab-sagemaker"
CLEAN = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PEFTLAB_BUCKET", "PEFTLAB_SAGEMAKER"))}
TINY = ["model=deberta_v3_tiny", "dataset=demo", "dataset.max_train_rows=32", "dataset.max_eval_rows=16",
        "dataset.batch_size=16", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
        "~callbacks.progress_bar"]  # fmt: skip
GRID = ["peft=lora,ia3", "seed=0,1"]


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """The same 2 × 2 grid trained here (train.py -m): its runs are what the jobs 'train', its report the reference."""
    out = tmp_path_factory.mktemp("local")
    done = forked_commands.run([sys.executable, str(REPO / "train.py"), "-m", *GRID, *TINY, f"hydra.sweep.dir={out}"],
                               cwd=out, env=CLEAN, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.fixture
def aws(monkeypatch):
    """moto's server in this process (the fake patches its classes here), a bucket; the launcher's environment."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = "http://{}:{}".format(*server.get_host_and_port())
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)  # the fake's own S3 client
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    env = {**CLEAN, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "SAGEMAKER_VALIDATE_ROLE": "false", "PEFTLAB_BUCKET": BUCKET,
           "PEFTLAB_SAGEMAKER_ROLE": ROLE,
           # The SDK asks iam:SimulatePrincipalPolicy, which moto answers with HTTP 500: once, not with retries.
           "AWS_MAX_ATTEMPTS": "1"}  # fmt: skip
    yield endpoint, env
    server.stop()
    from moto.backends import get_backend

    for name in ("s3", "sagemaker"):  # the next test's server starts empty
        for account in get_backend(name).values():
            for backend in account.values():
                backend.reset()


def launch(*args, env, cwd, timeout=300):
    return forked_commands.run([sys.executable, str(REPO / "launch_sagemaker.py"), *args], cwd=cwd, env=env,
                               timeout=timeout)  # fmt: skip


def point_of(request: dict) -> tuple[str, int]:
    hps = request["HyperParameters"]
    return hps["peft"], int(hps["seed"])


def test_sweep_fans_out_resumes_and_reports_like_a_local_sweep(aws, local_sweep, monkeypatch, tmp_path):
    endpoint, env = aws
    runs = {}  # (peft, seed) -> the local run of that point
    for folder in local_sweep.glob("[0-9]*"):
        metrics = json.loads((folder / "metrics.json").read_text())
        runs[(metrics["method"], metrics["seed"])] = folder
    failing = {("ia3", 1)}

    def outcome(request):
        if point_of(request) in failing:
            return "Failed", "AlgorithmError: CUDA out of memory (played by the test)"
        return "Completed", model_tarball(runs[point_of(request)])

    fake = FakeSageMaker(endpoint, outcome)
    fake.install(monkeypatch)
    command = ["-m", *GRID, *TINY, "hardware=g4dn_spot", "sagemaker.max_parallel=2", "sagemaker.poll_seconds=0.1"]
    first = launch(*command, f"hydra.sweep.dir={tmp_path / 'first'}", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert not fake.errors

    # Four CreateTrainingJob requests, each its point's: instance, spot, stop conditions, pinned checkpoints.
    assert sorted(point_of(r) for r in fake.requests) == sorted(runs)
    prefixes = set()
    for request in fake.requests:
        assert request["ResourceConfig"]["InstanceType"] == "ml.g4dn.xlarge"
        assert request["ResourceConfig"]["InstanceCount"] == 1 and request["EnableManagedSpotTraining"] is True
        assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400, "MaxWaitTimeInSeconds": 172800}
        base = request["TrainingJobName"].rsplit("-", 1)[0]  # the SDK adds -<timestamp>
        assert request["CheckpointConfig"]["S3Uri"] == f"s3://{BUCKET}/peftlab/checkpoints/{base}"
        prefixes.add(request["CheckpointConfig"]["S3Uri"])
        hps = request["HyperParameters"]
        assert {k: hps[k] for k in ("hardware", "model", "dataset.max_train_rows")} == {
            "hardware": "g4dn_spot", "model": "deberta_v3_tiny", "dataset.max_train_rows": "32"}  # fmt: skip
        assert not any(k.startswith(("hydra", "sagemaker")) for k in hps)
    assert len(prefixes) == 4
    # One source upload, which every job's code channel points at; never more than two jobs in progress.
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    sources = [k for k in keys if k.endswith("peftlab-source.tar.gz")]
    assert len(sources) == 1
    code = {c["DataSource"]["S3DataSource"]["S3Uri"] for r in fake.requests for c in r["InputDataConfig"]
            if c["ChannelName"] == "code"}  # fmt: skip
    assert code == {f"s3://{BUCKET}/{sources[0]}"}
    assert fake.most_in_progress == 2 and len(fake.in_progress_at_create) == 4

    # The failed job is a row of the report, with its status and reason; the other three are runs.
    sweep = tmp_path / "first"
    assert sorted(p.parent.name for p in sweep.glob("*/metrics.json")) == ["0", "1", "2"]
    assert json.loads((sweep / "3" / "job.json").read_text())["status"] == "Failed"
    report = (sweep / "summary.md").read_text()
    assert "## Jobs without a run" in report
    failed_row = next(line for line in report.splitlines() if line.startswith("| 3 |"))
    assert "| Failed | AlgorithmError: CUDA out of memory" in failed_row and "peft=ia3 seed=1" in failed_row

    # The same command again: the completed points are fetched, not re-run; the failed one is a new job on the
    # same checkpoint prefix (it resumes); then the report is the local sweep's.
    failing.clear()
    failed_request = next(r for r in fake.requests if point_of(r) == ("ia3", 1))
    second = launch(*command, f"hydra.sweep.dir={tmp_path / 'second'}", env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert len(fake.requests) == 5 and point_of(fake.requests[-1]) == ("ia3", 1)
    assert fake.requests[-1]["CheckpointConfig"] == failed_request["CheckpointConfig"]
    again = tmp_path / "second"
    assert (again / "summary.md").read_text() == (local_sweep / "summary.md").read_text()
    assert (again / "summary.csv").read_text() == (local_sweep / "summary.csv").read_text()
    for n in range(4):
        assert (again / str(n) / "adapter").is_dir() and (again / str(n) / "job.json").is_file()
    assert len([k for k in s3.list_objects_v2(Bucket=BUCKET)["Contents"] if k["Key"].endswith("source.tar.gz")]) == 2


def test_a_sweep_over_budget_is_refused_in_one_line(tmp_path):
    env = {**CLEAN, "PEFTLAB_BUCKET": BUCKET, "PEFTLAB_SAGEMAKER_ROLE": ROLE, "AWS_REGION": "us-east-1"}
    out = launch("-m", *GRID, "hardware=g4dn_spot", "dry_run=true", "sagemaker.budget_usd=20", env=env, cwd=tmp_path)
    assert out.returncode == 2
    error = out.stderr.strip().splitlines()[-1]
    assert error == (
        "error: sagemaker.budget_usd=20: the sweep's 4 jobs can cost up to $21.68 (max_run × price × instances each); "
        "lower sagemaker.max_run, sweep fewer points or raise the budget"
    )
    assert "| 3 | peftlab-minilm-ia3-demo-" in out.stdout  # the plan was printed first: what the budget refused
    fits = launch("-m", *GRID, "hardware=g4dn_spot", "dry_run=true", "sagemaker.budget_usd=22", env=env, cwd=tmp_path)
    assert fits.returncode == 0, fits.stderr[-2000:]
    assert "sweep cost (4 jobs, us-east-1 prices as of 2024-06-01): at most $21.68" in fits.stdout
    assert not list(tmp_path.glob("multirun/*/*/summary.md"))  # a dry run writes no report


def test_evaluate_runs_as_a_job_and_its_metrics_come_back(aws, local_sweep, monkeypatch, tmp_path):
    """The fake runs the real container entry (python -m peftlab.cloud.container) with the job's hyperparameters and
    environment, as SageMaker would: evaluate.py on the model channel's model.tar.gz, on this machine."""
    endpoint, env = aws
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    artifact = "peftlab/output/earlier-job/output/model.tar.gz"
    s3.put_object(Bucket=BUCKET, Key=artifact, Body=model_tarball(local_sweep / "0"))

    def outcome(request):
        root = tmp_path / "job"
        (root / "model-channel").mkdir(parents=True)
        channel = next(c for c in request["InputDataConfig"] if c["ChannelName"] == "model")
        bucket, _, key = channel["DataSource"]["S3DataSource"]["S3Uri"].removeprefix("s3://").partition("/")
        s3.download_file(bucket, key, str(root / "model-channel" / "model.tar.gz"))
        hps = {**request["HyperParameters"], "hardware": "cpu"}  # the job's GPU instance, played by this CPU
        job_env = {**CLEAN, **request["Environment"], "SM_HPS": json.dumps(hps),
                   "SM_MODEL_DIR": str(root / "model"), "SM_OUTPUT_DATA_DIR": str(root / "output"),
                   "SM_CHANNEL_MODEL": str(root / "model-channel"), "SM_NUM_GPUS": "0"}  # fmt: skip
        ran = forked_commands.run([sys.executable, "-m", "peftlab.cloud.container"], cwd=REPO, env=job_env, timeout=300)
        assert ran.returncode == 0, ran.stderr[-3000:]
        return "Completed", model_tarball(root / "model")

    fake = FakeSageMaker(endpoint, outcome, polls=1)
    fake.install(monkeypatch)
    source = f"s3://{BUCKET}/{artifact}"
    args = ["task=evaluate", f"source={source}", "dataset=demo", "dataset.max_eval_rows=16", "hardware=g4dn",
            "sagemaker.poll_seconds=0.2", f"hydra.run.dir={tmp_path / 'launch'}"]  # fmt: skip
    out = launch(*args, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert not fake.errors
    (request,) = fake.requests
    assert request["HyperParameters"] == {"dataset": "demo", "dataset.max_eval_rows": "16", "hardware": "g4dn"}
    assert request["Environment"]["PEFTLAB_SCRIPT"] == "evaluate.py" and "CheckpointConfig" not in request
    assert request["EnableManagedSpotTraining"] is False and request["TrainingJobName"].startswith("peftlab-eval-demo-")
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
    assert channels["model"] == source
    rows = json.loads((tmp_path / "launch" / "eval_metrics.json").read_text())
    trained = json.loads((local_sweep / "0" / "metrics.json").read_text())
    assert rows[0]["method"] == trained["method"] and rows[0]["rows"] == 16
    assert rows[0]["val/accuracy"] == pytest.approx(trained["best"]["val/accuracy"])
    assert "eval metrics: " in out.stdout and "val/accuracy=" in out.stdout


def test_optuna_trials_run_as_parallel_jobs_and_read_their_metric(aws, local_sweep, monkeypatch, tmp_path):
    """hparams_search=optuna with this launcher: n_jobs trials at a time are jobs, each job's best metric is the
    trial's value (the fake answers every trial with the local LoRA run's model.tar.gz)."""
    endpoint, env = aws
    lora = next(
        p for p in local_sweep.glob("[0-9]*") if json.loads((p / "metrics.json").read_text())["method"] == "lora"
    )
    fake = FakeSageMaker(endpoint, lambda request: ("Completed", model_tarball(lora)))
    fake.install(monkeypatch)
    out = launch("-m", "hparams_search=optuna", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2", *TINY,
                 "hardware=g4dn_spot", "sagemaker.poll_seconds=0.1", f"hydra.sweep.dir={tmp_path / 'study'}",
                 env=env, cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(fake.requests) == 4 and fake.most_in_progress == 2  # two batches of two trials
    assert all(
        "hparams_search" not in r["HyperParameters"] and "peft.lr" in r["HyperParameters"] for r in fake.requests
    )
    best = json.loads((lora / "metrics.json").read_text())["best"]["val/accuracy"]
    results = (tmp_path / "study" / "optimization_results.yaml").read_text()
    assert f"best_value: {best}" in results
