"""fit(cfg): data -> model + PEFT method -> LightningModule -> Trainer.fit -> adapter/ + metrics.json.

Reads top to bottom like lightning-hydra-template's train(): every object comes from the validated config.
"""

import signal
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from pytorch_lightning.utilities.exceptions import SIGTERMException

from peftlab.config import RunSettings, validate
from peftlab.errors import ConfigError
from peftlab.models.fast_dropout import use_fast_dropout
from peftlab.models.methods import apply_method, base_memory_footprint
from peftlab.modules import PeftModule, build_module
from peftlab.run.distributed import effective_batch
from peftlab.run.outputs import RunOutputs, params_report, record_start
from peftlab.run.resume import checkpoint_to_resume
from peftlab.run.setup import prepare_job
from peftlab.rundir import RunDir
from peftlab.trainer.build import build_trainer
from peftlab.trainer.tracking import check_trackers, resume_kwargs


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


def fit(cfg: DictConfig, settings: RunSettings | None = None) -> RunResult:
    """One fine-tuning run; `settings` is cfg validated (validated here when not given)."""
    settings = settings or validate(cfg)
    if settings.peft.method == "none":
        raise ConfigError("peft=none: trains nothing; use it with evaluate.py (the base model before fine-tuning)")
    check_trackers(cfg.get("logger"))  # logger=mlflow without mlflow installed fails here, not after training
    run = RunDir(cfg.paths.output_dir, cfg.paths.get("checkpoint_dir"))
    ckpt_path = checkpoint_to_resume(settings, run.checkpoints)  # a broken explicit ckpt_path fails here, early

    tracker_runs = resume_kwargs(cfg.get("logger"), run.checkpoints, ckpt_path)
    # The trainer first: its root device (cuda:<local rank> under DDP) is where a 4-bit base must be loaded.
    trainer = build_trainer(cfg, settings, tracker_runs=tracker_runs)
    job = prepare_job(settings, trainer.strategy.root_device)  # seed, tokenizer, checked data, base model
    base_memory = base_memory_footprint(job.base, getattr(torch, settings.model.dtype).itemsize)
    model = apply_method(job.base, settings.peft, job.head, settings.shape)
    if settings.hardware.fast_dropout:
        use_fast_dropout(model)
    optimizer = instantiate(cfg.optim.optimizer)  # partial: the module passes its trainable parameters
    module = build_module(settings, model, job.tokenizer, optimizer, settings.optim.warmup_ratio)
    batch = effective_batch(settings.dataset.batch_size, trainer)
    if trainer.is_global_zero:  # the other ranks (processes) read the same files; only rank 0 writes
        record_start(run, cfg, trainer, batch, resumed=bool(tracker_runs))
    facts = {"params": params_report(model), "base_memory": base_memory, "batch": batch}
    outputs = RunOutputs(run, settings, cfg, job.tokenizer, job.head, facts)
    trainer.callbacks.append(outputs)  # after RunStats: metrics.json reads what it measured

    with exit_quietly_on_sigterm():
        trainer.fit(module, datamodule=job.datamodule, ckpt_path=ckpt_path)
    return RunResult(settings, module, trainer, job.datamodule, job.tokenizer, run.root, outputs.report)


@contextmanager
def exit_quietly_on_sigterm():
    """SaveOnSigterm saved last.ckpt: exit as a SIGTERM'd process does (143), without a traceback."""
    try:
        yield
    except SIGTERMException:
        raise SystemExit(128 + signal.SIGTERM) from None
