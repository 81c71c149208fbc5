"""Runs on several processes: the effective batch size, and multirun jobs launched as their own process group."""

import logging
import math
import os
import subprocess
import sys
from pathlib import Path

from peftlab.cli import quoted_value
from peftlab.errors import PeftlabError
from peftlab.rundir import RunDir

log = logging.getLogger(__name__)


def effective_batch(per_device: int, trainer) -> dict:
    """Samples behind one optimizer step: per-device batch × devices × nodes × gradient accumulation."""
    parts = {
        "per_device": per_device,
        "devices": trainer.num_devices,
        "num_nodes": trainer.num_nodes,
        "accumulate_grad_batches": trainer.accumulate_grad_batches,
    }
    return {**parts, "total": math.prod(parts.values())}


def processes_per_node(accelerator: str, devices) -> int:
    """How many processes Lightning starts on each node for Trainer(accelerator, devices): one per device its
    accelerator parses on this machine (trainer/hardware.py). 0 on a machine without the GPUs asked for, where
    check_hardware stops the run in one line before any Trainer is built."""
    import torch

    from peftlab.trainer.hardware import parallel_devices

    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        return 0
    return len(parallel_devices(accelerator, devices))


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def needs_own_process_group(hw) -> bool:
    """A `-m` sweep job that Lightning would run on several processes (hardware settings `hw`), starting them itself
    (see run_as_process_group)."""
    several = processes_per_node(hw.accelerator, hw.devices) * hw.num_nodes > 1
    return several and in_multirun() and not ranks_started_by_slurm()


def ranks_started_by_slurm() -> bool:
    """Every rank is already a process of its own, started by srun (a hydra/launcher=slurm job has one srun task per
    device): Lightning then takes ranks from SLURM's variables (SLURMEnvironment) and starts no processes, so the job
    trains in this process. A sweep job re-run as its own command (run_as_process_group) would be wrong there: under
    submitit the entry point is submitit's, not the training command (hydra #2231). Lightning's own test decides it,
    not a copy of it."""
    from lightning_fabric.plugins.environments import SLURMEnvironment

    return SLURMEnvironment.detect()


def run_as_process_group() -> float | None:
    """Run this sweep job as a plain (non -m) training command in its own process, whose launcher starts the ranks.

    Lightning starts ranks 1.. by re-running sys.argv; under `-m` that is the whole sweep, so each rank would start
    a sweep of its own (Lightning #11300, hydra #2070). Running the job in-process is no way out either: a second
    job would find the first one's process group and LOCAL_RANK/WORLD_SIZE variables still set. So each job runs as
    `<entry> <this job's overrides> hydra.run.dir=<this job's folder>`, <entry> the one this process was started
    with (train.py, `-m peftlab.train` or peftlab-train: _script_command): a single run, for which Lightning's
    launcher rebuilds the child command correctly. Returns the job's best metric (for sweepers), from metrics.json.
    """
    from hydra.core.hydra_config import HydraConfig

    hydra = HydraConfig.get()
    out = Path(hydra.runtime.output_dir)
    task = list(hydra.overrides.task)
    # output_subdir=null: the sweep has already written this job's .hydra/ record (mode, job number); keep it.
    command = [*_script_command(), *task, f"hydra.run.dir={quoted_value(str(out))}", "hydra.output_subdir=null"]
    log.info("sweep job %s on several processes, as its own process group: %s", hydra.job.num, " ".join(task))
    proc = subprocess.run(command, cwd=hydra.runtime.cwd, env=dict(os.environ), check=False)
    if proc.returncode != 0:
        raise PeftlabError(
            f"sweep job {hydra.job.num} ({' '.join(task)}) failed with exit code {proc.returncode}; its log: {out}"
        )
    report = RunDir(out).read_metrics()
    return report["best"][report["monitor"]] if report.get("best") else None


def _script_command() -> list[str]:
    """The interpreter and the entry point this process was started with: a script path (train.py, the peftlab-train
    console script) or `-m <module>` (peftlab.train), as Lightning's own launcher rebuilds it."""
    import __main__

    spec = getattr(__main__, "__spec__", None)
    if spec is not None and spec.name:
        return [sys.executable, "-m", spec.name]
    return [sys.executable, os.path.abspath(sys.argv[0])]
