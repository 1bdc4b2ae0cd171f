"""The difference of two proportions with its confidence interval by Newcombe's hybrid score method (his
method 10: Wilson score intervals of each proportion combined), as statsmodels'
``confint_proportions_2indep(..., method="newcomb")`` computes it; exact arithmetic, no dependency."""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True)
class Uplift:
    target: float  # share converted among those mailed
    control: float  # share converted among those held out
    difference: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        """positive, negative or unclear (the interval holds zero)."""
        if self.low > 0:
            return "positive"
        if self.high < 0:
            return "negative"
        return "unclear"


def wilson(count: int, total: int, z: float) -> tuple[float, float]:
    """Wilson's score interval of ``count`` of ``total``."""
    p = count / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(count1: int, total1: int, count2: int, total2: int, confidence: float = 0.95) -> Uplift:
    """p1 - p2 with its ``confidence`` interval; raises ValueError for an empty group or counts beyond it."""
    if total1 <= 0 or total2 <= 0 or not 0 <= count1 <= total1 or not 0 <= count2 <= total2:
        raise ValueError("each group needs members, and at most as many conversions as members")
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p1, p2 = count1 / total1, count2 / total2
    low1, high1 = wilson(count1, total1, z)
    low2, high2 = wilson(count2, total2, z)
    difference = p1 - p2
    low = difference - math.sqrt((p1 - low1) ** 2 + (high2 - p2) ** 2)
    high = difference + math.sqrt((high1 - p1) ** 2 + (p2 - low2) ** 2)
    return Uplift(p1, p2, difference, low, high)
