"""Scores over seeds: mean, std and a Student-t 95 % interval per method, and the verdict at one budget.

Why t and not ±2 std: with 3 seeds the 95 % quantile is t(2) = 4.30, not 1.96; an interval from the normal
quantile would be less than half as wide and call winners that three seeds cannot tell apart.
"""

import math
import statistics
from dataclasses import dataclass

from scipy import stats

CONFIDENCE = 0.95
NO_CLEAR_WINNER = "no clear winner"


@dataclass(frozen=True)
class Interval:
    """Mean, sample std and the t interval of the mean over n seeds (n < 2: an unbounded interval)."""

    n: int
    mean: float
    std: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def overlaps(self, other: "Interval") -> bool:
        return self.low <= other.high and other.low <= self.high


def t_interval(values: list[float], confidence: float = CONFIDENCE) -> Interval:
    """mean ± t_{(1+c)/2, n-1} · std / √n over the values (NaNs dropped)."""
    values = [v for v in values if not math.isnan(v)]
    n = len(values)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan, math.nan)
    mean = statistics.fmean(values)
    if n == 1:
        return Interval(1, mean, math.nan, -math.inf, math.inf)
    std = statistics.stdev(values)
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return Interval(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Verdict:
    """The method with the best mean at a budget, and whether its interval is clear of every other method's."""

    best: str | None  # None: no method had a score at this budget
    clear: bool
    overlapping: tuple[str, ...]  # the methods whose interval overlaps the best one's

    def text(self) -> str:
        if self.best is None:
            return "no method had validated within this budget"
        if self.clear:
            return f"**{self.best}**"
        return f"{NO_CLEAR_WINNER} ({self.best} best on mean; overlaps {', '.join(self.overlapping)})"


def verdict(intervals: dict[str, Interval], higher_is_better: bool = True) -> Verdict:
    """Best mean; "no clear winner" when its 95 % interval overlaps another method's."""
    scored = {m: iv for m, iv in intervals.items() if iv.n > 0}
    if not scored:
        return Verdict(None, False, ())
    sign = 1 if higher_is_better else -1
    best = max(scored, key=lambda m: sign * scored[m].mean)
    overlapping = tuple(m for m, iv in scored.items() if m != best and iv.overlaps(scored[best]))
    return Verdict(best, not overlapping, overlapping)
