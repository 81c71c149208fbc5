"""The comparison's plots: tuning trials by learning rate, test score by budget, validation curves of the seeds."""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt

from peftlab.compare.costs import FRONT_COSTS, pareto_front
from peftlab.compare.stages import AXES, BUDGETS
from peftlab.compare.tuning import at_full_flops
from peftlab.report.collect import RunRecord
from peftlab.report.plots import curve_figure, save_figures
from peftlab.report.summary import higher_is_better

TITLES = {
    "tune_lr": "tuning: best validation metric by learning rate",
    "test_vs_budget": "test score by budget (mean, 95 % interval over seeds)",
    "val_vs_flops": "confirm runs: validation metric vs training FLOPs",
    "val_vs_seconds": "confirm runs: validation metric vs training seconds",
    "tuning_effect": "what tuning changed: test score at 100 % of the FLOPs, default vs tuned lr",
    "pareto": "test score at 100 % of the FLOPs against what each method costs (ringed: the Pareto front)",
}


def tune_figure(chosen: dict):
    """One line per method over its grid; the chosen rate is a filled marker, the YAML default a dotted line."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, c in chosen.items():
        trials = [t for t in c["trials"] if t["best"] is not None]
        (line,) = ax.plot([t["lr"] for t in trials], [t["best"] for t in trials], marker="o", label=method)
        ax.plot([c["tuned_lr"]], [c["tuned_best"]], marker="*", markersize=14, color=line.get_color())
        ax.axvline(c["default_lr"], color=line.get_color(), linestyle=":", alpha=0.6)
    ax.set_xscale("log")
    monitor = next(iter(chosen.values()))["monitor"]
    ax.set(
        xlabel="learning rate (log scale; dotted: the YAML default, star: chosen)",
        ylabel=f"best {monitor}",
        title=TITLES["tune_lr"],
    )
    ax.grid(alpha=0.3)
    ax.legend(title="method", fontsize="small")
    fig.tight_layout()
    return fig


def budget_figure(results: list[dict]):
    """Test mean with its 95 % interval per method, one panel per budget axis (FLOPs, seconds)."""
    fig, axes = plt.subplots(1, len(AXES), figsize=(11, 4.5), sharey=True)
    for ax, axis in zip(axes, AXES, strict=True):
        mine = [r for r in results if r["axis"] == axis]
        for offset, method in enumerate(mine[0]["intervals"]):
            xs, ys, err = [], [], []
            for r in mine:
                iv = r["intervals"][method]
                if iv.n >= 2:
                    xs.append(r["budget"] * 100 * (1 + 0.03 * offset))  # a small shift keeps the bars apart
                    ys.append(iv.mean)
                    err.append(iv.half_width)
            ax.errorbar(xs, ys, yerr=err, fmt="o-", capsize=4, label=method)
        ax.set_xscale("log")
        ax.set_xticks([b * 100 for b in BUDGETS], [f"{b * 100:g} %" for b in BUDGETS])
        ax.minorticks_off()
        ax.set(xlabel=f"budget (of the largest run's {axis})", title=f"by {axis}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(results[0]["test_metric"])
    axes[0].legend(title="method", fontsize="small")
    fig.suptitle(TITLES["test_vs_budget"])
    fig.tight_layout()
    return fig


def tuning_figure(tuned: dict, default: dict):
    """Per method, its test mean and 95 % interval at its default rate beside its tuned rate (one budget)."""
    methods = list(tuned["intervals"])
    fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(methods)), 4.5))
    width = 0.38
    for shift, (name, result) in zip(
        (-width / 2, width / 2), (("default lr", default), ("tuned lr", tuned)), strict=True
    ):
        intervals = [result["intervals"][m] for m in methods]
        heights = [0.0 if iv.n == 0 else iv.mean for iv in intervals]
        errors = [iv.half_width if iv.n >= 2 else 0.0 for iv in intervals]
        xs = [i + shift for i in range(len(methods))]
        ax.bar(xs, heights, width, yerr=errors, capsize=4, label=name)
    ax.set_xticks(range(len(methods)), methods)
    ax.set(ylabel=tuned["test_metric"], title="test at 100 % of the FLOPs (bars: 95 % interval over seeds)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def pareto_figure(costs: dict[str, dict], metric: str):
    """Score against peak memory and against training FLOPs, one point per method; the front's methods ringed."""
    fig, axes = plt.subplots(1, len(FRONT_COSTS), figsize=(11, 4.5), sharey=True)
    for ax, (cost, name) in zip(axes, FRONT_COSTS.items(), strict=True):
        front = pareto_front(costs, cost, higher_is_better(metric))
        for method, c in costs.items():
            ax.scatter([c[cost]], [c["score"]], label=method)
            if method in front:
                ax.scatter([c[cost]], [c["score"]], s=220, facecolors="none", edgecolors="black")
        ax.set_xscale("log")
        ax.set(xlabel=name + (" (MiB)" if cost == "peak_rss_mb" else ""), title=f"against {name}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(metric)
    axes[0].legend(title="method", fontsize="small")
    fig.suptitle(TITLES["pareto"])
    fig.tight_layout()
    return fig


def write_plots(
    out: Path,
    chosen: dict,
    runs: list[RunRecord],
    results: list[dict],
    default: list[dict] | None = None,
    costs: dict[str, dict] | None = None,
) -> dict[str, Path]:
    figures = {"tune_lr": tune_figure(chosen), "test_vs_budget": budget_figure(results)}
    if costs:
        figures["pareto"] = pareto_figure(costs, results[0]["test_metric"])
    figures |= {f"val_vs_{axis}": curve_figure(runs, axis) for axis in AXES}
    if default:
        figures["tuning_effect"] = tuning_figure(at_full_flops(results), at_full_flops(default))
    return save_figures(figures, out, dpi=110)
