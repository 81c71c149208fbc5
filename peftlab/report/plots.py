"""The sweep's plots: validation metric against steps, seconds and FLOPs, and best metric against trainable params.

One line per method (mean over seeds) with a ±1 std band; seeds are aligned by validation index.
"""

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt
import numpy as np

from peftlab.report.collect import RunRecord

DPI = 120  # figures are made at the resolution they are saved at: tight_layout's text measures serve the save too
AXES = {
    "steps": ("step", "optimizer steps", False),
    "seconds": ("seconds", "training wall-clock time (s, validation excluded)", False),
    "flops": ("flops", "estimated training FLOPs", True),
}


def _by_method(runs: list[RunRecord]) -> dict[str, list[RunRecord]]:
    groups: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        groups[run.label or run.method].append(run)
    return groups


def curve_figure(runs: list[RunRecord], axis: str):
    key, xlabel, log_x = AXES[axis]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=DPI)
    for method, group in _by_method(runs).items():
        curves = [r.curve for r in group if r.curve]
        if not curves:
            continue
        # Seeds of one method validate at the same points: align them by validation index (x = mean over seeds).
        points = min(len(c) for c in curves)
        xs = np.array([[c[i][key] for i in range(points)] for c in curves], dtype=float)
        ys = np.array([[c[i]["value"] for i in range(points)] for c in curves], dtype=float)
        grid, mean, std = xs.mean(axis=0), ys.mean(axis=0), ys.std(axis=0)
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
    _legend(ax)
    fig.tight_layout()
    return fig


def params_figure(runs: list[RunRecord]):
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=DPI)
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
    _legend(ax)
    fig.tight_layout()
    return fig


def write_plots(runs: list[RunRecord], out: Path) -> dict[str, Path]:
    figures = {f"metric_vs_{axis}": curve_figure(runs, axis) for axis in AXES}
    figures["best_vs_trainable_params"] = params_figure(runs)
    return save_figures(figures, out, dpi=DPI)


def _legend(ax) -> None:
    """The methods' legend; none when no method has a point (runs that never validated: matplotlib would warn)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="method", fontsize="small")


def save_figures(figures: dict, out: Path, dpi: int) -> dict[str, Path]:
    """Each figure as <out>/<name>.png, closed after (pyplot keeps every open figure alive)."""
    paths = {}
    for name, fig in figures.items():
        paths[name] = out / f"{name}.png"
        fig.savefig(paths[name], dpi=dpi)
        plt.close(fig)
    return paths
