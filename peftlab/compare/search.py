"""The tune stage: each method's learning rate, chosen at the budget the verdict is judged on.

A log grid over the method's lr_range, every trial on the tuning budget (compare.tune: confirm's by default), or a
successive-halving schedule whose last rung is that budget (compare.tune.rungs): all trials run to the first rung,
the best 1/eta go on to the next, and so on. A trial going on is resumed from its last checkpoint, not restarted:
its learning-rate schedule spans the whole budget from the first step (optim.schedule_steps), so a trial that
reaches the last rung is exactly the run a budget-matched trial would have been, at a fraction of the grid's cost.
Only trials that reached the last rung are candidates: a rate does not win for being fast.

While the chosen rate sits at an end of what was tried and beats its neighbour there, one more rate a grid step past
that end runs the whole budget (tune_ext<k>/<method>/), up to compare.tune.extend times.
"""

import itertools
import logging
import math
from pathlib import Path

import numpy as np

from peftlab.compare import stages
from peftlab.compare.plan import Plan
from peftlab.errors import PeftlabError
from peftlab.report.collect import RunRecord, collect_runs
from peftlab.report.summary import higher_is_better
from peftlab.rundir import RunDir

log = logging.getLogger(__name__)


def lr_grid(low: float, high: float, trials: int) -> list[float]:
    """`trials` learning rates evenly spaced in log between low and high, rounded to 3 significant digits (the
    values then read the same in overrides, folder records and the report)."""
    return [float(f"{lr:.3g}") for lr in np.geomspace(low, high, trials)]


def tune(plan: Plan, method: str) -> dict:
    """The method's grid on the tuning budget (halving through plan.rung_steps), then up to plan.extend rates past
    an end of it (one grid step each) while the best is at that end: a short range must not decide the winner.
    Returns the trials, the chosen rate and where it came from."""
    low, high = plan.lr_ranges[method]
    grid = lr_grid(low, high, plan.trials)
    folders = [halving(plan, method, grid)]
    chosen = choose_lr(folders, plan.default_lrs[method], [low, high])
    ratio = (high / low) ** (1 / (plan.trials - 1))
    while len(folders) <= plan.extend and (beyond := rate_past_the_end(chosen["trials"], chosen["tuned_lr"], ratio)):
        stage = f"tune_ext{len(folders)}"
        budget = rung_overrides(plan, plan.tune_steps)
        folders.append(stages.run_sweep(plan, stage, method, [beyond], [plan.tune_seed], budget, plan.tune_steps))
        chosen = choose_lr(folders, plan.default_lrs[method], [low, high])
    chosen["extensions"] = len(folders) - 1
    chosen["extend"] = plan.extend
    chosen["origin"] = "grid" if low <= chosen["tuned_lr"] <= high else "past the range"
    chosen["rungs"] = plan.rung_steps or [plan.tune_steps]
    return chosen


def rung_overrides(plan: Plan, steps: int) -> list[str]:
    """The tuning budget stopped after `steps`; with halving, the schedule spans the whole budget all the same."""
    if not plan.rung_steps:  # budget-matched: the jobs' overrides are the tuning budget's, unchanged
        return plan.tune_overrides
    kept = [o for o in plan.tune_overrides if not o.startswith("trainer.max_steps=")]
    return [*kept, f"trainer.max_steps={steps}", f"optim.schedule_steps={plan.tune_steps}"]


def halving(plan: Plan, method: str, grid: list[float]) -> Path:
    """Every rate to the first rung, then the best ceil(n / eta) of those that reached a rung on to the next one,
    each resumed in its own job folder (resume=auto: its last.ckpt is that rung's last validation)."""
    rungs = plan.rung_steps or [plan.tune_steps]
    folder = stages.run_sweep(plan, "tune", method, grid, [plan.tune_seed], rung_overrides(plan, rungs[0]), rungs[0])
    for previous, steps in itertools.pairwise(rungs):
        reached = [run for run in collect_runs(folder) if reached_step(run) >= previous]
        going_on = ranked(reached)[: math.ceil(len(reached) / plan.eta)]
        log.info("tune %s: rung of %d steps: %s go on to %d", method, previous, [lr_of(r) for r in going_on], steps)
        for run in going_on:
            overrides = [*rung_overrides(plan, steps), "resume=auto"]
            stages.run_sweep(plan, "tune", method, [lr_of(run)], [plan.tune_seed], overrides, steps, run.folder.name)
    return folder


def reached_step(run: RunRecord) -> int:
    """The last validated step of a trial: the rung it reached."""
    return run.curve[-1]["step"] if run.curve else 0


def lr_of(run: RunRecord) -> float:
    return float(RunDir(run.folder).read_config().peft.lr)


def ranked(runs: list[RunRecord]) -> list[RunRecord]:
    """Best validation first; equal ones: the smaller rate first. Unscored (NaN, never validated) runs last."""
    scored = [r for r in runs if r.best is not None and not math.isnan(r.best)]
    sign = 1 if scored and higher_is_better(scored[0].monitor) else -1
    order = sorted(scored, key=lambda r: (-sign * r.best, lr_of(r)))
    return order + [r for r in runs if r not in scored]


def rate_past_the_end(trials: list[dict], best_lr: float, ratio: float) -> float | None:
    """The next rate one grid step (× ratio) past the end the best trial sits at, when it beats its neighbour there
    (a neighbour stopped at an earlier rung lost to it; a plateau at the end says nothing about what lies past
    it); None otherwise."""
    scored = [t for t in trials if t["best"] is not None and not math.isnan(t["best"])]
    lrs = [t["lr"] for t in scored]
    if len(scored) < 2 or best_lr not in (lrs[0], lrs[-1]):
        return None
    at_top = best_lr == lrs[-1]
    end, neighbour = (scored[-1], scored[-2]) if at_top else (scored[0], scored[1])
    if neighbour.get("steps", 0) == end.get("steps", 0) and end["best"] == neighbour["best"]:
        return None
    return float(f"{best_lr * ratio if at_top else best_lr / ratio:.3g}")


def choose_lr(folders: list[Path], default_lr: float, lr_range: list[float]) -> dict:
    """The trial with the best validation metric (its best over the run) among those that reached the whole tuning
    budget (halving's last rung) across the tuning folders; ties go to the smaller learning rate."""
    runs = [run for folder in folders for run in collect_runs(folder)]
    if not runs:
        raise PeftlabError(f"{folders[0]}: no finished tuning trial")
    trials = sorted(
        ({"lr": lr_of(r), "best": r.best, "steps": reached_step(r), "run": str(r.folder)} for r in runs),
        key=lambda t: t["lr"],
    )
    longest = max(t["steps"] for t in trials)
    candidates = ranked([r for r in runs if reached_step(r) == longest])
    best = candidates[0]
    if best.best is None or math.isnan(best.best):
        raise PeftlabError(f"{folders[0]}: no tuning trial validated; raise the tuning budget (compare.tune.*)")
    return {
        "monitor": runs[0].monitor,
        "default_lr": default_lr,
        "lr_range": lr_range,
        "tuned_lr": lr_of(best),
        "tuned_best": best.best,
        "trials": trials,
    }
