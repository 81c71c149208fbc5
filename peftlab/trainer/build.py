"""build_trainer(settings): the one place a pytorch_lightning.Trainer is made, for training and for evaluation.

Everything comes from the job's settings: the composed trainer node (so `+trainer.<arg>=...` reaches Lightning in
train.py and evaluate.py alike), the callbacks and logger groups, and the precision the hardware option resolves to.
"""

import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig

from peftlab.config import RunSettings
from peftlab.trainer.callbacks import RunStats
from peftlab.trainer.hardware import check_hardware, resolve_precision
from peftlab.trainer.memory_budget import MemoryBudget
from peftlab.trainer.tracking import check_trackers

# evaluate.py scores one model on one process: no loggers, no checkpoints, none of the training callbacks.
EVALUATION = {"devices": 1, "num_nodes": 1, "strategy": "auto", "logger": False, "enable_checkpointing": False}


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


def build_trainer(settings: RunSettings, *, evaluation: bool = False, tracker_runs: dict | None = None) -> pl.Trainer:
    """The job's Trainer (settings from run/settings.py); before any data or weights load, so a missing strategy or
    tracker package fails first. tracker_runs: logger kwargs that reattach a resumed job to its tracker runs."""
    cfg = settings.composed
    check_hardware(settings.hardware)  # the strategy's package, a visible GPU: before Lightning reads them
    precision = resolve_precision(settings.hardware, settings.model)
    if evaluation:
        return instantiate(cfg.trainer, callbacks=[], precision=precision, **EVALUATION)
    check_trackers(cfg.get("logger"))  # logger=mlflow without mlflow installed fails here, not after training
    callbacks = instantiate_collection(cfg.get("callbacks"))
    if not any(isinstance(c, RunStats) for c in callbacks):  # metrics.json is measured by it
        callbacks.append(RunStats())
    if settings.hardware.max_memory_gb:  # micro-batch and accumulation chosen once the model and data are set up
        callbacks.append(MemoryBudget(settings.hardware.max_memory_gb))
    loggers = instantiate_collection(cfg.get("logger"), tracker_runs)
    if not loggers:  # Lightning refuses a LearningRateMonitor without a logger: nothing to monitor into
        callbacks = [c for c in callbacks if not isinstance(c, pl.callbacks.LearningRateMonitor)]
    if cfg.trainer.get("enable_progress_bar") is False:  # else Lightning refuses the callbacks group's progress bar
        callbacks = [c for c in callbacks if not isinstance(c, pl.callbacks.ProgressBar)]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, precision=precision)


def run_stats(trainer: pl.Trainer) -> RunStats:
    return next(c for c in trainer.callbacks if isinstance(c, RunStats))
