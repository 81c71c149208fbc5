"""The protocol's three stages: tune (a log grid of learning rates per method), confirm (the best one, several seeds)
and test (every confirmed run's budget checkpoints on the held-out split).

Tune and confirm are ordinary `python -m peftlab.train -m` sweeps, one per method and stage, so their folders are
sweep folders (metrics.json per job, the sweep report) and any Hydra launcher runs their jobs. They run the installed
package's training command, not a checkout's train.py: a comparison starts from any folder. A stage whose folder
already holds every job it plans (the same learning rates and seeds) is skipped: a rerun resumes where the last one
stopped.
"""

import json
import logging
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from peftlab.cli import quoted_value
from peftlab.compare.plan import BUDGETS, Plan
from peftlab.errors import PeftlabError
from peftlab.report.collect import RunRecord, collect_runs
from peftlab.report.summary import higher_is_better
from peftlab.rundir import RunDir

log = logging.getLogger(__name__)

AXES = ("flops", "seconds")
DEFAULT_ARM = "confirm_default"  # the stage folder of each method's runs at its YAML default learning rate
TRAIN_MODULE = "peftlab.train"  # the training command every stage's sweep runs (`python -m peftlab.train -m ...`)


def lr_grid(low: float, high: float, trials: int) -> list[float]:
    """`trials` learning rates evenly spaced in log between low and high, rounded to 3 significant digits (the
    values then read the same in overrides, folder records and the report)."""
    return [float(f"{lr:.3g}") for lr in np.geomspace(low, high, trials)]


def _recorded(folder: Path) -> list[tuple[float, int]]:
    """(lr, seed) of each finished job in a sweep folder, from its config.yaml."""
    pairs = []
    for job in RunDir.finished_jobs(folder):
        cfg = job.read_config()
        pairs.append((float(cfg.peft.lr), int(cfg.seed)))
    return pairs


def finished(folder: Path, lrs: list[float], seeds: list[int]) -> bool:
    planned = sorted((lr, seed) for lr in lrs for seed in seeds)
    return folder.is_dir() and sorted(_recorded(folder)) == planned


def run_sweep(plan: Plan, stage: str, method: str, lrs: list[float], seeds: list[int], extra: list[str]) -> Path:
    """One `python -m peftlab.train -m` sweep of (lrs × seeds) for a method into <out>/<stage>/<method>, unless already
    done; it runs in the folder the comparison started in (plan.cwd)."""
    folder = plan.out / stage / method
    if finished(folder, lrs, seeds):
        log.info("%s %s: done already (%s), skipped", stage, method, folder)
        return folder
    stale = sorted(set(_recorded(folder)) - {(lr, seed) for lr in lrs for seed in seeds}) if folder.is_dir() else []
    if stale:  # a sweep writes jobs 0..n-1 over the old ones: the rest would stay and be read as this plan's
        raise PeftlabError(f"{folder}: holds jobs of another plan (lr, seed) {stale}; move it away or set compare.out")
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        TRAIN_MODULE,
        "-m",
        *plan.forwarded,
        *extra,
        f"peft={method}",
        "peft.lr=" + ",".join(map(str, lrs)),
        "seed=" + ",".join(map(str, seeds)),
        f"hydra.sweep.dir={quoted_value(str(folder))}",
    ]
    (folder / "command.txt").write_text(" ".join(command[1:]) + "\n")
    log.info("%s %s: %d jobs (lr %s, seeds %s)", stage, method, len(lrs) * len(seeds), lrs, seeds)
    with (plan.out / stage / f"{method}.log").open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=plan.cwd, check=False)
    if done.returncode != 0 or not finished(folder, lrs, seeds):
        raise PeftlabError(f"{stage} {method}: the sweep failed (exit {done.returncode}); its log: {out.name}")
    return folder


def tune(plan: Plan, method: str) -> dict:
    """Every learning rate of the method's grid on the tuning budget, then up to plan.extend rates past an end of
    it (one grid step each) while the best is at that end: a short range must not decide the winner. Returns the
    trials, the chosen rate and where it came from."""
    low, high = plan.lr_ranges[method]
    grid = lr_grid(low, high, plan.trials)
    folders = [run_sweep(plan, "tune", method, grid, [plan.tune_seed], plan.tune_overrides)]
    chosen = choose_lr(folders, plan.default_lrs[method], [low, high])
    ratio = (high / low) ** (1 / (plan.trials - 1))
    while len(folders) <= plan.extend and (beyond := rate_past_the_end(chosen["trials"], chosen["tuned_lr"], ratio)):
        stage = f"tune_ext{len(folders)}"
        folders.append(run_sweep(plan, stage, method, [beyond], [plan.tune_seed], plan.tune_overrides))
        chosen = choose_lr(folders, plan.default_lrs[method], [low, high])
    chosen["extensions"] = len(folders) - 1
    chosen["extend"] = plan.extend
    chosen["origin"] = "grid" if low <= chosen["tuned_lr"] <= high else "past the range"
    return chosen


def rate_past_the_end(trials: list[dict], best_lr: float, ratio: float) -> float | None:
    """The next rate one grid step (× ratio) past the end the best trial sits at, when it beats its neighbour there
    (a plateau at the end says nothing about what lies past it); None otherwise."""
    scored = [t for t in trials if t["best"] is not None and not math.isnan(t["best"])]
    lrs = [t["lr"] for t in scored]
    if len(scored) < 2 or best_lr not in (lrs[0], lrs[-1]):
        return None
    at_top = best_lr == lrs[-1]
    end, neighbour = (scored[-1], scored[-2]) if at_top else (scored[0], scored[1])
    if end["best"] == neighbour["best"]:
        return None
    return float(f"{best_lr * ratio if at_top else best_lr / ratio:.3g}")


def choose_lr(folders: list[Path], default_lr: float, lr_range: list[float]) -> dict:
    """The trial with the best validation metric (its best over the run) across the tuning folders; ties go to the
    smaller learning rate."""
    runs = [run for folder in folders for run in collect_runs(folder)]
    if not runs:
        raise PeftlabError(f"{folders[0]}: no finished tuning trial")
    monitor = runs[0].monitor
    sign = 1 if higher_is_better(monitor) else -1
    trials = sorted(
        ({"lr": float(RunDir(r.folder).read_config().peft.lr), "best": r.best, "run": str(r.folder)} for r in runs),
        key=lambda t: t["lr"],
    )
    scored = [t for t in trials if t["best"] is not None and not math.isnan(t["best"])]
    if not scored:
        raise PeftlabError(f"{folders[0]}: no tuning trial validated; raise the tuning budget (compare.tune.overrides)")
    best = max(scored, key=lambda t: sign * t["best"])  # max keeps the first of equals: the smallest lr
    return {
        "monitor": monitor,
        "default_lr": default_lr,
        "lr_range": lr_range,
        "tuned_lr": best["lr"],
        "tuned_best": best["best"],
        "trials": trials,
    }


def confirm(plan: Plan, method: str, lr: float, stage: str = "confirm") -> list[RunRecord]:
    """The chosen learning rate with every seed at the full budget; a checkpoint kept at every validation, so
    the test stage can score what each budget would have picked."""
    keep_all = ["callbacks.model_checkpoint.save_top_k=-1"]
    folder = run_sweep(plan, stage, method, [lr], plan.seeds, [*plan.confirm_overrides, *keep_all])
    return collect_runs(folder)


def default_arm_folder(out: Path, method: str, chosen: dict) -> Path:
    """Where the method's runs at its YAML default rate are: its confirm runs when tuning kept the default."""
    stage = "confirm" if chosen["tuned_lr"] == chosen["default_lr"] else DEFAULT_ARM
    return out / stage / method


def confirm_default(plan: Plan, method: str, chosen: dict) -> list[RunRecord]:
    """The method at its YAML default rate, with confirm's seeds and budget: the arm the report sets against the
    tuned one ("what tuning changed"). Nothing runs when tuning kept the default."""
    folder = default_arm_folder(plan.out, method, chosen)
    if folder.parent.name == "confirm":
        return collect_runs(folder)
    return confirm(plan, method, chosen["default_lr"], stage=DEFAULT_ARM)


def budget_picks(runs: list[RunRecord]) -> dict[str, dict[float, dict[str, dict]]]:
    """{axis: {budget: {run folder: the validation point picked}}}: per run, its best validation within the budget
    (what ModelCheckpoint would have kept had the run stopped there); runs that had not validated yet are absent."""
    limits = {"flops": max(r.train_flops for r in runs), "seconds": max(r.train_time_s for r in runs)}
    picks: dict[str, dict[float, dict[str, dict]]] = {}
    for axis in AXES:
        picks[axis] = {}
        for budget in BUDGETS:
            chosen = {}
            for run in runs:
                sign = 1 if higher_is_better(run.monitor) else -1
                within = [p for p in run.curve if p[axis] <= budget * limits[axis] * (1 + 1e-9)]
                if within:
                    chosen[str(run.folder)] = max(within, key=lambda p, s=sign: s * p["value"])
            picks[axis][budget] = chosen
    return picks


def score_on_test(plan: Plan, runs: list[RunRecord]) -> list[dict]:
    """Score every checkpoint a budget picked on the test split: the first and only time it is read.

    Rows are appended to <out>/test/scores.json run by run; a rerun scores only what is missing.
    """
    from omegaconf import OmegaConf

    from peftlab.run import score_checkpoints

    path = plan.out / "test" / "scores.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(path.read_text()) if path.is_file() else []
    done = {(r["run"], r["step"]) for r in rows}
    steps: dict[str, set[int]] = {}
    for chosen in (c for axis in budget_picks(runs).values() for c in axis.values()):
        for run, point in chosen.items():
            steps.setdefault(run, set()).add(point["step"])
    for run in runs:
        todo = sorted(s for s in steps.get(str(run.folder), ()) if (str(run.folder), s) not in done)
        if not todo:
            continue
        cfg = RunDir(run.folder).read_config()  # the run's own model, method, data and held-out rows
        cfg = OmegaConf.merge(cfg, {"split": "test"})
        scored = score_checkpoints(cfg, [str(RunDir(run.folder).checkpoint(s)) for s in todo])
        for step, row in zip(todo, scored, strict=True):
            rows.append({**row, "run": str(run.folder), "seed": run.seed, "step": step})
        path.write_text(json.dumps(rows, indent=2))
    return rows


def prune_unread_checkpoints(runs: list[RunRecord], rows: list[dict]) -> int:
    """Remove every checkpoint of these runs that the test stage did not score; returns the bytes freed.

    Confirm keeps a checkpoint at every validation because which ones the budgets pick is known only when every run
    of the arm has finished (budgets are fractions of the largest run); once scored, the rest is never read again
    (a rerun's picks come from the same metrics.json files). The SQL comparison of 2026-12-02 kept 27 GB of them.
    adapter/, metrics.json and the scored checkpoints stay.
    """
    scored = {(row["run"], row["step"]) for row in rows}
    freed = 0
    for run in runs:
        folder = RunDir(run.folder)
        keep = {folder.checkpoint(step) for name, step in scored if name == str(run.folder)}
        for path in folder.saved_checkpoints():
            if path in keep:
                continue
            if path.is_dir():  # a DeepSpeed checkpoint is a folder
                freed += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
                shutil.rmtree(path)
            else:
                freed += path.stat().st_size
                path.unlink()
    return freed
