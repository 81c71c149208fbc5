"""run_protocol: the comparison's stages in order (tune, confirm, the default arm, forgetting, test, report).

Imported on first use of `peftlab.compare.run_protocol` (the package's __init__), so `python -m peftlab.compare`
answers `--help` and refuses a bad key before datasets and scipy load.
"""

import json
import logging
from pathlib import Path

from omegaconf import DictConfig

from peftlab.compare.forgetting import measure_forgetting
from peftlab.compare.plan import Plan, make_plan
from peftlab.compare.report import write_compare_report
from peftlab.compare.search import tune
from peftlab.compare.stages import confirm, confirm_default, prune_unread_checkpoints, score_on_test

log = logging.getLogger(__name__)


def run_protocol(cfg: DictConfig, command_line: list[str], cwd: Path | None = None) -> dict:
    """tune -> confirm -> test -> report into cfg.compare.out; returns the report's results (write_compare_report).

    cwd: the folder relative paths (compare.out, the command line's) are read from and the sweeps run in; the
    current one by default."""
    plan = make_plan(cfg, command_line, Path(cwd or Path.cwd()))
    plan.out.mkdir(parents=True, exist_ok=True)
    chosen = {method: tune(plan, method) for method in plan.methods}
    write_chosen(plan, chosen)
    runs = [run for method in plan.methods for run in confirm(plan, method, chosen[method]["tuned_lr"])]
    arms = [runs]
    if plan.default_arm:  # every sweep ends before the test split is first read
        arms.append([run for method in plan.methods for run in confirm_default(plan, method, chosen[method])])
    if plan.forgetting_texts:  # the tuned arm: what the verdict is about
        measure_forgetting(plan.out, runs, plan.forgetting_texts)
    for arm in arms:  # each arm's budgets are fractions of its own largest run
        rows = score_on_test(plan, arm)
        if not plan.keep_checkpoints:
            freed = prune_unread_checkpoints(arm, rows)
            log.info("removed the checkpoints the test stage did not read: %.1f MB", freed / 1e6)
    result = write_compare_report(plan.out)
    log.info("comparison report: %s, %s", plan.out / "summary.md", plan.out / "report.html")
    return result


def write_chosen(plan: Plan, chosen: dict) -> None:
    """chosen_lr.json (every trial) and chosen_lr.csv (method, default, tuned): what confirm runs with."""
    (plan.out / "chosen_lr.json").write_text(json.dumps(chosen, indent=2))
    lines = ["method,default_lr,tuned_lr,best_val_in_tuning,origin,extensions"]
    lines += [
        f"{m},{c['default_lr']},{c['tuned_lr']},{c['tuned_best']},{c['origin']},{c['extensions']}"
        for m, c in chosen.items()
    ]
    (plan.out / "chosen_lr.csv").write_text("\n".join(lines) + "\n")
