"""The statistics of a report: bootstrap intervals, McNemar's paired test, percentiles and a judge's position bias.

Plain Python on purpose: eval sets are hundreds to thousands of items, where these take milliseconds.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from ..shapes import PositionBiasFigures


def bootstrap_interval(values: Sequence[float], level: float = 0.95, resamples: int = 2000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values`. For right/wrong values the bootstrap distribution
    of the mean is exactly Binomial(n, p)/n, so its percentiles are read from that (no resampling noise, and
    instant); other values are resampled, seeded so a report is reproducible."""
    n = len(values)
    if n == 0:
        return (math.nan, math.nan)
    tail = (1 - level) / 2
    if all(v in (0, 1) for v in values):
        return _binomial_quantile(n, sum(values) / n, tail) / n, _binomial_quantile(n, sum(values) / n, 1 - tail) / n
    rng = random.Random(seed)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    return (means[int(tail * resamples)], means[min(resamples - 1, int((1 - tail) * resamples))])


def _binomial_quantile(n: int, p: float, q: float) -> int:
    """The smallest k with P(Binomial(n, p) <= k) >= q."""
    if p <= 0:
        return 0
    if p >= 1:
        return n
    log_p, log_q = math.log(p), math.log1p(-p)
    total = 0.0
    for k in range(n + 1):
        total += math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p
                          + (n - k) * log_q)
        if total >= q - 1e-12:
            return k
    return n


@dataclass
class McNemar:
    only_a: int  # items A got right and B wrong
    only_b: int  # items B got right and A wrong
    p_value: float
    method: str  # "exact" (binomial) or "chi2" (with continuity correction)

    def to_dict(self) -> dict:
        return {"only_a": self.only_a, "only_b": self.only_b, "p_value": self.p_value, "method": self.method}


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> McNemar:
    """Paired test of two systems on the same items; exact binomial below 25 discordant pairs."""
    if len(a) != len(b):
        raise ValueError("McNemar needs the two systems' results on the same items")
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    n = only_a + only_b
    if n == 0:
        return McNemar(0, 0, 1.0, "exact")
    if n < 25:
        tail = sum(math.comb(n, k) for k in range(min(only_a, only_b) + 1)) / 2 ** n
        return McNemar(only_a, only_b, min(1.0, 2 * tail), "exact")
    statistic = (abs(only_a - only_b) - 1) ** 2 / n
    return McNemar(only_a, only_b, math.erfc(math.sqrt(statistic / 2)), "chi2")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class PositionBias:
    """How often a judge picked each shown position, against what chance would give."""

    picks: list[int]  # picks[i]: how often position i+1 was chosen
    expected: list[float]  # the count chance alone would give, from how many candidates each verdict saw
    p_value: float  # chi-square goodness of fit against chance

    @property
    def verdicts(self) -> int:
        return sum(self.picks)

    def shares(self) -> list[float]:
        return [p / self.verdicts if self.verdicts else math.nan for p in self.picks]

    def to_dict(self) -> PositionBiasFigures:
        return {"picks": self.picks, "shares": self.shares(), "expected": self.expected,
                "verdicts": self.verdicts, "p_value": self.p_value}


def position_bias(verdicts: Sequence[tuple[int, int]]) -> PositionBias:
    """`verdicts`: (chosen position, 1-based; how many candidates were shown) per judge verdict."""
    width = max((shown for _, shown in verdicts), default=0)
    picks = [0] * width
    expected = [0.0] * width
    for chosen, shown in verdicts:
        picks[chosen - 1] += 1
        for i in range(shown):
            expected[i] += 1 / shown
    cells = [(p, e) for p, e in zip(picks, expected, strict=True) if e > 0]
    statistic = sum((p - e) ** 2 / e for p, e in cells)
    return PositionBias(picks, [round(e, 3) for e in expected], chi2_sf(statistic, len(cells) - 1))


def chi2_sf(x: float, dof: int) -> float:
    """P(X >= x) for a chi-square with `dof` degrees of freedom (regularised upper incomplete gamma)."""
    if dof <= 0:
        return 1.0
    if x <= 0:
        return 1.0
    a, z = dof / 2, x / 2
    if z < a + 1:  # series for the lower gamma, then its complement
        term = total = 1 / a
        k = a
        while abs(term) > 1e-15 * abs(total):
            k += 1
            term *= z / k
            total += term
        return max(0.0, 1 - total * math.exp(-z + a * math.log(z) - math.lgamma(a)))
    # continued fraction for the upper gamma (Lentz)
    tiny = 1e-300
    b = z + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 500):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return min(1.0, h * math.exp(-z + a * math.log(z) - math.lgamma(a)))
