"""SageMaker launch without AWS: the cost table, the sagemaker group, settings and their errors, the dry run, a real
launch through the SDK v3 ModelTrainer against moto's server on 127.0.0.1, and a local run that imports none of it."""

import json
import os
import socket
import subprocess
import sys
import tarfile
import time

import forked_commands
import pytest
from conftest import CONF, REPO, compose_config
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from peftlab.cli import run_command
from peftlab.cloud.settings import MissingSettingError, resolve_aws_settings
from peftlab.config.sagemaker_schema import sagemaker_settings
from peftlab.cost import estimate, format_table, load_prices
from peftlab.cost.__main__ import cost
from peftlab.cost.job import priced_instance
from peftlab.errors import ConfigError

ROLE = "arn:aws:iam::123456789012:role/peftlab-sagemaker"
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYSECRETKEY"  # secret-looking: must never be printed or saved
# Keeps the test machine's own AWS settings (profile, region, a real .env) out of every subprocess here.
CLEAN = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PEFTLAB_BUCKET", "PEFTLAB_SAGEMAKER"))}
# What `python -m peftlab.cost --steps 56850 ml.p3.2xlarge=0.20 ml.g4dn.xlarge=0.35` printed before it was a Hydra app.
SEED_000_TABLE = """\
| instance | s/step | steps | hours | on-demand | spot |
|---|---:|---:|---:|---:|---:|
| ml.p3.2xlarge | 0.20 | 56,850 | 3.16 h | $12.08 | $3.63 |
| ml.g4dn.xlarge | 0.35 | 56,850 | 5.53 h | $4.16 | $1.25 |

Prices (us-east-1, as of 2024-06-01): ml.p3.2xlarge $3.825/h on-demand, $1.15/h spot; ml.g4dn.xlarge $0.7525/h \
on-demand, $0.2258/h spot.
"""
SAGEMAKER_OPTIONS = sorted(p.stem for p in (CONF / "sagemaker").glob("*.yaml"))


def launch_config(overrides: list[str]):
    """conf/launch_sagemaker.yaml composed with overrides, as launch_sagemaker.py composes it."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("launch_sagemaker", overrides=overrides)


def cost_config(overrides: list[str]):
    """conf/cost.yaml composed with overrides, as `python -m peftlab.cost` composes it."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("cost", overrides=overrides)


def test_cost_table_reproduces_seed_000():
    """56,850 steps: 0.20 s/step on p3.2xlarge, 0.35 on g4dn.xlarge (prices: conf/cost/sagemaker.yaml)."""
    table = load_prices()
    rows = estimate(table, 56_850, {"ml.p3.2xlarge": 0.20, "ml.g4dn.xlarge": 0.35})
    got = [(r.instance_type, round(r.hours, 2), round(r.on_demand_usd, 2), round(r.spot_usd, 2)) for r in rows]
    assert got == [("ml.p3.2xlarge", 3.16, 12.08, 3.63), ("ml.g4dn.xlarge", 5.53, 4.16, 1.25)]
    text = format_table(rows, table)
    assert "| ml.p3.2xlarge | 0.20 | 56,850 | 3.16 h | $12.08 | $3.63 |" in text
    assert "ml.g4dn.xlarge $0.7525/h on-demand, $0.2258/h spot" in text and f"as of {table.as_of}" in text


def test_cost_cli_prints_the_table_and_names_unknown_instances(tmp_path):
    """The Hydra command line gives the figures the argparse one gave, and writes no run folder."""
    cmd = [
        sys.executable,
        "-m",
        "peftlab.cost",
        "steps=56850",
        "seconds_per_step={ml.p3.2xlarge:0.20,ml.g4dn.xlarge:0.35}",
    ]
    out = forked_commands.run(cmd, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == SEED_000_TABLE
    assert list(tmp_path.iterdir()) == []  # a read-only command: no outputs/ or .hydra/
    bad = forked_commands.run([*cmd[:4], "seconds_per_step={ml.x9.huge:1}"], cwd=tmp_path, timeout=120)
    assert bad.returncode == 2 and "instance_type=ml.x9.huge: no price in the cost table" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_cost_app_composes_its_arguments(tmp_path, capsys):
    args = ["steps=56850", "seconds_per_step={ml.p3.2xlarge:0.20,ml.g4dn.xlarge:0.35}"]
    assert run_command(cost, cost_config(args)) + "\n" == SEED_000_TABLE
    other = tmp_path / "prices.yaml"  # prices=<yaml>: another table, same layout
    other.write_text(
        "as_of: '2025-01-01'\nregion: eu-west-1\ninstances:\n  ml.p3.2xlarge: {on_demand: 4.0, spot: 1.2}\n"
    )
    text = run_command(cost, cost_config([*args[:1], "seconds_per_step={ml.p3.2xlarge:0.20}", f"prices={other}"]))
    assert "| ml.p3.2xlarge | 0.20 | 56,850 | 3.16 h | $12.63 | $3.79 |" in text and "as of 2025-01-01" in text
    two = run_command(cost, cost_config([*args[:1], "seconds_per_step={ml.p3.2xlarge:0.20}", "instance_count=2"]))
    assert "| 2 × ml.p3.2xlarge | 0.20 | 56,850 | 3.16 h | $24.16 | $7.26 |" in two
    capsys.readouterr()
    for bad, message in [
        (["steps=56850"], "give steps=N and seconds per step per instance type"),
        (["steps=0", "seconds_per_step={ml.p3.2xlarge:0.2}"], "steps=0: an integer >= 1"),
        (["steps=9", "seconds_per_step=0.2"], "seconds_per_step=0.2: a mapping"),
        (
            ["steps=9", "seconds_per_step={ml.p3.2xlarge:fast}"],
            "seconds_per_step='fast' for ml.p3.2xlarge: a number > 0",
        ),
        ([f"run={tmp_path}"], f"run={tmp_path}: no metrics.json"),
    ]:
        with pytest.raises(SystemExit) as exited:
            run_command(cost, cost_config(bad))
        assert exited.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, (bad, err)


def test_cost_from_a_run_folder_uses_its_measured_seconds_per_step(tmp_path, capsys):
    (tmp_path / "metrics.json").write_text(json.dumps({"global_step": 100, "train_time_s": 35.0, "epochs": 2}))

    cfg = cost_config([f"run={tmp_path}", "epochs=1137", "instances=[ml.g4dn.xlarge]"])  # 50 steps/epoch → 56,850
    run_command(cost, cfg)
    assert "| ml.g4dn.xlarge | 0.35 | 56,850 | 5.53 h | $4.16 | $1.25 |" in capsys.readouterr().out
    every = run_command(cost, cost_config([f"run={tmp_path}"]))  # no instance named: every row, at the run's steps
    assert every.count(" | 0.35 | 100 | ") == len(load_prices().instances)
    named = run_command(cost, cost_config([f"run={tmp_path}", "seconds_per_step={ml.p3.2xlarge:0.20}"]))
    assert "| ml.p3.2xlarge | 0.20 | 100 |" in named and "ml.g4dn" not in named  # a given rate wins


def test_settings_come_from_config_env_dotenv_and_terraform(tmp_path):
    node = OmegaConf.create({"bucket": None, "role": None, "region": None, "env_file": str(tmp_path / ".env")})
    with pytest.raises(MissingSettingError, match=r"^PEFTLAB_BUCKET is not set"):
        resolve_aws_settings(node, env={})
    (tmp_path / ".env").write_text(f"PEFTLAB_BUCKET=from-dotenv\nAWS_SECRET_ACCESS_KEY={SECRET}\n")
    with pytest.raises(MissingSettingError, match=r"^PEFTLAB_SAGEMAKER_ROLE is not set"):
        resolve_aws_settings(node, env={})
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"role_arn": {"value": ROLE, "sensitive": False}, "region": {"value": "eu-west-1"}}))
    node.terraform_outputs = str(outputs)
    got = resolve_aws_settings(node, env={})
    assert (got.bucket, got.role, got.region) == ("from-dotenv", ROLE, "eu-west-1")
    assert resolve_aws_settings(node, env={"PEFTLAB_BUCKET": "from-env"}).bucket == "from-env"
    node.bucket = "s3://from-config/"
    assert resolve_aws_settings(node, env={"PEFTLAB_BUCKET": "from-env"}).bucket == "from-config"
    node.role = "admin"
    with pytest.raises(ConfigError, match=r"sagemaker.role=admin: an IAM role ARN"):
        resolve_aws_settings(node, env={})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sagemaker.max_wait=600", "sagemaker.max_wait=600: seconds, >= max_run (86400)"),
        ("sagemaker.instance_count=0", "sagemaker.instance_count=0: must be >= 1"),
        ("sagemaker.instance_type=g4dn.xlarge", "sagemaker.instance_type='g4dn.xlarge': a SageMaker type"),
        ("sagemaker.max_run=soon", "sagemaker.max_run: Value 'soon' of type 'str' could not be converted to Integer"),
        ("hardware.num_nodes=2", "hardware.num_nodes=2: must equal sagemaker.instance_count (1)"),
        # Hydra refuses sagemaker.<typo>= itself; a `+` key it lets through is refused here, before any upload
        ("+sagemaker.instance_cout=2", "sagemaker.instance_cout: unknown key; allowed keys are bucket, budget_usd,"),
    ],
)
def test_bad_sagemaker_settings_are_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        sagemaker_settings(launch_config(["hardware=g4dn_spot", override]))


@pytest.mark.parametrize("option", SAGEMAKER_OPTIONS)
def test_each_sagemaker_hardware_option_selects_its_instances(option, tmp_path):
    """hardware=<option> keeps the machine alone and selects sagemaker/<option>; both validate."""
    from peftlab.config import validate

    cfg = launch_config([f"hardware={option}", f"paths.output_dir={tmp_path}"])
    machine = {"name", "accelerator", "devices", "num_nodes", "strategy", "precision", "fast_dropout", "max_memory_gb"}
    # HardwareSettings' keys (its schema fills fast_dropout and max_memory_gb), no instance keys
    assert set(cfg.hardware) == machine
    instance = sagemaker_settings(cfg)
    assert instance == sagemaker_settings(launch_config([f"+sagemaker={option}"]))
    assert instance.spot == option.endswith("_spot") and instance.instance_type.startswith("ml.")
    assert validate(cfg, check_files=False).hardware.num_nodes == instance.instance_count
    two = launch_config([f"hardware={option}", "sagemaker.instance_count=2"])
    assert sagemaker_settings(two).instance_count == two.hardware.num_nodes == 2  # one Lightning node per instance
    train = compose_config([f"hardware={option}"], output_dir=tmp_path)  # the job's own train.py composition
    assert train.sagemaker.instance_type == instance.instance_type and validate(train).hardware.name == option
    other = next(o for o in SAGEMAKER_OPTIONS if o != option)
    assert sagemaker_settings(launch_config([f"hardware={option}", f"sagemaker={other}"])) == sagemaker_settings(
        launch_config([f"hardware={other}"])
    )


def _launch_cli(*args, env, cwd):
    return forked_commands.run(
        [sys.executable, str(REPO / "launch_sagemaker.py"), *args], cwd=cwd, env=env, timeout=300
    )


def test_dry_run_prints_the_request_and_estimate_and_no_secret(tmp_path):
    pytest.importorskip("sagemaker.train", reason="the SageMaker SDK v3 (pip install -e '.[sagemaker]')")
    (tmp_path / ".env").write_text(
        f"PEFTLAB_SAGEMAKER_ROLE={ROLE}\nAWS_SECRET_ACCESS_KEY={SECRET}\nHF_TOKEN=hf_{SECRET}\n"
    )
    env = {**CLEAN, "PEFTLAB_BUCKET": "peftlab-dry", "AWS_SECRET_ACCESS_KEY": SECRET, "HF_TOKEN": SECRET}
    args = ["hardware=g4dn_spot", "model=deberta_v3", "peft=lora", "dataset=qqp", "dry_run=true",
            "sagemaker.region=us-east-1", "sagemaker.run_name=qqp-lora",
            "sagemaker.estimate.steps=56850", "sagemaker.estimate.seconds_per_step=0.35"]  # fmt: skip
    out = _launch_cli(*args, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    request = json.loads(text[text.index("{") : text.index("\nregion:")])
    assert request["ResourceConfig"]["InstanceType"] == "ml.g4dn.xlarge" and request["EnableManagedSpotTraining"]
    stop = request["StoppingCondition"]
    assert stop["MaxWaitTimeInSeconds"] >= stop["MaxRuntimeInSeconds"] == 86400
    assert request["CheckpointConfig"] == {
        "S3Uri": "s3://peftlab-dry/peftlab/checkpoints/qqp-lora",
        "LocalPath": "/opt/ml/checkpoints",
    }
    hps = {"hardware": "g4dn_spot", "model": "deberta_v3", "peft": "lora", "dataset": "qqp"}
    assert request["HyperParameters"] == hps
    assert request["AlgorithmSpecification"]["TrainingImage"].endswith("pytorch-training:2.5-gpu-py311")
    assert "at most $5.42" in text and "| ml.g4dn.xlarge | 0.35 | 56,850 | 5.53 h | $4.16 | $1.25 |" in text
    assert SECRET not in text + out.stderr
    saved = "".join(p.read_text(errors="ignore") for p in tmp_path.rglob("*") if p.is_file() and p.name != ".env")
    assert SECRET not in saved


def test_missing_bucket_is_the_named_error(tmp_path):
    out = _launch_cli("hardware=g4dn_spot", "dry_run=true", env=CLEAN, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("error: PEFTLAB_BUCKET is not set")


def test_local_hardware_is_refused_for_a_launch(tmp_path):
    env = {**CLEAN, "PEFTLAB_BUCKET": "b-ucket", "PEFTLAB_SAGEMAKER_ROLE": ROLE, "AWS_REGION": "us-east-1"}
    out = _launch_cli("hardware=cpu", "dry_run=true", env=env, cwd=tmp_path)
    assert out.returncode == 2 and "hardware=cpu: not a SageMaker option" in out.stderr
    assert "hardware=<one of " + ", ".join(SAGEMAKER_OPTIONS) + ">" in out.stderr
    # Checked before the AWS settings: with none of them set, the hardware is still what the error names.
    out = _launch_cli("hardware=cpu", "dry_run=true", env=CLEAN, cwd=tmp_path)
    assert out.returncode == 2 and "hardware=cpu: not a SageMaker option" in out.stderr


@pytest.fixture
def moto_endpoint():
    """moto's server (`python -m moto.server`) on a free port of 127.0.0.1, in its own process."""
    pytest.importorskip("moto.server", reason="moto[server] (dev extra)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)


def test_launch_creates_the_job_in_moto_with_the_real_sdk(moto_endpoint, tmp_path):
    """The real `launch_sagemaker.py` → ModelTrainer.train(wait=False) against moto's S3, IAM and SageMaker.

    One switch: SAGEMAKER_VALIDATE_ROLE=false. The SDK checks the role with iam:SimulatePrincipalPolicy, which moto
    does not implement (it answers HTTP 500); every other call (S3 upload, CreateTrainingJob, DescribeTrainingJob)
    goes to the server as it would to AWS.
    """
    pytest.importorskip("sagemaker.train", reason="the SageMaker SDK v3 (pip install -e '.[sagemaker]')")
    import boto3

    aws = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    aws.client("s3", endpoint_url=moto_endpoint).create_bucket(Bucket="peftlab-jobs")
    statement = {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
    trust = {"Version": "2012-10-17", "Statement": [statement]}
    iam = aws.client("iam", endpoint_url=moto_endpoint)
    role = iam.create_role(RoleName="peftlab-sagemaker", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    env = {**CLEAN, "AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": SECRET,
           "AWS_REGION": "us-east-1", "SAGEMAKER_VALIDATE_ROLE": "false", "PEFTLAB_BUCKET": "peftlab-jobs",
           "PEFTLAB_SAGEMAKER_ROLE": role}  # fmt: skip
    out = _launch_cli(
        "hardware=g4dn_spot", "model=deberta_v3_tiny", "peft=lora", "dataset=demo", "trainer.max_steps=40",
        "peft.r=4", "sagemaker.run_name=tiny-run", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    job_name = next(line.split()[-1] for line in out.stdout.splitlines() if line.startswith("training job:"))
    assert f"#/jobs/{job_name}" in out.stdout and SECRET not in out.stdout + out.stderr

    job = aws.client("sagemaker", endpoint_url=moto_endpoint).describe_training_job(TrainingJobName=job_name)
    assert job["ResourceConfig"]["InstanceType"] == "ml.g4dn.xlarge" and job["ResourceConfig"]["InstanceCount"] == 1
    assert job["EnableManagedSpotTraining"] is True
    stop = job["StoppingCondition"]
    assert stop["MaxWaitTimeInSeconds"] >= stop["MaxRuntimeInSeconds"] == 86400
    assert job["CheckpointConfig"]["S3Uri"] == "s3://peftlab-jobs/peftlab/checkpoints/tiny-run"
    assert job["RoleArn"] == role and job["OutputDataConfig"]["S3OutputPath"] == "s3://peftlab-jobs/peftlab/output"
    hps = job["HyperParameters"]
    assert {k: json.loads(v) if v.isdigit() else v for k, v in hps.items()} == {
        "hardware": "g4dn_spot", "model": "deberta_v3_tiny", "peft": "lora", "dataset": "demo",
        "trainer.max_steps": 40, "peft.r": 4,
    }  # fmt: skip
    code = next(c for c in job["InputDataConfig"] if c["ChannelName"] == "code")["DataSource"]["S3DataSource"]["S3Uri"]

    # The code channel holds the source tarball: the project and the composed config, nothing secret.
    bucket, _, prefix = code.removeprefix("s3://").partition("/")
    s3 = aws.client("s3", endpoint_url=moto_endpoint)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
    assert [k.rsplit("/", 1)[-1] for k in keys] == ["peftlab-source.tar.gz"]
    s3.download_file(bucket, keys[0], str(tmp_path / "source.tar.gz"))
    with tarfile.open(tmp_path / "source.tar.gz") as tar:
        names = set(tar.getnames())
        composed = OmegaConf.create(tar.extractfile("peftlab_job_config.yaml").read().decode())
        blob = b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())
    assert {"train.py", "pyproject.toml", "peftlab/run/training.py", "peftlab/cloud/container.py",
            "peftlab/conf/config.yaml", "peftlab/conf/hardware/g4dn_spot.yaml",
            "peftlab/conf/sagemaker/g4dn_spot.yaml", "peftlab/cost/__init__.py"} <= names  # fmt: skip
    assert not any("__pycache__" in n or n.startswith((".env", "outputs")) for n in names)
    assert composed.model.name == "deberta_v3_tiny" and composed.trainer.max_steps == 40 and composed.peft.r == 4
    assert composed.sagemaker.instance_type == "ml.g4dn.xlarge" and SECRET.encode() not in blob
    assert "instance_type" not in composed.hardware


def test_secret_looking_overrides_and_environment_are_refused(tmp_path):
    from peftlab.cloud.sagemaker_job import plan_job
    from peftlab.cloud.settings import AwsSettings

    aws = AwsSettings("b-ucket", ROLE, "us-east-1")
    overrides = ["hardware=g4dn_spot", "sagemaker.image_uri=img", f"paths.output_dir={tmp_path}",
                 f"+sagemaker.environment.HF_TOKEN={SECRET}"]  # fmt: skip
    cfg = launch_config(overrides)
    hw = sagemaker_settings(cfg)
    with pytest.raises(ConfigError, match=r"^sagemaker.environment.HF_TOKEN: looks like a secret"):
        plan_job(cfg, hw, aws, [])
    cfg.sagemaker.environment = {}
    with pytest.raises(ConfigError, match=r"^\+model.api_key: looks like a secret"):
        plan_job(cfg, hw, aws, [f"+model.api_key={SECRET}"])
    plan = plan_job(cfg, hw, aws, ["peft.r=4", "dry_run=true", "sagemaker.bucket=x", "~callbacks.progress_bar"])
    assert plan.hyperparameters == {"peft.r": "4", "~callbacks.progress_bar": "", "hardware": "g4dn_spot"}


def test_a_runs_report_carries_its_cost_on_a_priced_instance():
    from peftlab.cost.job import run_cost

    prices = OmegaConf.load(CONF / "cost" / "sagemaker.yaml")
    report = {"global_step": 56_850, "train_time_s": 56_850 * 0.20, "fit_time_s": 56_850 * 0.20}
    cost = run_cost(prices, "ml.p3.2xlarge", 1, report)
    assert cost["seconds_per_step"] == 0.2 and round(cost["on_demand_usd"], 2) == 12.08
    assert round(cost["spot_usd"], 2) == 3.63 and cost["prices_as_of"] == "2024-06-01"
    assert run_cost(prices, "ml.p3.2xlarge", 2, report)["spot_usd"] == pytest.approx(2 * cost["spot_usd"])
    assert run_cost(prices, None, 1, report) is None  # local hardware: no price
    # The instance a run is billed for: what a SageMaker job's environment names; nothing on any other machine.
    job = {"SM_CURRENT_INSTANCE_TYPE": "ml.p3.2xlarge", "SM_HOST_COUNT": "2"}
    assert priced_instance(job) == ("ml.p3.2xlarge", 2) and priced_instance({}) == (None, 1)


def test_a_local_run_imports_no_sagemaker_code(tmp_path):
    """train.py on this machine, to its end (metrics.json written): none of the SageMaker SDK, peftlab.cloud, the
    sagemaker schema or peftlab.cost (a local run has no price) is imported (`-X importtime` lists every module a
    process imports, each after its own)."""
    tiny = ["dataset.max_train_rows=32", "dataset.max_eval_rows=8", "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false", "~callbacks.progress_bar", f"hydra.run.dir={tmp_path}"]  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-X", "importtime", str(REPO / "train.py"), *tiny], capture_output=True, text=True,
        cwd=tmp_path, env=CLEAN, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    # (indent, module) in the order imports finish: a module's importer is the next line indented less.
    tree = [
        (len(name) - len(name.lstrip()), name.strip())
        for line in out.stderr.splitlines()
        if line.startswith("import time:") and (name := line.rsplit("|", 1)[-1]).strip() != "imported package"
    ]
    modules = [name for _, name in tree]
    assert {"pytorch_lightning", "peft.tuners.lora", "peftlab.run.outputs"} <= set(modules)  # it ran
    ours = [
        m
        for m in modules
        if m.split(".")[0] == "sagemaker" or m.startswith(("peftlab.cloud", "peftlab.config.sag", "peftlab.cost"))
    ]
    assert ours == []
    assert "cost" not in json.loads((tmp_path / "metrics.json").read_text()) and not (tmp_path / "cost.json").exists()
    # boto3, when installed, comes with peft's accelerate (1.15 imports it in accelerate.commands.config.sagemaker),
    # not with peftlab: nothing of ours imports it first.
    if "boto3" in modules:
        index = modules.index("boto3")
        importer = next(name for indent, name in tree[index + 1 :] if indent < tree[index][0])
        assert importer == "accelerate.commands.config.sagemaker"
