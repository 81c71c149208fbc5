"""train(cfg): validate -> data -> model + PEFT -> LightningModule -> Trainer.fit -> adapter/ + metrics.json."""

import logging
import signal
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.exceptions import SIGTERMException

from peftlab.cloud.cost import run_cost
from peftlab.config import RunSettings, validate
from peftlab.errors import ConfigError
from peftlab.models.methods import apply_method, base_memory_footprint, save_trained
from peftlab.modules import PeftModule, build_module
from peftlab.run.callbacks import RunStats
from peftlab.run.distributed import effective_batch
from peftlab.run.hardware import resolve_precision
from peftlab.run.outputs import build_metrics_report, load_trainable_weights, print_summary, write_metrics
from peftlab.run.resume import checkpoint_to_resume
from peftlab.run.setup import prepare_job
from peftlab.run.tracking import check_trackers, log_config, log_run_end, resume_kwargs

log = logging.getLogger(__name__)


def instantiate_collection(section: DictConfig | None, extra: dict[str, dict] | None = None) -> list:
    """callbacks/logger groups are dicts of `_target_` nodes; null entries are switched off; `extra`: kwargs by name."""
    if not section:
        return []
    extra = extra or {}
    return [
        instantiate(node, **extra.get(name, {}))
        for name, node in section.items()
        if node is not None and "_target_" in node
    ]


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


def train(cfg: DictConfig) -> float | None:
    """Run one fine-tuning job; returns the best validation metric (the value a sweeper optimises)."""
    return fit(cfg).best_metric


def fit(cfg: DictConfig) -> RunResult:
    """validate -> data -> model -> Trainer.fit -> outputs; the stages in order, each from config."""
    settings = validate(cfg)  # fails here, before any heavy work, on a bad value
    if settings.peft.method == "none":
        raise ConfigError("peft=none: trains nothing; use it with evaluate.py (the base model before fine-tuning)")
    check_trackers(cfg.get("logger"))  # logger=mlflow without mlflow installed fails here, not after training
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_dir = Path(cfg.paths.get("checkpoint_dir") or output_dir / "checkpoints")
    ckpt_path = checkpoint_to_resume(settings, checkpoint_dir)  # a broken explicit ckpt_path fails here, early

    job = prepare_job(settings)
    tokenizer, datamodule, model, head = job.tokenizer, job.datamodule, job.base, job.head
    base_memory = base_memory_footprint(model, getattr(torch, settings.model.dtype).itemsize)
    model = apply_method(model, settings.peft, head, settings.shape)
    module = build_module(settings, model, tokenizer, instantiate(cfg.optim.optimizer), settings.optim.warmup_ratio)

    callbacks = instantiate_collection(cfg.get("callbacks"))
    stats = next((c for c in callbacks if isinstance(c, RunStats)), None) or RunStats()
    callbacks = [*callbacks, stats] if stats not in callbacks else callbacks
    tracker_runs = resume_kwargs(cfg.get("logger"), checkpoint_dir, ckpt_path)
    loggers = instantiate_collection(cfg.get("logger"), tracker_runs)
    if not loggers:  # Lightning refuses a LearningRateMonitor without a logger: nothing to monitor into
        callbacks = [c for c in callbacks if not isinstance(c, pl.callbacks.LearningRateMonitor)]
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers, precision=resolve_precision(settings.hardware)
    )
    batch = effective_batch(settings.dataset.batch_size, trainer)
    if trainer.is_global_zero:  # the other ranks (processes) read the same files; only rank 0 writes
        OmegaConf.save(cfg, output_dir / "config.yaml", resolve=True)
        log_config(trainer.loggers, cfg, resumed=bool(tracker_runs))
        log.info(
            "effective batch size %d = %d per device × %d devices × %d nodes × %d accumulated",
            *(batch[k] for k in ("total", "per_device", "devices", "num_nodes", "accumulate_grad_batches")),
        )
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    except SIGTERMException:  # SaveOnSigterm saved last.ckpt; exit as a SIGTERM'd process does, without a traceback
        raise SystemExit(128 + signal.SIGTERM) from None

    kept = trainer.checkpoint_callbacks  # the one with a monitor keeps the best; last_checkpoint only keeps the latest
    checkpoint = next((c for c in kept if c.monitor), kept[0] if kept else None)
    best_path = checkpoint.best_model_path if checkpoint is not None else ""
    if best_path:
        load_trainable_weights(module, best_path)  # adapter/ holds the best validation checkpoint
    if not trainer.is_global_zero:
        return RunResult(settings, module, trainer, datamodule, tokenizer, output_dir, None)
    adapter_dir = output_dir / "adapter"
    save_trained(module.model, settings.peft, head, adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    monitor = checkpoint.monitor if checkpoint is not None and checkpoint.monitor else f"val/{settings.dataset.metric}"
    mode = checkpoint.mode if checkpoint is not None and checkpoint.monitor else "max"
    report = build_metrics_report(
        settings=settings,
        module=module,
        stats=stats,
        monitor=monitor,
        mode=mode,
        adapter_dir=adapter_dir,
        best_checkpoint=best_path or None,
        base_memory=base_memory,
        global_step=trainer.global_step,
        epochs=trainer.current_epoch,
    )
    report["effective_batch_size"] = batch["total"]
    report["batch"] = batch
    hw = settings.hardware  # on a priced SageMaker instance: measured s/step and what the fit cost (conf/cost/)
    report["cost"] = run_cost(cfg.get("cost"), hw.instance_type, hw.instance_count, report)
    write_metrics(report, output_dir / "metrics.json")
    log_run_end(trainer.loggers, report, adapter_dir)  # summary metrics, adapter/ as an artifact, tracker closed
    print_summary(report, output_dir)
    return RunResult(settings, module, trainer, datamodule, tokenizer, output_dir, report)
