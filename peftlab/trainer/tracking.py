"""Experiment trackers chosen with logger=... (conf/logger/): package check, config, final summary, adapter artifact.

Lightning's loggers log the per-step metrics themselves; this module adds what only a finished peftlab run knows:
the composed config as hyperparameters, the numbers of metrics.json as a summary, and adapter/ as an artifact.
Tracker packages (mlflow, wandb) are optional extras, imported only when their logger is selected.
"""

import importlib.util
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.loggers import Logger, MLFlowLogger, TensorBoardLogger, WandbLogger

from peftlab.errors import ConfigError

log = logging.getLogger(__name__)

# Logger class named by a conf/logger/ option's `_target_` -> (module it imports, peftlab extra that installs it).
TRACKER_PACKAGES = {
    "TensorBoardLogger": ("tensorboard", "tensorboard"),
    "MLFlowLogger": ("mlflow", "mlflow"),
    "WandbLogger": ("wandb", "wandb"),
}

# metrics.json entries that make the run's summary (nested dicts are flattened to "params/trainable", ...).
SUMMARY_KEYS = (
    "best",
    "params",
    "fit_time_s",
    "train_time_s",
    "train_samples",
    "train_tokens",
    "samples_per_s",
    "peak_memory",
    "adapter_bytes",
    "global_step",
    "epochs",
    "effective_batch_size",
)


def check_trackers(section: DictConfig | None) -> None:
    """Fail before any weights load when a selected tracker's package is missing, naming the extra to install."""
    for name, node in (section or {}).items():
        if node is None or "_target_" not in node:
            continue
        package, extra = TRACKER_PACKAGES.get(str(node["_target_"]).rsplit(".", 1)[-1], (None, None))
        if package is not None and importlib.util.find_spec(package) is None:
            raise ConfigError(f"logger={name}: needs the {package} package (pip install 'peftlab[{extra}]')")


# Beside the checkpoints (what a restarted spot job gets back): the tracker run each logger writes to, so a resumed
# job (resume=auto, ckpt_path) continues that run.
RUN_IDS = "tracker_runs.json"
# Logger class -> (its run id, the constructor arguments that reattach to that run).
_RESUMABLE: dict[str, tuple[Callable[[Logger], str], Callable[[str], dict]]] = {
    "MLFlowLogger": (lambda logger: logger.run_id, lambda run_id: {"run_id": run_id}),
    "WandbLogger": (lambda logger: logger.experiment.id, lambda run_id: {"id": run_id, "resume": "allow"}),
}


def resume_kwargs(section: DictConfig | None, checkpoint_dir: Path, ckpt_path: str | None) -> dict[str, dict]:
    """{logger option: extra constructor kwargs} pointing each tracker at the run an interrupted attempt started.

    Why: a spot restart or `ckpt_path=` continues the same training; without this MLflow and W&B would show it as
    a second run holding only the steps after the restart. The ids sit beside the checkpoint resumed from.
    """
    if ckpt_path is None:
        return {}
    path = (Path(ckpt_path).parent if Path(ckpt_path).is_file() else Path(checkpoint_dir)) / RUN_IDS
    if not path.is_file():
        return {}
    run_ids = json.loads(path.read_text())
    extra = {}
    for name, node in (section or {}).items():
        kind = str(node["_target_"]).rsplit(".", 1)[-1] if node is not None and "_target_" in node else None
        if kind in _RESUMABLE and kind in run_ids:
            extra[name] = _RESUMABLE[kind][1](run_ids[kind])
            log.info("logger=%s: continuing tracker run %s", name, run_ids[kind])
    return extra


class RecordTrackerRuns(pl.Callback):
    """Writes the trackers' run ids beside the checkpoints (rank 0) for resume_kwargs.

    At fit start, after ModelCheckpoint has looked at its folder (a file there earlier would make it warn that
    the folder is not empty).
    """

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        kinds = {type(logger).__name__: logger for logger in trainer.loggers}
        run_ids = {kind: _RESUMABLE[kind][0](logger) for kind, logger in kinds.items() if kind in _RESUMABLE}
        if run_ids:
            self.dirpath.mkdir(parents=True, exist_ok=True)
            (self.dirpath / RUN_IDS).write_text(json.dumps(run_ids, indent=2))


def log_config(loggers: Iterable[Logger], params: dict, resumed: bool = False) -> None:
    """The composed config, resolved (`params`), as hyperparameters (rank 0, before fit).

    A resumed MLflow run keeps the parameters of its first attempt: MLflow refuses to change a logged value (a
    continued run often raises trainer.max_epochs), and the run folder's config.yaml holds the new config anyway.

    Each Lightning logger flattens it as its tracker needs ("model/name" params in MLflow, hparams in TensorBoard,
    a nested config in W&B, hparams.yaml next to the CSV).
    """
    loggers = list(loggers)
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            _start_wandb(logger)
    for logger in loggers:
        if not (resumed and isinstance(logger, MLFlowLogger)):
            logger.log_hyperparams(params)


def summary_metrics(report: dict) -> dict[str, float]:
    """The numbers of metrics.json worth comparing runs by, flat: {"best/val/accuracy": 0.91, "samples_per_s": ...}."""
    flat: dict[str, float] = {}

    def add(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                add(f"{prefix}/{key}", inner)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[prefix] = value

    for key in SUMMARY_KEYS:
        add(key, report.get(key))
    return flat


def log_run_end(loggers: Iterable[Logger], report: dict, adapter_dir: Path) -> None:
    """After adapter/ and metrics.json are written (rank 0): summary metrics, adapter artifact, close the tracker."""
    summary = summary_metrics(report)
    step = int(report.get("global_step") or 0)
    for logger in loggers:
        for kind, finish in _RUN_END.items():
            if isinstance(logger, kind):
                finish(logger, summary, Path(adapter_dir), step, report)


def _mlflow_end(logger: MLFlowLogger, summary: dict, adapter_dir: Path, step: int, report: dict) -> None:
    # Lightning already marked the run FINISHED in finalize(); a finished run still accepts metrics and artifacts.
    logger.log_metrics(summary, step=step)
    logger.experiment.log_artifacts(logger.run_id, str(adapter_dir), "adapter")


def _wandb_end(logger: WandbLogger, summary: dict, adapter_dir: Path, step: int, report: dict) -> None:
    import wandb

    run = logger.experiment
    run.summary.update(summary)
    metadata = {k: report.get(k) for k in ("model", "method", "dataset", "monitor")} | {"summary": summary}
    artifact = wandb.Artifact(f"adapter-{run.id}", type="model", metadata=metadata)
    artifact.add_dir(str(adapter_dir))
    run.log_artifact(artifact)
    # Finish now: a sweep's next job in this process would otherwise reuse this run (WandbLogger takes wandb.run).
    run.finish()


def _tensorboard_end(logger: TensorBoardLogger, summary: dict, adapter_dir: Path, step: int, report: dict) -> None:
    # No artifact store: adapter/ sits next to the event files in the run folder already.
    logger.log_metrics(summary, step=step)
    logger.finalize("success")  # Lightning closed the writer after fit; this flushes the reopened one


# Logger type -> what it does at the end of a run. CSVLogger is absent: metrics.json beside it is the summary.
_RUN_END: dict[type, Callable[..., None]] = {
    MLFlowLogger: _mlflow_end,
    WandbLogger: _wandb_end,
    TensorBoardLogger: _tensorboard_end,
}


def _start_wandb(logger: WandbLogger) -> None:
    """Start the W&B run now, so that a missing login is one line, and no earlier job's run is reused."""
    import wandb

    if wandb.run is not None and wandb.run is not logger._experiment:  # an earlier job's (a -m sweep), left open
        log.warning("wandb: finishing run %s left open by an earlier job in this process", wandb.run.id)
        wandb.finish(exit_code=1)
    try:
        logger.experiment  # noqa: B018  (the property calls wandb.init)
    except wandb.errors.UsageError as err:
        reason = str(err).strip().splitlines()[0]
        raise ConfigError(
            f"logger=wandb: {reason} (or set WANDB_MODE=offline: the run is written locally, `wandb sync` uploads it)"
        ) from err
