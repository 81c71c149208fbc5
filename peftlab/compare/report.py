"""The comparison's report from its folder alone: verdict per budget on test, tuned vs default learning rates,
summary.md / summary.csv, the plots, and one self-contained report.html (compare/html.py)."""

import csv
import json
import math
from pathlib import Path

from peftlab.compare.costs import cost_table, method_costs
from peftlab.compare.forgetting import read_forgetting
from peftlab.compare.stages import AXES, DEFAULT_ARM, budget_picks
from peftlab.compare.stats import CONFIDENCE, t_interval, verdict
from peftlab.compare.table import AXIS_NAMES, Table, budget_label, interval_cell, verdict_cell
from peftlab.compare.tuning import default_arm_folders, tuning_tables
from peftlab.report.collect import RunRecord, collect_runs
from peftlab.report.flops import FORMULA
from peftlab.report.summary import higher_is_better


def arm_runs(folders: list[Path]) -> list[RunRecord]:
    """One arm's runs (tuned or default rates): each method's seeds from its folder, labelled by the method."""
    runs = [run for folder in folders for run in collect_runs(folder)]
    for run in runs:
        run.label = run.method  # one row per method: its seeds share the learning rate
    return runs


def budget_results(runs: list[RunRecord], scores: list[dict]) -> list[dict]:
    """Per axis and budget: each method's test interval over seeds at the checkpoint the budget picked."""
    test_key = runs[0].monitor.replace("val/", "test/", 1)
    by_point = {(r["run"], r["step"]): r[test_key] for r in scores}
    limits = {"flops": max(r.train_flops for r in runs), "seconds": max(r.train_time_s for r in runs)}
    methods = list(dict.fromkeys(r.method for r in runs))
    results = []
    for axis, by_budget in budget_picks(runs).items():
        for budget, chosen in by_budget.items():
            intervals, validation = {}, {}
            for method in methods:
                mine = [r for r in runs if r.method == method and str(r.folder) in chosen]
                points = [(str(r.folder), chosen[str(r.folder)]) for r in mine]
                intervals[method] = t_interval([by_point.get((f, p["step"]), math.nan) for f, p in points])
                validation[method] = t_interval([p["value"] for _, p in points])
            results.append(
                {
                    "axis": axis,
                    "budget": budget,
                    "limit": budget * limits[axis],
                    "test_metric": test_key,
                    "intervals": intervals,
                    "validation": validation,
                    "verdict": verdict(intervals, higher_is_better(test_key)),
                }
            )
    return results


def tables(chosen: dict, results: list[dict]) -> list[Table]:
    methods = list(chosen)
    metric = results[0]["test_metric"]
    verdict_rows = [[budget_label(r), verdict_cell(r)] for r in results]
    out = [Table("Verdict on test", ["budget", f"best {metric} (95 % intervals over seeds)"], verdict_rows, "verdict")]
    for axis in AXES:
        mine = [r for r in results if r["axis"] == axis]
        header = ["method", *(f"{int(r['budget'] * 100)} %" for r in mine)]
        rows = [[m, *(interval_cell(r["intervals"][m]) for r in mine)] for m in methods]
        title = f"{metric} by budget ({AXIS_NAMES[axis]}): mean ± std [95 % t interval]"
        out.append(Table(title, header, rows, f"test-by-{axis}"))
    lr_rows = []
    for method, c in chosen.items():
        ratio = c["tuned_lr"] / c["default_lr"]
        trials = ", ".join(_trial_cell(t, c["trials"]) for t in c["trials"] if t["best"] is not None)
        searched = "[{:.3g}, {:.3g}]".format(*c["lr_range"]) + _edge(c)
        past = " (past the range)" if c.get("origin") == "past the range" else ""
        lr_rows.append(
            [
                method,
                f"{c['default_lr']:.3g}",
                f"{c['tuned_lr']:.3g}{past}",
                f"× {ratio:.3g}",
                searched,
                f"{c['tuned_best']:.4f}",
                trials,
            ]
        )
    header = [
        "method",
        "default lr (YAML)",
        "tuned lr",
        "tuned / default",
        "searched",
        "best val (tuning)",
        f"trials (lr: best {chosen[methods[0]]['monitor']})",
    ]
    out.append(Table("Learning rates: tuned vs the method's default", header, lr_rows, "learning-rates"))
    return out


def _trial_cell(trial: dict, trials: list[dict]) -> str:
    """lr: best validation, and where successive halving stopped a trial before the whole tuning budget."""
    longest = max(t.get("steps", 0) for t in trials)
    stopped = f" (stopped at step {trial['steps']})" if trial.get("steps", longest) < longest else ""
    return f"{trial['lr']:.3g}: {trial['best']:.4f}{stopped}"


def _edge(chosen: dict) -> str:
    """The rates tried past the range (search.tune), and a tuned rate still at an end of what was tried: the best
    may lie beyond it, so say so."""
    tried = [t["lr"] for t in chosen["trials"]]
    low, high = chosen["lr_range"]
    past = [lr for lr in tried if not low <= lr <= high]
    text = f" + {len(past)} past it: " + ", ".join(f"{lr:.3g}" for lr in past) if past else ""
    if chosen["tuned_lr"] not in (min(tried), max(tried)):
        return text
    if past and len(past) >= chosen.get("extend", 0):
        return text + " (still at an end after every extension: widen peft.lr_range)"
    return text + " (chosen at an end: widen peft.lr_range?)"


def write_compare_report(out: str | Path) -> dict:
    """Read <out> (chosen_lr.json, confirm/, test/scores.json, commands) and write summary.md/.csv, the plots and
    report.html into it; returns {"results", "tables", "plots", "html"}."""
    from peftlab.compare.html import write_html
    from peftlab.compare.plots import write_plots

    out = Path(out)
    chosen = json.loads((out / "chosen_lr.json").read_text())
    runs = arm_runs([out / "confirm" / method for method in chosen])
    scores = json.loads((out / "test" / "scores.json").read_text())
    results = budget_results(runs, scores)
    made = tables(chosen, results)
    costs = method_costs(runs, results, read_forgetting(out))
    made.append(cost_table(costs, results[0]["test_metric"]))
    default_folders = default_arm_folders(out, chosen)
    default = budget_results(arm_runs(default_folders), scores) if default_folders else None
    if default:
        made += tuning_tables(chosen, results, default)
    title = f"Method comparison: {runs[0].model} on {runs[0].dataset}"
    notes = _notes(chosen, runs, scores, bool(default))
    plots = write_plots(out, chosen, runs, results, default, costs)
    commands = _commands(out, list(chosen))
    lines = [f"# {title}", "", *(f"- {n}" for n in notes), ""]
    for table in made:
        lines += table.markdown()
    lines += ["## Commands", "", "```bash", *commands, "```", ""]
    (out / "summary.md").write_text("\n".join(lines))
    _write_csv(out / "summary.csv", {"tuned": results, "default": default or []})
    html = write_html(out / "report.html", title, notes, made, plots, commands, _versions())
    return {"results": results, "tables": made, "plots": plots, "html": html}


def _tuning_words(chosen: dict) -> str:
    """How the first method's rate was tuned (every method's the same way)."""
    trials, rungs = len(chosen["trials"]), chosen.get("rungs", [])
    if len(rungs) < 2:
        return f"{trials} trials on the tuning budget"
    steps = " → ".join(map(str, rungs))
    return f"{trials} trials by successive halving, rungs at steps {steps}; chosen among those reaching the last"


def _notes(chosen: dict, runs: list, scores: list, default_arm: bool) -> list[str]:
    """The protocol in words, above the tables: test rows, tuning, scoring, compute, the default-lr arm."""
    test_rows_from = scores[0].get("test_rows_from", "the dataset's test split") if scores else "–"
    return [
        f"Test rows: {test_rows_from}. The test split was read once, after every choice was made.",
        f"Each method's learning rate was tuned on validation ({_tuning_words(next(iter(chosen.values())))}), "
        f"then run with {len({r.seed for r in runs})} seeds at the full budget.",
        "At each budget a run is scored at its best validation checkpoint within that budget; a method wins when "
        f"its {CONFIDENCE * 100:g} % interval (Student t over seeds) is clear of every other method's.",
        f"Compute: {FORMULA}.",
        "What tuning changed: "
        + (
            "each method also ran at its YAML default learning rate with the same seeds, budget and test rows."
            if default_arm
            else "not measured (compare.default_arm=false)."
        ),
    ]


def _write_csv(path: Path, arms: dict[str, list[dict]]) -> None:
    fields = [
        "arm",
        "axis",
        "budget",
        "limit",
        "method",
        "seeds",
        "test_mean",
        "test_std",
        "ci_low",
        "ci_high",
        "val_mean",
        "verdict",
    ]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(fields)
        for arm, results in arms.items():
            for r in results:
                for method, iv in r["intervals"].items():
                    val = r["validation"][method]
                    writer.writerow(
                        [
                            arm,
                            r["axis"],
                            r["budget"],
                            f"{r['limit']:.6g}",
                            method,
                            iv.n,
                            iv.mean,
                            iv.std,
                            iv.low,
                            iv.high,
                            val.mean,
                            r["verdict"].text().replace("**", ""),
                        ]
                    )


def _commands(out: Path, methods: list[str]) -> list[str]:
    """The comparison's command line, then each stage's sweep as it ran (python -m peftlab.train -m ...)."""
    main = out / "command.txt"
    lines = [main.read_text().strip()] if main.is_file() else []
    for stage in ("tune", "confirm", DEFAULT_ARM):
        files = [out / stage / m / "command.txt" for m in methods]
        lines += [f"# {stage}: python " + p.read_text().strip() for p in files if p.is_file()]
    return lines


def _versions() -> dict[str, str]:
    import platform
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("peftlab", "torch", "pytorch-lightning", "transformers", "peft", "datasets", "hydra-core"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found
