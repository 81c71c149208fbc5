"""The price of a run that ran on a SageMaker instance: what its job's environment names, at a dated table's prices.

Only a SageMaker job has a price: its container writes cost.json beside metrics.json after training (cloud/
container.py); a run anywhere else has none, and `python -m peftlab.cost run=<folder>` prices it at any instance.
"""

import json
import os
from collections.abc import Mapping
from pathlib import Path

from omegaconf import OmegaConf

from peftlab.cost import DEFAULT_PRICES, price_table
from peftlab.rundir import RunDir

# What SageMaker's training toolkit sets in a job: the instance type of this host and how many hosts the job has.
INSTANCE_ENV = ("SM_CURRENT_INSTANCE_TYPE", "SM_HOST_COUNT")


def priced_instance(env: Mapping[str, str] | None = None) -> tuple[str | None, int]:
    """(instance type, instance count) this process is billed for: inside a SageMaker job, what the job's
    environment names; elsewhere (None, 1), and a local run has no price."""
    env = os.environ if env is None else env
    type_variable, count_variable = INSTANCE_ENV
    return env.get(type_variable) or None, int(env.get(count_variable) or 1)


def run_cost(cost_node, instance_type: str | None, instance_count: int, report: dict) -> dict | None:
    """A run's cost on a priced instance (cost.json): its measured s/step and what its fit cost; None unpriced."""
    if not instance_type or cost_node is None:
        return None
    table = price_table(cost_node)
    if instance_type not in table.instances or not report.get("global_step"):
        return None
    price, hours = table.price(instance_type), report["fit_time_s"] / 3600
    return {
        "instance_type": instance_type,
        "instance_count": instance_count,
        "seconds_per_step": round(report["train_time_s"] / report["global_step"], 4),
        "fit_hours": round(hours, 4),
        "on_demand_usd": round(hours * price.on_demand * instance_count, 4),
        "spot_usd": round(hours * price.spot * instance_count, 4),
        "prices_as_of": table.as_of,
    }


def write_job_cost(run_dir: str | Path, env: Mapping[str, str] | None = None) -> dict | None:
    """Inside a SageMaker job, after training: the run's cost.json at the default table's prices, priced from its
    metrics.json (the SageMaker container calls it; a local run has no price and writes nothing)."""
    run = RunDir(run_dir)
    cost = run_cost(OmegaConf.load(DEFAULT_PRICES), *priced_instance(env), run.read_metrics())
    if cost is not None:
        run.cost.write_text(json.dumps(cost, indent=2))
    return cost
