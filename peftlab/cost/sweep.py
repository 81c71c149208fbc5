"""A sweep's cost before it is launched: the most it can cost (every job running to max_run), the expected cost where
the steps and seconds per step of a job are known, and the refusal of a sweep whose maximum exceeds a budget."""

from dataclasses import dataclass

from peftlab.cost import ESTIMATE_HINT, PriceTable
from peftlab.errors import ConfigError


@dataclass(frozen=True)
class JobCost:
    """One job's bill: at most max_run hours, and expected (None when its steps or s/step are unknown)."""

    instance_type: str
    instance_count: int
    spot: bool
    max_run: int
    steps: int | None = None
    seconds_per_step: float | None = None

    def hourly(self, table: PriceTable) -> float:
        return table.price(self.instance_type).rate(self.spot) * self.instance_count

    def most(self, table: PriceTable) -> float:
        return self.max_run / 3600 * self.hourly(table)

    def expected(self, table: PriceTable) -> float | None:
        if not (self.steps and self.seconds_per_step):
            return None
        # A job never bills past max_run, however slow its steps.
        seconds = min(self.steps * self.seconds_per_step, self.max_run)
        return seconds / 3600 * self.hourly(table)


def sweep_cost_lines(table: PriceTable, jobs: list[JobCost], planned_jobs: int | None = None) -> list[str]:
    """What the dry run prints; planned_jobs: the sweep's size when more jobs follow these (an Optuna study's trials,
    priced like the ones seen)."""
    count = max(planned_jobs or 0, len(jobs))
    most = sweep_maximum(table, jobs, count)
    prices = f"{table.region} prices as of {table.as_of}"
    kinds = sorted({f"{j.instance_count} × {j.instance_type} {'spot' if j.spot else 'on-demand'}" for j in jobs})
    lines = [
        f"sweep cost ({count} jobs, {prices}): at most ${most:.2f} = Σ max_run × price × instances ({', '.join(kinds)})"
    ]
    expected = [j.expected(table) for j in jobs]
    known = [e for e in expected if e is not None]
    if known and len(known) == len(jobs):
        total = sum(known) * count / len(jobs)
        lines.append(f"expected: ${total:.2f} at the planned steps × seconds per step (sagemaker.estimate.*)")
    elif known:
        lines.append(
            f"expected: ${sum(known):.2f} for the {len(known)} jobs with planned steps and seconds per step; "
            f"unknown for {len(jobs) - len(known)}"
        )
    else:
        lines.append(f"expected: {ESTIMATE_HINT} (measured: python -m peftlab.cost run=<a finished run>)")
    return lines


def sweep_maximum(table: PriceTable, jobs: list[JobCost], planned_jobs: int | None = None) -> float:
    """Σ max_run × price × instances; the jobs not yet planned (planned_jobs beyond these) at their average."""
    most = sum(j.most(table) for j in jobs)
    extra = max((planned_jobs or 0) - len(jobs), 0)
    return most + (most / len(jobs) * extra if jobs else 0.0)


def check_budget(budget_usd: float | None, maximum: float, count: int) -> None:
    """sagemaker.budget_usd: refuse, in one line, a sweep that could cost more."""
    if budget_usd is None:
        return
    if isinstance(budget_usd, bool) or not isinstance(budget_usd, int | float) or budget_usd <= 0:
        raise ConfigError(f"sagemaker.budget_usd={budget_usd!r}: USD, a number > 0 (or null: no limit)")
    if maximum > budget_usd:
        raise ConfigError(
            f"sagemaker.budget_usd={budget_usd}: the sweep's {count} jobs can cost up to ${maximum:.2f} "
            "(max_run × price × instances each); lower sagemaker.max_run, sweep fewer points or raise the budget"
        )
