"""RunOutputs: what every run leaves behind, written by one rank-zero callback whatever launched the run."""

import logging
import tempfile
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from peftlab.config import RunSettings
from peftlab.models.methods import save_trained, saves_whole_model
from peftlab.run.distributed import effective_batch
from peftlab.run.gather import gather_full_state, shards_parameters
from peftlab.run.summary import metrics_report, print_summary
from peftlab.rundir import RunDir
from peftlab.trainer.tracking import log_config, log_run_end

log = logging.getLogger(__name__)


class RunOutputs(pl.Callback):
    """config.yaml at fit start; adapter/, metrics.json, the trackers' summary and the final table after fit.

    A callback, so every launcher (one process, DDP, FSDP, SLURM, a SageMaker job) writes the same folder by the same
    code, rank 0 alone. The trained weights are settled at train end, on every rank, while the strategy still holds
    them on their devices (FSDP's shards are gathered to rank 0 there: a collective); the files are written at fit
    end, after Lightning has finalised its loggers. `facts`: what fit knew before training (params, base memory);
    `resumed`: the trackers continue an interrupted attempt's runs.
    """

    def __init__(self, run: RunDir, settings: RunSettings, tokenizer, head: list[str], facts: dict, resumed: bool):
        self.run, self.settings, self.tokenizer, self.head = run, settings, tokenizer, head
        self.identity = identity(settings)
        self.facts, self.resumed = dict(facts), resumed
        self.report: dict | None = None  # set on rank 0 once written
        self._gathered: dict | None = None  # whole weights from shards (rank 0), written instead of the module's

    def on_fit_start(self, trainer: pl.Trainer, pl_module) -> None:
        # rows per forward: dataset.batch_size, or the micro-batch a memory budget chose (trainer/memory_budget.py)
        batch = self.facts["batch"] = effective_batch(trainer.datamodule.train_batch_size, trainer)
        if not trainer.is_global_zero:
            return
        config = OmegaConf.to_container(self.settings.composed, resolve=True)  # resolved once, for both
        self.run.write_config(config)
        log_config(trainer.loggers, config, resumed=self.resumed)  # the trackers' hyper-parameters
        log.info(
            "effective batch size %d = %d per device × %d devices × %d nodes × %d accumulated",
            *(batch[k] for k in ("total", "per_device", "devices", "num_nodes", "accumulate_grad_batches")),
        )

    def on_train_end(self, trainer: pl.Trainer, pl_module) -> None:
        best_path = best_checkpoint(trainer)
        if shards_parameters(trainer.strategy):
            whole = saves_whole_model(self.settings.peft)
            self._gathered = gather_full_state(trainer.strategy.model, frozen=whole, prefix="model.")
            if best_path and trainer.is_global_zero:  # the best validation's trainable weights over the last ones
                self._gathered.update(checkpoint_weights(best_path, prefix="model."))
        elif best_path:
            load_trainable_weights(pl_module, best_path)  # adapter/ holds the best validation checkpoint

    def on_fit_end(self, trainer: pl.Trainer, pl_module) -> None:
        if not trainer.is_global_zero:  # the other ranks read the same files; only rank 0 writes
            return
        run = self.run
        save_trained(pl_module.model, self.settings.peft, self.head, run.adapter, self._gathered)
        self.tokenizer.save_pretrained(run.adapter)
        report = run.write_metrics(metrics_report(trainer, self.identity, self.facts, run.adapter))
        log_run_end(trainer.loggers, report, run.adapter)  # summary metrics, adapter/ as an artifact, tracker closed
        print_summary(report, run.root)
        self.report = report


def identity(settings: RunSettings) -> dict:
    """What metrics.json names a run by (its first keys), and the metric it ranks by when no checkpoint monitors one."""
    return {
        "method": settings.peft.method,
        "model": settings.model.name,
        "model_name_or_path": settings.model.name_or_path,
        "dataset": settings.dataset.name,
        "seed": settings.seed,
        "default_monitor": f"val/{settings.dataset.metric}",
    }


def best_checkpoint(trainer: pl.Trainer) -> str:
    """The file adapter/ is written from: the monitored checkpoint's best, else last_checkpoint's latest ("": none)."""
    kept = trainer.checkpoint_callbacks
    checkpoint = next((c for c in kept if c.monitor), kept[0] if kept else None)
    return checkpoint.best_model_path if checkpoint is not None else ""


def load_trainable_weights(module: torch.nn.Module, checkpoint_path: str) -> None:
    """Put a (trainable-only) Lightning checkpoint's weights into module; the frozen base is already there.

    A DeepSpeed checkpoint is a folder of per-rank shards: Lightning's converter consolidates it (fp32) first.
    """
    if Path(checkpoint_path).is_dir():
        from pytorch_lightning.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

        with tempfile.TemporaryDirectory() as tmp:
            state = convert_zero_checkpoint_to_fp32_state_dict(checkpoint_path, Path(tmp) / "consolidated.pt")
        module.load_state_dict(state["state_dict"], strict=False)
        return
    module.load_state_dict(checkpoint_weights(checkpoint_path), strict=False)


def checkpoint_weights(checkpoint_path: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """The (trainable-only) weights of a Lightning checkpoint file, keys without `prefix`."""
    # weights_only=False: Lightning checkpoints carry Python objects (loop state); the file is our own.
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)["state_dict"]
    return {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}
