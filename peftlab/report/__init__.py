"""Report stage: read a sweep folder and write summary.csv/.md, plots and a verdict per compute budget."""

from pathlib import Path

from peftlab.errors import PeftlabError
from peftlab.report.collect import collect_runs, unfinished_jobs
from peftlab.report.summary import summarise, unfinished_lines, write_summary


def write_report(sweep_dir: str | Path) -> dict:
    """Everything into the sweep folder; returns {"rows", "verdict", "plots", "runs", "unfinished"} for callers and
    tests. SageMaker jobs that left no run (Failed, Stopped) are rows of their own, with their status."""
    from peftlab.report.plots import write_plots  # matplotlib (~0.5 s): imported by sweeps' ends, not every run's start

    out = Path(sweep_dir)
    unfinished = unfinished_jobs(out) if out.is_dir() else []
    try:
        runs = collect_runs(out)
    except PeftlabError:
        if not unfinished:
            raise
        (out / "summary.md").write_text("\n".join(["# Sweep summary: no job finished", *unfinished_lines(unfinished)]))
        return {"rows": [], "verdict": {}, "plots": [], "runs": [], "unfinished": unfinished}
    rows, verdict = summarise(runs)
    write_summary(rows, verdict, runs, out, unfinished)
    plots = write_plots(runs, out)
    return {"rows": rows, "verdict": verdict, "plots": plots, "runs": runs, "unfinished": unfinished}
