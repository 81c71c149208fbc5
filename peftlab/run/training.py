"""fit(settings): trainer -> data + model + PEFT method -> LightningModule -> Trainer.fit.

Reads top to bottom like lightning-hydra-template's train(): every object comes from the validated settings. What a
run leaves behind (config.yaml, adapter/, metrics.json, the trackers' summary, the table) is written by the
RunOutputs callback, so every launcher writes the same folder by the same code.
"""

import signal
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from pytorch_lightning.utilities.exceptions import SIGTERMException

from peftlab.config import RunSettings
from peftlab.errors import ConfigError
from peftlab.models.fast_dropout import use_fast_dropout
from peftlab.models.methods import apply_method, base_memory_footprint
from peftlab.modules import PeftModule, Schedule, build_module
from peftlab.run.collector import collecting
from peftlab.run.outputs import RunOutputs
from peftlab.run.resume import checkpoint_to_resume
from peftlab.run.setup import JobInputs, prepare_job
from peftlab.run.summary import params_report
from peftlab.rundir import RunDir
from peftlab.trainer.build import build_trainer
from peftlab.trainer.tracking import resume_kwargs


@dataclass
class RunResult:
    """Everything a caller (CLI, sweep, test) may want after a fit."""

    settings: RunSettings
    module: PeftModule
    trainer: pl.Trainer
    datamodule: object
    tokenizer: object
    output_dir: Path
    report: dict | None  # None on non-zero ranks

    @property
    def best_metric(self) -> float | None:
        if not self.report or not self.report["best"]:
            return None
        return self.report["best"][self.report["monitor"]]


def fit(settings: RunSettings) -> RunResult:
    """One fine-tuning run of validated job settings (run/settings.py)."""
    if settings.peft.method == "none":
        raise ConfigError("peft=none: trains nothing; use it with evaluate.py (the base model before fine-tuning)")
    run = RunDir(settings.output_dir, settings.checkpoint_dir)
    # a broken explicit ckpt_path fails here, early
    ckpt_path = checkpoint_to_resume(settings.ckpt_path, settings.resume, run.checkpoints)
    tracker_runs = resume_kwargs(settings.composed.get("logger"), run.checkpoints, ckpt_path)
    # The trainer first: its root device (cuda:<local rank> under DDP) is where a 4-bit base must be loaded.
    trainer = build_trainer(settings, tracker_runs=tracker_runs)
    job, module, base_memory = build_job_module(settings, trainer.strategy.root_device)
    facts = {"params": params_report(module.model), "base_memory": base_memory}
    outputs = RunOutputs(run, settings, job.tokenizer, job.head, facts, resumed=bool(tracker_runs))
    trainer.callbacks.append(outputs)  # after RunStats: metrics.json reads what it measured

    with exit_quietly_on_sigterm(), collecting():
        trainer.fit(module, datamodule=job.datamodule, ckpt_path=ckpt_path)
    return RunResult(settings, module, trainer, job.datamodule, job.tokenizer, run.root, outputs.report)


def build_job_module(settings: RunSettings, device: torch.device | None = None) -> tuple[JobInputs, PeftModule, dict]:
    """The job's inputs (seed, tokenizer, checked data, base model on `device`), its LightningModule (the method
    applied, the optimiser and schedule) and the base's memory footprint: a fit's objects before the Trainer runs,
    also what bench/compiled_step.py times a step of."""
    job = prepare_job(settings, device)
    base_memory = base_memory_footprint(job.base, getattr(torch, settings.model.dtype).itemsize)
    model = apply_method(job.base, settings.peft, job.head, settings.shape)
    if settings.hardware.fast_dropout:
        use_fast_dropout(model)
    optimizer = instantiate(settings.optim.optimizer)  # partial: the module passes its trainable parameters
    schedule = Schedule(settings.optim.warmup_ratio, settings.optim.schedule_steps)
    module = build_module(
        settings.shape, settings.dataset, model, job.tokenizer, optimizer, schedule, settings.objective
    )
    return job, module, base_memory


@contextmanager
def exit_quietly_on_sigterm():
    """SaveOnSigterm saved last.ckpt: exit as a SIGTERM'd process does (143), without a traceback."""
    try:
        yield
    except SIGTERMException:
        raise SystemExit(128 + signal.SIGTERM) from None
