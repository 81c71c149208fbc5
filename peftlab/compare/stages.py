"""The protocol's three stages: tune (compare/search.py), confirm (the best one, several seeds)
and test (every confirmed run's budget checkpoints on the held-out split).

Tune and confirm are ordinary `python -m peftlab.train -m` sweeps, one per method and stage, so their folders are
sweep folders (metrics.json per job, the sweep report) and any Hydra launcher runs their jobs. They run the installed
package's training command, not a checkout's train.py: a comparison starts from any folder. A stage whose folder
already holds every job it plans (the same learning rates and seeds) is skipped: a rerun resumes where the last one
stopped.
"""

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

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


def _recorded(folder: Path) -> list[tuple[float, int, int, str]]:
    """(lr, seed, last validated step, job folder name) of each finished job in a sweep folder."""
    jobs = []
    for job in RunDir.finished_jobs(folder):
        cfg, history = job.read_config(), job.read_metrics()["history"]
        jobs.append((float(cfg.peft.lr), int(cfg.seed), history[-1]["step"] if history else 0, job.root.name))
    return jobs


def finished(folder: Path, lrs: list[float], seeds: list[int], reach: int | None = None,
             job: str | None = None) -> bool:  # fmt: skip
    """Whether the folder holds exactly the planned (lr, seed) jobs (job: that one job among others), each
    validated at step `reach` or later when given (a halving rung)."""
    if not folder.is_dir():
        return False
    jobs = [j for j in _recorded(folder) if job is None or j[3] == job]
    planned = sorted((lr, seed) for lr in lrs for seed in seeds)
    return sorted((lr, seed) for lr, seed, *_ in jobs) == planned and all(j[2] >= (reach or 0) for j in jobs)


def run_sweep(plan: Plan, stage: str, method: str, lrs: list[float], seeds: list[int], extra: list[str],
              reach: int | None = None, job: str | None = None) -> Path:  # fmt: skip
    """One `python -m peftlab.train -m` sweep of (lrs × seeds) for a method into <out>/<stage>/<method>, unless already
    done (every job validated at step `reach` when given); it runs in the folder the comparison started in
    (plan.cwd). job: continue that one job folder of the sweep (a halving rung, with resume=auto in extra)."""
    folder = plan.out / stage / method
    if finished(folder, lrs, seeds, reach, job):
        log.info("%s %s: done already (%s%s), skipped", stage, method, folder, f"/{job}" if job else "")
        return folder
    planned = {(lr, seed) for lr in lrs for seed in seeds}
    stale = sorted({(lr, seed) for lr, seed, *_ in _recorded(folder)} - planned) if folder.is_dir() else []
    if stale and job is None:  # a sweep writes jobs 0..n-1 over old ones: the rest would be read as this plan's
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
        *([f"hydra.sweep.subdir={job}"] if job else []),
    ]
    with (folder / "command.txt").open("a") as record:  # every command that wrote into the folder, in order
        record.write(" ".join(command[1:]) + "\n")
    log.info("%s %s: %d jobs (lr %s, seeds %s%s)", stage, method, len(lrs) * len(seeds), lrs, seeds,
             f", to step {reach} in {job}/" if job else "")  # fmt: skip
    with (plan.out / stage / f"{method}.log").open("a") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, cwd=plan.cwd, check=False)
    if done.returncode != 0 or not finished(folder, lrs, seeds, reach, job):
        raise PeftlabError(f"{stage} {method}: the sweep failed (exit {done.returncode}); its log: {out.name}")
    return folder


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
