"""Inside the SageMaker container: `python -m peftlab.cloud.container` runs train.py with the launch's overrides
(SM_HPS) plus the overrides that SageMaker's environment implies, under torchrun when there are several processes.

SageMaker's contract, read from the environment the training toolkit sets:
  SM_MODEL_DIR        -> paths.output_dir   (adapter/, metrics.json, config.yaml, csv/: uploaded as model.tar.gz;
                                             after training the container adds cost.json, the job's price)
  SM_OUTPUT_DATA_DIR  -> hydra.run.dir      (.hydra/ and train.log: uploaded as output.tar.gz)
  SM_CHANNEL_DATA     -> dataset.data_dir   (the `data` input channel, when the launch gave one)
  PEFTLAB_CHECKPOINT_DIR (set by the launch: /opt/ml/checkpoints, synced to S3) -> paths.checkpoint_dir, resume=auto
  SM_CHANNEL_MODEL    -> source=<it>/model.tar.gz (an evaluation job: the `model` channel)
  PEFTLAB_SCRIPT      -> the script to run: train.py (default) or evaluate.py (launch_sagemaker.py task=evaluate)
Checkpoints stay out of SM_MODEL_DIR (they would bloat model.tar.gz); Lightning writes them from rank 0 only.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The scripts a job may run, and whether several GPUs/instances run it under torchrun (evaluate.py runs one process).
SCRIPTS = {"train.py": True, "evaluate.py": False}

# environment variable -> config key it fills (in this order on the command line)
ENV_TO_OVERRIDE = (
    ("SM_MODEL_DIR", "paths.output_dir"),
    ("SM_OUTPUT_DATA_DIR", "hydra.run.dir"),
    ("SM_CHANNEL_DATA", "dataset.data_dir"),
    ("PEFTLAB_CHECKPOINT_DIR", "paths.checkpoint_dir"),
    ("SM_CHANNEL_MODEL", "source"),
)
SUFFIX = {"hydra.run.dir": "/hydra", "source": "/model.tar.gz"}


def hyperparameter_overrides(env: dict[str, str]) -> list[str]:
    """SM_HPS (the job's hyperparameters, JSON) → the launch's key=value overrides, in order."""
    hps = json.loads(env.get("SM_HPS") or "{}")
    return [key if key.startswith("~") and value == "" else f"{key}={_plain(value)}" for key, value in hps.items()]


def _plain(value) -> str:
    """SageMaker may hand back JSON-typed values (1, true, [a,b]); Hydra wants their text."""
    return value if isinstance(value, str) else json.dumps(value).replace('"', "")


def container_overrides(env: dict[str, str]) -> list[str]:
    overrides = []
    for variable, key in ENV_TO_OVERRIDE:
        if env.get(variable):
            value = env[variable] + SUFFIX.get(key, "")
            overrides.append(f"{key}={value}")
    if env.get("PEFTLAB_CHECKPOINT_DIR"):
        overrides.append("resume=auto")  # a restarted spot job finds last.ckpt there (SageMaker copied it back)
    hosts, gpus = int(env.get("SM_HOST_COUNT") or 1), int(env.get("SM_NUM_GPUS") or 0)
    distributed = SCRIPTS[script(env).name]
    if distributed and (hosts > 1 or gpus > 1):  # one process per GPU on every instance (torchrun sets the ranks)
        overrides += [f"hardware.num_nodes={hosts}", f"hardware.devices={max(gpus, 1)}"]
    return overrides


def script(env: dict[str, str]) -> Path:
    name = env.get("PEFTLAB_SCRIPT") or "train.py"
    if name not in SCRIPTS:
        raise SystemExit(f"PEFTLAB_SCRIPT={name}: one of {', '.join(SCRIPTS)}")
    return REPO / name


def train_command(env: dict[str, str], python: str = sys.executable) -> list[str]:
    """`python train.py ...`, or `torchrun ... train.py ...` across SM_HOST_COUNT instances × SM_NUM_GPUS."""
    args = [str(script(env)), *hyperparameter_overrides(env), *container_overrides(env)]
    hosts, gpus = int(env.get("SM_HOST_COUNT") or 1), int(env.get("SM_NUM_GPUS") or 0)
    if (hosts == 1 and gpus <= 1) or not SCRIPTS[script(env).name]:
        return [python, *args]
    launcher = [python, "-m", "torch.distributed.run", f"--nnodes={hosts}", f"--nproc_per_node={max(gpus, 1)}"]
    if hosts > 1:
        launcher += [
            f"--node_rank={env['SM_CURRENT_HOST_RANK']}",
            f"--master_addr={env['SM_MASTER_ADDR']}",
            f"--master_port={env.get('SM_MASTER_PORT') or 29500}",
        ]
    return [*launcher, *args]


def main() -> int:
    command = train_command(dict(os.environ))
    print("peftlab: running", " ".join(command), flush=True)
    child = subprocess.Popen(command)
    # A spot reclaim SIGTERMs the container's first process (this one); pass it on so train.py (or torchrun, which
    # passes it to its workers) saves last.ckpt before the instance goes, instead of this process dying alone.
    signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum))
    code = child.wait()
    if code == 0 and script(dict(os.environ)).name == "train.py" and os.environ.get("SM_MODEL_DIR"):
        from peftlab.cost.job import write_job_cost

        write_job_cost(os.environ["SM_MODEL_DIR"])  # cost.json beside metrics.json, into model.tar.gz
    return code


if __name__ == "__main__":
    sys.exit(main())
