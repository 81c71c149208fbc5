"""What every run leaves behind: adapter/ (peft format, or the full model), metrics.json, a summary table."""

import json
import logging
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from peftlab.models.params import count_parameters, folder_bytes

log = logging.getLogger(__name__)


def load_trainable_weights(module: torch.nn.Module, checkpoint_path: str) -> None:
    """Put a (trainable-only) Lightning checkpoint's weights into module; the frozen base is already there."""
    # weights_only=False: Lightning checkpoints carry Python objects (loop state); the file is our own.
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    module.load_state_dict(checkpoint["state_dict"], strict=False)


def build_metrics_report(
    *,
    settings,
    module,
    stats,
    monitor: str,
    mode: str,
    adapter_dir: Path,
    best_checkpoint: str | None,
    base_memory: dict,
    global_step: int,
    epochs: int,
) -> dict:
    trainable, total = count_parameters(module.model)
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
        "params": {"trainable": trainable, "total": total, "trainable_pct": round(100 * trainable / total, 4)},
        "base_memory": base_memory,
        "adapter_dir": str(adapter_dir),
        "adapter_bytes": folder_bytes(adapter_dir),
        "best_checkpoint": best_checkpoint,
        "global_step": global_step,
        "epochs": epochs,
        **stats.summary(),
    }


def write_metrics(report: dict, path: Path) -> None:
    path.write_text(json.dumps(report, indent=2))


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
