"""Inside-the-container behaviour without a container: `python -m peftlab.cloud.container` with SageMaker's environment
on the tiny DeBERTa twin; outputs land where SageMaker uploads them, and a killed job resumes from its checkpoint."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import REPO

from peftlab.cloud.container import container_overrides, hyperparameter_overrides, train_command

# What the launch passes as hyperparameters (the user's overrides, shrunk for a CPU test).
HPS = {
    "model": "deberta_v3_tiny",
    "peft": "lora",
    "dataset": "demo",
    "dataset.max_train_rows": 1600,
    "dataset.max_eval_rows": 16,
    "dataset.batch_size": 8,
    "trainer.max_steps": 60,
    "trainer.max_epochs": 1,
    "trainer.val_check_interval": 15,
    "trainer.enable_progress_bar": "false",
    "~callbacks.progress_bar": "",
}


def sagemaker_env(root) -> dict[str, str]:
    """The variables SageMaker's toolkit sets (paths moved under root), plus the launch's PEFTLAB_CHECKPOINT_DIR."""
    return {
        **os.environ,
        "SM_MODEL_DIR": str(root / "model"),
        "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"),
        "PEFTLAB_CHECKPOINT_DIR": str(root / "checkpoints"),
        "SM_HOST_COUNT": "1",
        "SM_NUM_GPUS": "0",
        "SM_CURRENT_INSTANCE_TYPE": "ml.g4dn.xlarge",
        "SM_HPS": json.dumps(HPS),
    }


def test_environment_becomes_overrides_and_torchrun_across_instances():
    env = {"SM_HPS": json.dumps({"model": "minilm", "peft.r": 4, "~callbacks.progress_bar": ""}),
           "SM_MODEL_DIR": "/opt/ml/model", "SM_CHANNEL_DATA": "/opt/ml/input/data/data",
           "PEFTLAB_CHECKPOINT_DIR": "/opt/ml/checkpoints"}  # fmt: skip
    assert hyperparameter_overrides(env) == ["model=minilm", "peft.r=4", "~callbacks.progress_bar"]
    assert container_overrides(env) == [
        "paths.output_dir=/opt/ml/model",
        "dataset.data_dir=/opt/ml/input/data/data",
        "paths.checkpoint_dir=/opt/ml/checkpoints",
        "resume=auto",
    ]
    two = {**env, "SM_HOST_COUNT": "2", "SM_NUM_GPUS": "1", "SM_CURRENT_HOST_RANK": "1", "SM_MASTER_ADDR": "algo-1",
           "SM_MASTER_PORT": "7777"}  # fmt: skip
    cmd = train_command(two, python="python")
    assert cmd[:8] == ["python", "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1", "--node_rank=1",
                       "--master_addr=algo-1", "--master_port=7777"]  # fmt: skip
    assert cmd[8].endswith("train.py") and cmd[-2:] == ["hardware.num_nodes=2", "hardware.devices=1"]


def test_an_evaluation_job_runs_evaluate_py_on_its_model_channel_in_one_process():
    """launch_sagemaker.py task=evaluate: PEFTLAB_SCRIPT picks evaluate.py, the `model` channel is its source, and
    several GPUs or instances do not start torchrun (evaluate.py is one process)."""
    env = {"SM_HPS": json.dumps({"dataset": "sst2", "hardware": "g4dn"}), "SM_MODEL_DIR": "/opt/ml/model",
           "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data", "SM_CHANNEL_MODEL": "/opt/ml/input/data/model",
           "PEFTLAB_SCRIPT": "evaluate.py", "SM_HOST_COUNT": "1", "SM_NUM_GPUS": "4"}  # fmt: skip
    cmd = train_command(env, python="python")
    assert cmd[0] == "python" and cmd[1] == str(REPO / "evaluate.py")
    assert cmd[2:] == ["dataset=sst2", "hardware=g4dn", "paths.output_dir=/opt/ml/model",
                       "hydra.run.dir=/opt/ml/output/data/hydra",
                       "source=/opt/ml/input/data/model/model.tar.gz"]  # fmt: skip
    with pytest.raises(SystemExit, match=r"PEFTLAB_SCRIPT=serve\.py: one of train\.py, evaluate\.py"):
        train_command({**env, "PEFTLAB_SCRIPT": "serve.py"})


def _run(env, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "peftlab.cloud.container"], cwd=REPO, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs,
    )  # fmt: skip


def test_outputs_land_where_sagemaker_expects_and_a_killed_job_resumes(tmp_path):
    env = sagemaker_env(tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"

    # 1. Start, wait for the first checkpoint (step 15), then kill the job as a spot interruption would.
    first = _run(env, start_new_session=True)
    deadline = time.monotonic() + 240
    while not last.is_file() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # let torch.save finish the file it just created
    assert first.poll() is None, "the job ended before it could be interrupted:\n" + first.stdout.read()[-3000:]
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    resumed_from = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert 0 < resumed_from < 60
    assert not (tmp_path / "model" / "metrics.json").exists()

    # 2. The restarted job (same environment, SageMaker copied the checkpoints back) continues from there.
    second = _run(env)
    log, _ = second.communicate(timeout=300)
    assert second.returncode == 0, log[-4000:]
    assert f"resume=auto: continuing from {last}" in log
    report = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert report["global_step"] == 60
    # The run's record spans the kill: samples are counted once from step 0 (the checkpoint carries the count up to
    # its step), and the validations before the kill come back with it, each once.
    assert report["train_samples"] == 60 * 8
    assert [h["step"] for h in report["history"]] == [15, 30, 45, 60]
    # Priced as the instance the job's environment names: cost.json, from its metrics.json, by the container.
    assert "cost" not in report
    cost = json.loads((tmp_path / "model" / "cost.json").read_text())
    assert (cost["instance_type"], cost["instance_count"], cost["prices_as_of"]) == ("ml.g4dn.xlarge", 1, "2024-06-01")
    hours = report["fit_time_s"] / 3600  # at conf/cost/sagemaker.yaml's g4dn.xlarge prices; rounded to 4 places
    assert cost["on_demand_usd"] == pytest.approx(hours * 0.7525, abs=1e-4)
    assert cost["spot_usd"] == pytest.approx(hours * 0.2258, abs=1e-4)

    # SM_MODEL_DIR holds what model.tar.gz should: the adapter, metrics, config; no checkpoints.
    model = tmp_path / "model"
    assert (model / "adapter" / "adapter_model.safetensors").is_file() and (model / "config.yaml").is_file()
    assert not list(model.rglob("*.ckpt"))
    assert (tmp_path / "output" / "data" / "hydra" / ".hydra" / "overrides.yaml").is_file()
    assert "paths.checkpoint_dir" in (tmp_path / "output" / "data" / "hydra" / ".hydra" / "overrides.yaml").read_text()


def test_resume_auto_picks_last_ckpt_only_when_it_exists(tmp_path):
    from conftest import compose_config

    from peftlab.config import validate
    from peftlab.errors import ConfigError
    from peftlab.run.resume import checkpoint_to_resume

    settings = validate(compose_config(["resume=auto"], output_dir=tmp_path))
    folder = tmp_path / "checkpoints"
    assert checkpoint_to_resume(settings.ckpt_path, settings.resume, folder) is None  # nothing yet: from scratch
    (tmp_path / "checkpoints").mkdir()
    torch.save({"state_dict": {}, "loops": {}}, tmp_path / "checkpoints" / "last.ckpt")
    assert checkpoint_to_resume(settings.ckpt_path, settings.resume, folder) == str(folder / "last.ckpt")
    off = validate(compose_config([], output_dir=tmp_path))
    assert checkpoint_to_resume(off.ckpt_path, off.resume, folder) is None  # resume=null: never implicitly
    with pytest.raises(ConfigError, match=r"^resume='yes': null \(start from scratch\) or auto"):
        validate(compose_config(["resume=yes"], output_dir=tmp_path))
    with pytest.raises(ConfigError, match="give either ckpt_path or resume=auto"):
        validate(compose_config(["resume=auto", "ckpt_path=a.ckpt"], output_dir=tmp_path))
