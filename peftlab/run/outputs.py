"""What every run leaves behind: adapter/ (peft format, or the full model), metrics.json, a summary table."""

import logging
import tempfile
from pathlib import Path

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from peftlab.config import RunSettings
from peftlab.models.methods import save_trained, saves_whole_model
from peftlab.models.params import count_parameters, folder_bytes
from peftlab.run.gather import gather_full_state, shards_parameters
from peftlab.rundir import RunDir
from peftlab.trainer.build import run_stats
from peftlab.trainer.tracking import log_config, log_run_end

log = logging.getLogger(__name__)


def record_start(run: RunDir, cfg: DictConfig, trainer: pl.Trainer, batch: dict, resumed: bool) -> None:
    """Before fit, rank 0: config.yaml, the config as the trackers' hyper-parameters, the effective batch size."""
    run.write_config(cfg)
    log_config(trainer.loggers, cfg, resumed=resumed)
    log.info(
        "effective batch size %d = %d per device × %d devices × %d nodes × %d accumulated",
        *(batch[k] for k in ("total", "per_device", "devices", "num_nodes", "accumulate_grad_batches")),
    )


class RunOutputs(pl.Callback):
    """adapter/, metrics.json, the trackers' summary and the final table, written after fit by rank 0.

    A callback, so every launcher (one process, DDP, FSDP, SLURM, a SageMaker job) writes the same folder by the same
    code. The trained weights are settled at train end, on every rank, while the strategy still holds them on their
    devices (FSDP's shards are gathered to rank 0 there: a collective); the files are written at fit end, after
    Lightning has finalised its loggers. `facts`: what fit knew before training (params, base memory, batch).
    """

    def __init__(self, run: RunDir, settings: RunSettings, cfg: DictConfig, tokenizer, head: list[str], facts: dict):
        self.run, self.settings, self.cfg, self.tokenizer, self.head = run, settings, cfg, tokenizer, head
        self.facts = facts
        self.report: dict | None = None  # set on rank 0 once written
        self._gathered: dict | None = None  # whole weights from shards (rank 0), written instead of the module's

    def on_train_end(self, trainer: pl.Trainer, pl_module) -> None:
        best_path = _monitored(trainer)[1]
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
        run, settings = self.run, self.settings
        save_trained(pl_module.model, settings.peft, self.head, run.adapter, self._gathered)
        self.tokenizer.save_pretrained(run.adapter)
        checkpoint, best_path = _monitored(trainer)
        monitored = checkpoint is not None and checkpoint.monitor
        report = build_metrics_report(
            settings=settings,
            params=self.facts["params"],
            stats=run_stats(trainer),
            monitor=checkpoint.monitor if monitored else f"val/{settings.dataset.metric}",
            mode=checkpoint.mode if monitored else "max",
            adapter_dir=run.adapter,
            best_checkpoint=best_path or None,
            base_memory=self.facts["base_memory"],
            global_step=trainer.global_step,
            epochs=trainer.current_epoch,
        )
        batch = self.facts["batch"]
        report["effective_batch_size"] = batch["total"]
        report["batch"] = batch
        report = run.write_metrics(report)
        log_run_end(trainer.loggers, report, run.adapter)  # summary metrics, adapter/ as an artifact, tracker closed
        print_summary(report, run.root)
        self.report = report


def _monitored(trainer: pl.Trainer):
    """(the checkpoint callback adapter/ is written from, its best file or ""): the one with a monitor keeps the
    best; without one, last_checkpoint's latest."""
    kept = trainer.checkpoint_callbacks
    checkpoint = next((c for c in kept if c.monitor), kept[0] if kept else None)
    return checkpoint, checkpoint.best_model_path if checkpoint is not None else ""


def params_report(model: torch.nn.Module) -> dict:
    """Trainable and total parameters, counted before fit (a sharding strategy leaves each rank a part of them)."""
    trainable, total = count_parameters(model)
    return {"trainable": trainable, "total": total, "trainable_pct": round(100 * trainable / total, 4)}


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


def build_metrics_report(
    *,
    settings,
    params: dict,
    stats,
    monitor: str,
    mode: str,
    adapter_dir: Path,
    best_checkpoint: str | None,
    base_memory: dict,
    global_step: int,
    epochs: int,
) -> dict:
    history = stats.history
    scored = [h for h in history if monitor in h]
    pick = max if mode == "max" else min
    best = pick(scored, key=lambda h: h[monitor]) if scored else None
    return {
        "method": settings.peft.method,
        "model": settings.model.name,
        "model_name_or_path": settings.model.name_or_path,
        "dataset": settings.dataset.name,
        "seed": settings.seed,
        "monitor": monitor,
        "best": best,
        "last": history[-1] if history else None,
        "history": history,
        "params": params,
        "base_memory": base_memory,
        "adapter_dir": str(adapter_dir),
        "adapter_bytes": folder_bytes(adapter_dir),
        "best_checkpoint": best_checkpoint,
        "global_step": global_step,
        "epochs": epochs,
        **stats.summary(),
    }


def print_summary(report: dict, output_dir: Path) -> None:
    """The final table a user reads at the end of `python train.py`."""
    table = Table(title=f"peftlab run: {report['model']} + {report['method']} on {report['dataset']}")
    table.add_column("", style="bold")
    table.add_column("value", justify="right")
    monitor = report["monitor"]
    for label, row in (("best", report["best"]), ("last", report["last"])):
        if row:
            table.add_row(f"{label} {monitor}", f"{row[monitor]:.4f}  (epoch {row['epoch']}, step {row['step']})")
    p = report["params"]
    table.add_row("trainable / total params", f"{p['trainable']:,} / {p['total']:,} ({p['trainable_pct']:.2f} %)")
    if report.get("startup_s") is not None:
        table.add_row("start-up (to first step)", f"{report['startup_s']:.1f} s")
    table.add_row("fit time (train only)", f"{report['fit_time_s']:.1f} s ({report['train_time_s']:.1f} s)")
    table.add_row("train samples/s", f"{report['samples_per_s']:.1f}")
    table.add_row("peak memory", ", ".join(f"{k} {v:,.0f}" for k, v in report["peak_memory"].items()))
    mem = report["base_memory"]
    table.add_row(
        "base weights in memory", f"{mem['loaded_mb']:,.1f} MiB (full precision {mem['full_precision_mb']:,.1f} MiB)"
    )
    table.add_row("adapter size", f"{report['adapter_bytes'] / 2**20:.2f} MiB")
    table.add_row("outputs", str(output_dir))
    Console().print(table)
