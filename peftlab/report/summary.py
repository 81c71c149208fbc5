"""One row per method (mean ± std over seeds), the metric at fixed compute budgets, and a verdict per budget."""

import csv
import math
import statistics
from collections import defaultdict
from pathlib import Path

from peftlab.report.collect import RunRecord
from peftlab.report.flops import FORMULA

BUDGETS = (0.1, 0.5, 1.0)  # fractions of the largest run's training FLOPs


def value_at(run: RunRecord, flops_budget: float) -> float:
    """The last validation value reached within `flops_budget` (NaN if the run had not validated by then)."""
    reached = [p["value"] for p in run.curve if p["flops"] <= flops_budget * (1 + 1e-9)]
    return reached[-1] if reached else math.nan


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def higher_is_better(monitor: str) -> bool:
    return "loss" not in monitor


def summarise(runs: list[RunRecord]) -> tuple[list[dict], dict[float, str]]:
    """Rows (one per method and compared setting, in first-seen order) and {budget: best of them at it}."""
    by_method: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        by_method[run.label or run.method].append(run)
    max_flops = max(r.train_flops for r in runs) or 1.0
    monitor = runs[0].monitor
    rows = []
    for method, group in by_method.items():
        row = {"method": method, "seeds": len(group), "monitor": monitor}
        row["best_mean"], row["best_std"] = _mean_std([r.best if r.best is not None else math.nan for r in group])
        for budget in BUDGETS:
            mean, std = _mean_std([value_at(r, budget * max_flops) for r in group])
            row[f"at_{int(budget * 100)}pct_mean"], row[f"at_{int(budget * 100)}pct_std"] = mean, std
        first = group[0]
        row.update(
            trainable_params=first.trainable,
            trainable_pct=first.trainable_pct,
            adapter_mb=round(first.adapter_bytes / 2**20, 3),
            train_time_s=statistics.fmean(r.train_time_s for r in group),
            samples_per_s=statistics.fmean(r.samples_per_s for r in group),
            peak_rss_mb=max(r.peak_rss_mb for r in group),
            train_flops=statistics.fmean(r.train_flops for r in group),
        )
        rows.append(row)
    sign = 1 if higher_is_better(monitor) else -1
    verdict = {}
    for budget in BUDGETS:
        key = f"at_{int(budget * 100)}pct_mean"
        scored = [r for r in rows if not math.isnan(r[key])]
        verdict[budget] = max(scored, key=lambda r: sign * r[key])["method"] if scored else "no method had validated"
    return rows, verdict


def _pm(mean: float, std: float) -> str:
    return "–" if math.isnan(mean) else f"{mean:.4f} ± {std:.4f}"


def write_summary(
    rows: list[dict], verdict: dict[float, str], runs: list[RunRecord], out: Path, unfinished: list[dict] | None = None
) -> None:
    with (out / "summary.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    monitor = rows[0]["monitor"]
    head = ["method", "seeds", f"best {monitor}", *(f"@{int(b * 100)} % compute" for b in BUDGETS)]
    head += ["trainable (%)", "adapter MiB", "train s", "samples/s", "peak RSS MiB", "train FLOPs"]
    lines = [f"# Sweep summary: {runs[0].model} on {runs[0].dataset}", "", "| " + " | ".join(head) + " |"]
    lines.append("|" + "---|" * len(head))
    for r in rows:
        cells = [r["method"], str(r["seeds"]), _pm(r["best_mean"], r["best_std"])]
        cells += [_pm(r[f"at_{int(b * 100)}pct_mean"], r[f"at_{int(b * 100)}pct_std"]) for b in BUDGETS]
        cells += [f"{r['trainable_params']:,} ({r['trainable_pct']:.2f} %)", f"{r['adapter_mb']:.2f}"]
        cells += [f"{r['train_time_s']:.1f}", f"{r['samples_per_s']:.1f}", f"{r['peak_rss_mb']:,.0f}"]
        cells += [f"{r['train_flops']:.3g}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Verdict", ""]
    lines += [f"- at {int(b * 100)} % of the compute: **{m}**" for b, m in verdict.items()]
    lines += ["", f"Compute = the largest run's training FLOPs; {FORMULA}.", "mean ± std over seeds."]
    (out / "summary.md").write_text("\n".join(lines + unfinished_lines(unfinished or [])) + "\n")


def unfinished_lines(jobs: list[dict]) -> list[str]:
    """A row per SageMaker job of the sweep that left no run (collect.unfinished_jobs); none: no section."""
    if not jobs:
        return []
    lines = ["", "## Jobs without a run", "", "| run | job | status | reason | overrides |", "|---|---|---|---|---|"]
    for job in jobs:
        reason = (job.get("failure_reason") or "–").replace("|", "/").replace("\n", " ")
        lines.append(f"| {job['run']} | {job['job']} | {job['status']} | {reason} | {job['overrides']} |")
    return lines
