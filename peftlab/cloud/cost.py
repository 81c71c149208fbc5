"""Training cost estimate: planned steps × seconds/step → hours, on-demand and spot USD per instance type.

The prices come from a dated table in config (conf/cost/<name>.yaml); nothing here asks AWS for a price, so the
estimate works offline and is reproducible (seed 000's table is a test).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from peftlab.conf import CONF_DIR
from peftlab.config.checks import SettingError, check
from peftlab.errors import ConfigError

DEFAULT_PRICES = CONF_DIR / "cost" / "sagemaker.yaml"


@dataclass
class InstancePrice:
    """USD per instance-hour; spot is the typical managed-spot price (it varies with capacity)."""

    on_demand: float
    spot: float
    gpus: int = 1
    gpu: str = ""

    def __post_init__(self) -> None:
        check(self.on_demand > 0, "on_demand", self.on_demand, "USD per hour, > 0")
        check(0 < self.spot <= self.on_demand, "spot", self.spot, f"USD/h, > 0 and <= on_demand ({self.on_demand})")


@dataclass
class PriceTable:
    """conf/cost/*.yaml: the date the prices were read, their region and currency, a row per instance type."""

    as_of: str
    region: str
    currency: str = "USD"
    instances: dict[str, InstancePrice] = field(default_factory=dict)

    def price(self, instance_type: str) -> InstancePrice:
        if instance_type not in self.instances:
            raise ConfigError(
                f"instance_type={instance_type}: no price in the cost table (as of {self.as_of}); "
                f"known: {', '.join(self.instances)} (add a row to conf/cost/)"
            )
        return self.instances[instance_type]


def price_table(node) -> PriceTable:
    """Validate a cost config node (DictConfig or dict) into a PriceTable; a bad row names its key."""
    raw = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    rows = {}
    try:
        for name, row in (raw.get("instances") or {}).items():
            try:
                rows[name] = InstancePrice(**row)
            except SettingError as err:
                raise ConfigError(f"cost.instances.{name}.{err}") from err
        return PriceTable(str(raw["as_of"]), raw["region"], raw.get("currency", "USD"), rows)
    except (KeyError, TypeError) as err:
        expected = "as_of, region, currency, instances: {<type>: {on_demand, spot}}"
        raise ConfigError(f"cost: {err} (expected {expected})") from err


def load_prices(path: str | Path | None = None) -> PriceTable:
    return price_table(OmegaConf.load(path or DEFAULT_PRICES))


@dataclass(frozen=True)
class CostRow:
    instance_type: str
    instance_count: int
    seconds_per_step: float
    steps: int
    hours: float  # wall-clock hours of the job (every instance bills them)
    on_demand_usd: float
    spot_usd: float


def estimate(
    table: PriceTable, steps: int, seconds_per_step: dict[str, float], instance_count: int = 1
) -> list[CostRow]:
    """One row per instance type: hours = steps × s/step / 3600; cost = hours × price × instances."""
    if steps < 1:
        raise ConfigError(f"steps={steps}: must be >= 1")
    rows = []
    for instance_type, sps in seconds_per_step.items():
        if sps <= 0:
            raise ConfigError(f"seconds_per_step={sps} for {instance_type}: must be > 0")
        price = table.price(instance_type)
        hours = steps * sps / 3600
        rows.append(
            CostRow(
                instance_type, instance_count, sps, steps, hours,
                hours * price.on_demand * instance_count, hours * price.spot * instance_count,
            )
        )  # fmt: skip
    return rows


def format_table(rows: list[CostRow], table: PriceTable) -> str:
    """The seed-000 layout: a markdown table, then the prices it used and their date."""
    cur = "$" if table.currency == "USD" else f"{table.currency} "
    lines = [
        "| instance | s/step | steps | hours | on-demand | spot |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        name = r.instance_type if r.instance_count == 1 else f"{r.instance_count} × {r.instance_type}"
        lines.append(
            f"| {name} | {r.seconds_per_step:.2f} | {r.steps:,} | {r.hours:.2f} h "
            f"| {cur}{r.on_demand_usd:.2f} | {cur}{r.spot_usd:.2f} |"
        )
    used = "; ".join(
        f"{r.instance_type} {cur}{table.price(r.instance_type).on_demand}/h on-demand, "
        f"{cur}{table.price(r.instance_type).spot}/h spot"
        for r in rows
    )
    lines += ["", f"Prices ({table.region}, as of {table.as_of}): {used}."]
    return "\n".join(lines)


def measured_seconds_per_step(run_dir: str | Path) -> tuple[float, int, int]:
    """(train seconds per optimizer step, steps run, epochs run) from a finished run's metrics.json."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        raise ConfigError(f"run={run_dir}: no metrics.json (a finished training run folder is needed)")
    report = json.loads(path.read_text())
    steps, seconds = report.get("global_step") or 0, report.get("train_time_s") or 0.0
    if steps < 1 or seconds <= 0:
        raise ConfigError(f"run={run_dir}: metrics.json has no training steps/time to measure")
    return seconds / steps, steps, max(int(report.get("epochs") or 1), 1)


def run_cost(cost_node, instance_type: str | None, instance_count: int, report: dict) -> dict | None:
    """metrics.json's `cost` for a run on a priced SageMaker instance: its measured s/step and what its fit cost."""
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
