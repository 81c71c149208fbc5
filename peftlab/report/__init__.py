"""Report stage: read a sweep folder and write summary.csv/.md, plots and a verdict per compute budget."""

from pathlib import Path

from peftlab.report.collect import collect_runs
from peftlab.report.plots import write_plots
from peftlab.report.summary import summarise, write_summary


def write_report(sweep_dir: str | Path) -> dict:
    """Everything into the sweep folder; returns {"rows", "verdict", "plots"} for callers and tests."""
    out = Path(sweep_dir)
    runs = collect_runs(out)
    rows, verdict = summarise(runs)
    write_summary(rows, verdict, runs, out)
    return {"rows": rows, "verdict": verdict, "plots": write_plots(runs, out), "runs": runs}
