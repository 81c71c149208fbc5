"""What each method costs beside what it scores, and which methods no other beats on both at once.

Per method (its confirmed runs at the tuned rate): trainable parameters, adapter size and peak memory from each run's
metrics.json, training FLOPs and seconds, and its mean test score at 100 % of the FLOPs. A method is on the Pareto
front of score against a cost when no other method scores at least as well for at most that cost (one of the two
strictly better): peft's method comparison plots the memory front; the FLOPs front is this report's budget axis.
"""

import math
import statistics

from peftlab.compare.table import Table
from peftlab.compare.tuning import at_full_flops
from peftlab.report.collect import RunRecord
from peftlab.report.summary import higher_is_better

FRONT_COSTS = {"peak_rss_mb": "peak memory", "train_flops": "training FLOPs"}


def method_costs(runs: list[RunRecord], results: list[dict], forgetting: list[dict] | None = None) -> dict[str, dict]:
    """{method: trainable, adapter_mb, peak_rss_mb (the largest over seeds), train_flops, train_s (means), score,
    and forgetting (the mean loss change on general text, compare/forgetting.py) where it was measured}."""
    full = at_full_flops(results)
    costs = {}
    for method in dict.fromkeys(r.method for r in runs):
        mine = [r for r in runs if r.method == method]
        interval = full["intervals"].get(method)
        costs[method] = {
            "trainable": max(r.trainable for r in mine),
            "adapter_mb": statistics.mean(r.adapter_bytes for r in mine) / 2**20,
            "peak_rss_mb": max(r.peak_rss_mb for r in mine),
            "train_flops": statistics.mean(r.train_flops for r in mine),
            "train_s": statistics.mean(r.train_time_s for r in mine),
            "score": interval.mean if interval is not None and interval.n else math.nan,
        }
        measured = [row["forgetting"] for row in forgetting or [] if row["method"] == method]
        if measured:
            costs[method]["forgetting"] = statistics.mean(measured)
    return costs


def pareto_front(costs: dict[str, dict], cost: str, higher_better: bool) -> list[str]:
    """The methods no other method dominates on (score, costs[cost]); methods without a score are never on it."""
    sign = 1 if higher_better else -1
    scored = {m: c for m, c in costs.items() if not math.isnan(c["score"])}

    def dominates(a: dict, b: dict) -> bool:
        at_least = sign * a["score"] >= sign * b["score"] and a[cost] <= b[cost]
        return at_least and (sign * a["score"] > sign * b["score"] or a[cost] < b[cost])

    return [m for m, c in scored.items() if not any(dominates(o, c) for n, o in scored.items() if n != m)]


def cost_table(costs: dict[str, dict], metric: str) -> Table:
    fronts = {cost: pareto_front(costs, cost, higher_is_better(metric)) for cost in FRONT_COSTS}
    rows = []
    forgetting = any("forgetting" in c for c in costs.values())
    for method, c in costs.items():
        on = [name for cost, name in FRONT_COSTS.items() if method in fronts[cost]]
        rows.append(
            [
                method,
                f"{c['trainable']:,}",
                f"{c['adapter_mb']:.2f}",
                f"{c['peak_rss_mb']:,.0f}",
                f"{c['train_flops']:.3g}",
                f"{c['train_s']:.1f}",
                "–" if math.isnan(c["score"]) else f"{c['score']:.4f}",
                ", ".join(on) or "–",
                *([f"{c['forgetting']:+.4f}" if "forgetting" in c else "–"] if forgetting else []),
            ]
        )
    header = ["method", "trainable params", "adapter MiB", "peak RSS MiB", "training FLOPs", "train s",
              f"{metric} at 100 % FLOPs", "on the Pareto front of"]  # fmt: skip
    if forgetting:
        header.append("forgetting: loss change on general text (nats/token)")
    title = "What each method costs (tuned rate; means over seeds, peak memory the largest)"
    return Table(title, header, rows, "costs")
