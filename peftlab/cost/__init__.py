"""Training cost: planned steps × seconds per step → hours, and on-demand / spot USD per instance type.

The one place that prices training: `python -m peftlab.cost` (a plan, or a finished run at its measured speed),
launch_sagemaker.py's dry run (the most a job can cost, and the table for its instance), a SageMaker job's cost.json
(cost/job.py) and the sweep report (seconds per step from a run's metrics). The prices are a dated table in config
(conf/cost/<name>.yaml): nothing here asks AWS, so an estimate works offline and is reproducible, and nothing here
imports boto3 or the SageMaker SDK. A local training run imports none of it: it has no price.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from peftlab.conf import CONF_DIR
from peftlab.config.checks import SettingError, check
from peftlab.errors import ConfigError
from peftlab.rundir import RunDir

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

    def rate(self, spot: bool) -> float:
        """USD per instance-hour as the job is billed."""
        return self.spot if spot else self.on_demand


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
    """A price table file (default: conf/cost/sagemaker.yaml)."""
    path = Path(path or DEFAULT_PRICES).expanduser()
    if not path.is_file():
        raise ConfigError(f"prices={path}: no such file (a price table like conf/cost/sagemaker.yaml)")
    return price_table(OmegaConf.load(path))


def _check_positive(key: str, value, integer: bool = False, where: str = "") -> None:
    """Command-line values arrive as Hydra parsed them (a string where a number was meant): one line naming the key."""
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float) or value <= 0:
        raise ConfigError(f"{key}={value!r}{where}: {'an integer >= 1' if integer else 'a number > 0'}")


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
    table: PriceTable, steps: int, seconds_per_step: Mapping[str, float], instance_count: int = 1
) -> list[CostRow]:
    """One row per instance type: hours = steps × s/step / 3600; cost = hours × price × instances."""
    _check_positive("steps", steps, integer=True)
    _check_positive("instance_count", instance_count, integer=True)
    rows = []
    for instance_type, sps in seconds_per_step.items():
        _check_positive("seconds_per_step", sps, where=f" for {instance_type}")
        price = table.price(instance_type)
        hours = steps * sps / 3600
        rows.append(
            CostRow(
                instance_type, instance_count, sps, steps, hours,
                hours * price.on_demand * instance_count, hours * price.spot * instance_count,
            )
        )  # fmt: skip
    return rows


def estimate_plan(
    table: PriceTable,
    seconds_per_step: Mapping[str, float],
    instances: Iterable[str] = (),
    steps: int | None = None,
    run: str | Path | None = None,
    epochs: float | None = None,
    instance_count: int = 1,
) -> list[CostRow]:
    """`python -m peftlab.cost`: rows for planned steps at given seconds per step, or at a finished run's speed.

    With a run folder, `instances` (types named without seconds per step) take the run's measured rate, and
    naming none prices every row of the table; steps default to the run's own, or `epochs` of its steps per epoch.
    """
    rates: dict[str, float | None] = {**seconds_per_step, **{n: None for n in instances if n not in seconds_per_step}}
    if epochs is not None:
        _check_positive("epochs", epochs)
        if not run:
            raise ConfigError(f"epochs={epochs}: needs run=<run folder> (epochs of its steps per epoch)")
    if run:
        sps, run_steps, run_epochs = measured_seconds_per_step(run)
        named = rates or dict.fromkeys(table.instances)
        rates = {name: sps if rate is None else rate for name, rate in named.items()}
        if epochs is not None:
            steps = round(epochs * run_steps / run_epochs)
        steps = run_steps if steps is None else steps
    if not rates or steps is None or any(rate is None for rate in rates.values()):
        raise ConfigError(
            "give steps=N and seconds per step per instance type (e.g. steps=56850 "
            "'seconds_per_step={ml.g4dn.xlarge:0.35}'), or run=<a finished run folder>"
        )
    return estimate(table, steps, rates, instance_count)


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


# What a dry run without measured speed asks for (one job's and a sweep's estimate alike).
ESTIMATE_HINT = "give sagemaker.estimate.steps=N (or trainer.max_steps) and sagemaker.estimate.seconds_per_step=S"


def job_estimate(
    table: PriceTable,
    instance_type: str,
    instance_count: int,
    spot: bool,
    max_run: int,
    steps: int | None = None,
    seconds_per_step: float | None = None,
) -> str:
    """A SageMaker job's dry-run estimate: the most it can cost (max_run at the table's price), and the table for
    its instance when the steps and seconds per step are known."""
    rate = table.price(instance_type).rate(spot)
    cap_h = max_run / 3600
    lines = [
        f"cost estimate ({'spot' if spot else 'on-demand'}, {table.region} prices as of {table.as_of}): "
        f"at most ${cap_h * rate * instance_count:.2f} = {cap_h:.2f} h (max_run) × ${rate}/h "
        f"× {instance_count} instance(s)"
    ]
    if steps and seconds_per_step:
        rows = estimate(table, int(steps), {instance_type: float(seconds_per_step)}, instance_count)
        lines.append(format_table(rows, table))
    else:
        lines.append(f"expected cost: {ESTIMATE_HINT} (python -m peftlab.cost has the table for several instances)")
    return "\n".join(lines)


def step_seconds(metrics: dict, where: str = "metrics.json") -> tuple[float, int, int]:
    """(train seconds per optimizer step, steps run, epochs run) from a run's metrics (its metrics.json)."""
    steps, seconds = metrics.get("global_step") or 0, metrics.get("train_time_s") or 0.0
    if steps < 1 or seconds <= 0:
        raise ConfigError(f"{where}: no training steps/time to measure")
    return seconds / steps, steps, max(int(metrics.get("epochs") or 1), 1)


def measured_seconds_per_step(run_dir: str | Path) -> tuple[float, int, int]:
    """step_seconds() of a finished run folder."""
    return step_seconds(RunDir(run_dir).read_metrics(), f"run={run_dir}: metrics.json")
