"""The sweep's plots: validation metric against steps, seconds and FLOPs, and best metric against trainable params.

One line per method (mean over seeds) with a ±1 std band; seeds are interpolated onto a shared x grid.
"""

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt
import numpy as np

from peftlab.report.collect import RunRecord

AXES = {
    "steps": ("step", "optimizer steps", False),
    "seconds": ("seconds", "training wall-clock time (s, validation excluded)", False),
    "flops": ("flops", "estimated training FLOPs", True),
}


def _by_method(runs: list[RunRecord]) -> dict[str, list[RunRecord]]:
    groups: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        groups[run.method].append(run)
    return groups


def curve_figure(runs: list[RunRecord], axis: str):
    key, xlabel, log_x = AXES[axis]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, group in _by_method(runs).items():
        curves = [([p[key] for p in r.curve], [p["value"] for p in r.curve]) for r in group if r.curve]
        if not curves:
            continue
        grid = np.unique(np.concatenate([np.asarray(x, dtype=float) for x, _ in curves]))
        stacked = np.vstack([np.interp(grid, x, y, left=np.nan, right=np.nan) for x, y in curves])
        counts = (~np.isnan(stacked)).sum(axis=0)
        mean = np.nanmean(np.where(counts > 0, stacked, 0.0), axis=0) if len(curves) > 1 else stacked[0]
        std = np.nanstd(stacked, axis=0) if len(curves) > 1 else np.zeros_like(mean)
        (line,) = ax.plot(grid, mean, marker="o", markersize=3, label=f"{method} (n={len(curves)})")
        ax.fill_between(grid, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    if log_x:
        ax.set_xscale("log")
    monitor = runs[0].monitor
    ax.set(
        xlabel=xlabel,
        ylabel=monitor,
        title=f"{monitor} vs {xlabel.split(' (')[0]}: {runs[0].model} on {runs[0].dataset}",
    )
    ax.grid(alpha=0.3)
    ax.legend(title="method", fontsize="small")
    fig.tight_layout()
    return fig


def params_figure(runs: list[RunRecord]):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, group in _by_method(runs).items():
        best = np.array([r.best for r in group if r.best is not None], dtype=float)
        if best.size == 0:
            continue
        ax.errorbar(group[0].trainable, best.mean(), yerr=best.std(), fmt="o", capsize=4, label=method)
    ax.set_xscale("log")
    monitor = runs[0].monitor
    ax.set(
        xlabel="trainable parameters (count, log scale)",
        ylabel=f"best {monitor}",
        title=f"best {monitor} vs trainable parameters",
    )
    ax.grid(alpha=0.3)
    ax.legend(title="method", fontsize="small")
    fig.tight_layout()
    return fig


def write_plots(runs: list[RunRecord], out: Path) -> dict[str, Path]:
    figures = {f"metric_vs_{axis}": curve_figure(runs, axis) for axis in AXES}
    figures["best_vs_trainable_params"] = params_figure(runs)
    paths = {}
    for name, fig in figures.items():
        paths[name] = out / f"{name}.png"
        fig.savefig(paths[name], dpi=120)
        plt.close(fig)
    return paths
