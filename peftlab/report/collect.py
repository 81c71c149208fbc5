"""Read a sweep folder: every job's metrics.json (and Hydra's record of its overrides) as one RunRecord."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from peftlab.errors import PeftlabError
from peftlab.report.flops import training_flops
from peftlab.rundir import RunDir


@dataclass
class RunRecord:
    folder: Path
    method: str  # the peft= option (metrics.json's method): dora, rslora and lora are rows of their own
    seed: int
    model: str
    dataset: str
    monitor: str
    best: float | None
    trainable: int
    total: int
    trainable_pct: float
    adapter_bytes: int
    train_time_s: float
    samples_per_s: float
    peak_rss_mb: float
    train_flops: float
    curve: list[dict] = field(default_factory=list)  # per validation: step, seconds, flops, value
    # What the report groups by: the method plus every override that differs between the sweep's jobs, except the
    # seed (so `peft.lr=1e-4,5e-5` or Optuna trials are separate rows, and seeds of one setting are averaged).
    label: str = ""


def load_run(folder: Path) -> RunRecord:
    report = RunDir(folder).read_metrics()
    params, monitor = report["params"], report["monitor"]

    def flops(tokens: int) -> float:
        return training_flops(params["total"], params["trainable"], tokens)

    curve = [
        {
            "step": h["step"],
            "seconds": h.get("train_time_s"),
            "flops": flops(h.get("train_tokens", 0)),
            "value": h[monitor],
        }
        for h in report["history"]
        if monitor in h
    ]
    return RunRecord(
        folder=folder,
        method=report["method"],
        seed=report["seed"],
        model=report["model"],
        dataset=report["dataset"],
        monitor=monitor,
        best=report["best"][monitor] if report.get("best") else None,
        trainable=params["trainable"],
        total=params["total"],
        trainable_pct=params["trainable_pct"],
        adapter_bytes=report["adapter_bytes"],
        train_time_s=report["train_time_s"],
        samples_per_s=report["samples_per_s"],
        peak_rss_mb=report["peak_memory"]["rss_mb"],
        train_flops=flops(report.get("train_tokens", 0)),
        curve=curve,
        label=report["method"],
    )


# Overrides that are not a setting being compared: the seed (averaged over) and the method (already in the label).
NOT_COMPARED = ("seed", "peft")


def job_overrides(folder: Path) -> dict[str, str]:
    """The job's command-line overrides as Hydra recorded them (`.hydra/overrides.yaml`), key -> value."""
    path = RunDir(folder).overrides
    if not path.is_file():
        return {}
    pairs = (str(item).lstrip("+~").partition("=") for item in yaml.safe_load(path.read_text()) or [])
    return {key: value for key, _, value in pairs}


def label_runs(runs: list[RunRecord]) -> None:
    """Label each run by its method and the overrides that vary across the sweep (seed excluded)."""
    overrides = [job_overrides(run.folder) for run in runs]
    keys = sorted({key for o in overrides for key in o} - set(NOT_COMPARED))
    varied = [key for key in keys if not key.startswith("hydra.") and len({o.get(key) for o in overrides}) > 1]
    for run, o in zip(runs, overrides, strict=True):
        settings = [f"{key.removeprefix('peft.')}={_short(o[key])}" for key in varied if key in o]
        run.label = " ".join([run.method, *settings])


def _short(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.3g}"


def unfinished_jobs(sweep_dir: str | Path) -> list[dict]:
    """Sweep points that ran as SageMaker jobs (<n>/job.json) and left no metrics.json: Failed or Stopped jobs, with
    their status, reason and overrides, for the report's table of jobs that did not finish."""
    rows = []
    for record in sorted(Path(sweep_dir).glob("*/job.json"), key=lambda p: (len(p.parent.name), p.parent.name)):
        if RunDir(record.parent).finished:
            continue
        job = json.loads(record.read_text())
        overrides = " ".join(f"{k}={v}" for k, v in job_overrides(record.parent).items())
        rows.append({"run": record.parent.name, **job, "overrides": overrides})
    return rows


def collect_runs(sweep_dir: str | Path) -> list[RunRecord]:
    """Jobs are the sub-folders holding a metrics.json (Hydra numbers them 0, 1, ...)."""
    root = Path(sweep_dir).expanduser()
    if not root.is_dir():
        raise PeftlabError(f"{root}: no such sweep folder")
    jobs = RunDir.finished_jobs(root)
    if not jobs:
        raise PeftlabError(f"{root}: no finished runs (no */metrics.json)")
    runs = [load_run(job.root) for job in jobs]
    label_runs(runs)
    return runs
