"""A cascade's threshold calibrated on dev from the cascade itself. It runs once on each dev item with a threshold
nothing reaches, so every tier is asked (a tier whose samples agree still answers, as it would at any
threshold) and the final fusion is what a cascade at any threshold would fuse when no tier is sure. From each
tier's certainty, agreement and chosen answer, the cascade at any threshold is replayed by the mode's own
acceptance rule (`tier_accepted`): the same answers, costs and latencies the real cascade would give.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..fusion.modes import tier_accepted
from ..shapes import Calibration, CascadePoint
from .frontier import Outcome, calibrate, summary
from .records import ItemResult

NEVER = math.inf  # the probe's threshold: no tier is accepted for its certainty


def replay_cascade(record: ItemResult, threshold: float, measure: str = "mean") -> Outcome:
    """The cascade of `record` (a probe run at NEVER) as it would have answered at `threshold`."""
    cost = latency = 0.0
    for number, tier in enumerate(record.tiers, 1):
        cost += tier.get("cost") or 0.0
        latency += tier.get("seconds") or 0.0
        chosen = tier.get("chosen")
        if tier_accepted(tier.get("certainty"), bool(tier.get("agreed")), int(chosen is not None), threshold,
                         measure)[0]:
            return Outcome(chosen is not None and bool(record.candidates.get(chosen)), cost, latency, number)
    return Outcome(bool(record.correct), record.cost or cost, record.latency_s or latency, None)


def point(records: Sequence[ItemResult], threshold: float, measure: str) -> CascadePoint:
    return summary([replay_cascade(r, threshold, measure) for r in records], threshold)


def calibrate_cascade(probes: Sequence[ItemResult], measure: str, target_accuracy: float | None = None,
                      target_cost: float | None = None) -> Calibration | None:
    """The threshold from dev: the replay at every cut between the certainties the tiers showed, the most
    accurate (ties: the cheapest, then the fewest escalations), or the goal's when given. None when no tier
    showed a certainty."""
    records = [r for r in probes if not r.error]
    seen = sorted({c for r in records for t in r.tiers if (c := t.get("certainty")) is not None})
    if not seen:
        return None
    cuts = [seen[0] - 1.0] + [(a + b) / 2 for a, b in zip(seen, seen[1:], strict=False)] + [seen[-1] + 1.0]
    points = [point(records, round(t, 6), measure) for t in cuts]
    if target_accuracy is not None or target_cost is not None:
        chosen = calibrate(points, points, target_accuracy, target_cost, on="dev")
        if chosen["threshold"] is None:
            return {**chosen, "certainty": measure}
        best, goal = chosen["dev"], chosen["goal"]
    else:
        best = max(points, key=lambda p: (p["accuracy"], -p["cost_per_item"], -p["escalated"]))
        goal = "the best accuracy on dev (ties: the cheapest)"
    return {"goal": goal, "threshold": best["threshold"], "certainty": measure, "on": "dev", "dev": best,
            "candidates": len(points)}
