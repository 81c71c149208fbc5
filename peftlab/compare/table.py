"""The report's tables and cells, shared by summary.md and report.html (compare/report.py, compare/tuning.py)."""

from dataclasses import dataclass

from peftlab.compare.stats import Interval

AXIS_NAMES = {"flops": "training FLOPs", "seconds": "training seconds"}


@dataclass
class Table:
    """A table both summary.md and report.html render; `html_id` names it in the page."""

    title: str
    header: list[str]
    rows: list[list[str]]
    html_id: str

    def markdown(self) -> list[str]:
        lines = [f"## {self.title}", "", "| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        return lines + ["| " + " | ".join(row) + " |" for row in self.rows] + [""]


def interval_cell(iv: Interval) -> str:
    if iv.n == 0:
        return "–"
    if iv.n == 1:
        return f"{iv.mean:.4f} (1 seed: no interval)"
    return f"{iv.mean:.4f} ± {iv.std:.4f} [{iv.low:.4f}, {iv.high:.4f}] (n={iv.n})"


def budget_label(result: dict, with_limit: bool = True) -> str:
    """with_limit=False where two arms share a row: each arm's budget is a fraction of its own largest run."""
    label = f"{int(result['budget'] * 100)} % of {AXIS_NAMES[result['axis']]}"
    if not with_limit:
        return label
    unit = f"{result['limit']:.3g} FLOPs" if result["axis"] == "flops" else f"{result['limit']:.1f} s"
    return f"{label} ({unit})"


def verdict_cell(result: dict) -> str:
    best = result["verdict"].best
    text = result["verdict"].text()
    return text if best is None else f"{text}: {interval_cell(result['intervals'][best])}"
