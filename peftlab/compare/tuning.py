"""What tuning changed: each method at its YAML default learning rate against its tuned one (same seeds, budget and
test rows), as two tables: the verdict per budget under either arm, and each method's test score and rank.

Why an arm of its own and not the tuning trials: trials run on the tuning budget with one seed and are judged on
validation; a verdict at default rates must be made like the tuned one, or the difference would be the protocol's.
It matters because a verdict at default rates partly ranks how well each default suits the task (peft's method
comparison: prefix tuning 18.6 % -> 41.6 % from the learning rate alone).
"""

import math
from pathlib import Path

from peftlab.compare.stages import default_arm_folder
from peftlab.compare.table import Table, budget_label, interval_cell, verdict_cell
from peftlab.report.summary import higher_is_better
from peftlab.rundir import RunDir


def default_arm_folders(out: Path, chosen: dict) -> list[Path] | None:
    """Each method's folder of runs at its default rate; None when the comparison ran without the default arm."""
    folders = [default_arm_folder(out, method, c) for method, c in chosen.items()]
    return folders if all(RunDir.finished_jobs(f) for f in folders) else None


def at_full_flops(results: list[dict]) -> dict:
    return next(r for r in results if r["axis"] == "flops" and r["budget"] == 1.0)


def ranks(result: dict) -> dict[str, str]:
    """1 = best mean test score; methods without one are "–"."""
    sign = 1 if higher_is_better(result["test_metric"]) else -1
    scored = {m: iv.mean for m, iv in result["intervals"].items() if iv.n and not math.isnan(iv.mean)}
    order = sorted(scored, key=lambda m: -sign * scored[m])
    return {m: str(order.index(m) + 1) if m in scored else "–" for m in result["intervals"]}


def tuning_tables(chosen: dict, tuned: list[dict], default: list[dict]) -> list[Table]:
    verdicts = [
        [budget_label(t, with_limit=False), verdict_cell(d), verdict_cell(t)]
        for t, d in zip(tuned, default, strict=True)
    ]
    header = ["budget", "each method at its YAML default lr", "each method at its tuned lr"]
    out = [Table("What tuning changed: the verdict on test", header, verdicts, "tuning-verdict")]
    full_tuned, full_default = at_full_flops(tuned), at_full_flops(default)
    rank_tuned, rank_default = ranks(full_tuned), ranks(full_default)
    metric = full_tuned["test_metric"]
    rows = []
    for method, c in chosen.items():
        before, after = full_default["intervals"][method], full_tuned["intervals"][method]
        change = after.mean - before.mean
        rows.append(
            [
                method,
                f"{c['default_lr']:.3g}",
                interval_cell(before),
                f"{c['tuned_lr']:.3g}",
                interval_cell(after),
                "–" if math.isnan(change) else f"{change:+.4f}",
                f"{rank_default[method]} → {rank_tuned[method]}",
            ]
        )
    header = ["method", "default lr", f"{metric} at default", "tuned lr", f"{metric} at tuned", "change", "rank"]
    title = f"What tuning changed: {metric} at 100 % of training FLOPs, default vs tuned learning rate"
    out.append(Table(title, header, rows, "tuning-effect"))
    return out
