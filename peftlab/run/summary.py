"""What metrics.json says of a finished fit, assembled in one place, and the table printed at the end of a run."""

from pathlib import Path

import pytorch_lightning as pl
import torch
from rich.console import Console
from rich.table import Table

from peftlab.models.params import count_parameters, folder_bytes
from peftlab.trainer.build import run_stats


def params_report(model: torch.nn.Module) -> dict:
    """Trainable and total parameters, counted before fit (a sharding strategy leaves each rank a part of them)."""
    trainable, total = count_parameters(model)
    return {"trainable": trainable, "total": total, "trainable_pct": round(100 * trainable / total, 4)}


def metrics_report(trainer: pl.Trainer, identity: dict, facts: dict, adapter_dir: Path) -> dict:
    """metrics.json's content (rundir.RunDir.write_metrics adds its schema_version): the run's `identity` (method,
    model, dataset, seed: RunOutputs.identity), the validation history with its best and last points, what RunStats
    measured, and `facts` (params, base memory and effective batch, known before training)."""
    kept = trainer.checkpoint_callbacks  # the one with a monitor keeps the best; without one, last_checkpoint's
    checkpoint = next((c for c in kept if c.monitor), kept[0] if kept else None)
    monitored = checkpoint is not None and checkpoint.monitor
    monitor = checkpoint.monitor if monitored else identity["default_monitor"]
    stats = run_stats(trainer)
    history = stats.history
    scored = [h for h in history if monitor in h]
    pick = max if not monitored or checkpoint.mode == "max" else min
    return {
        **{key: value for key, value in identity.items() if key != "default_monitor"},
        "monitor": monitor,
        "best": pick(scored, key=lambda h: h[monitor]) if scored else None,
        "last": history[-1] if history else None,
        "history": history,
        "params": facts["params"],
        "base_memory": facts["base_memory"],
        "adapter_dir": str(adapter_dir),
        "adapter_bytes": folder_bytes(adapter_dir),
        "best_checkpoint": (checkpoint.best_model_path if checkpoint is not None else "") or None,
        "global_step": trainer.global_step,
        "epochs": trainer.current_epoch,
        **stats.summary(),
        "effective_batch_size": facts["batch"]["total"],
        "batch": facts["batch"],
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
