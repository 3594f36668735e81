"""The accuracy-cost frontier of a cascade over the pool, from the members' own cached answers: each member's
answer, its certainty (mean token log-probability), cost and latency on every item are what a cascade over them
would see, so the cascade at any threshold is replayed without a single extra call. Then: points on test with
intervals, the oracle, which systems are dominated (another is at least as accurate for no more cost), and, on
dev, the threshold that meets a target accuracy at the least cost (or the best accuracy within a target cost).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..fusion.extract import answer_key, plurality
from ..fusion.modes import tier_accepted
from ..shapes import Calibration, CascadePoint, Frontier, SystemRow
from .records import ItemResult
from .stats import bootstrap_interval, percentile

THRESHOLDS = (-0.05, -0.1, -0.2, -0.3, -0.5, -0.8, -1.2, -2.0)


@dataclass
class Outcome:
    correct: bool
    cost: float
    latency: float
    tier: int | None  # the tier that answered; None: the final vote


def replay(answers: Sequence[ItemResult], threshold: float, extractor: str = "auto",
           measure: str = "mean") -> Outcome:
    """The cascade over `answers` (the pool's members on one item, in pool order) at `threshold`, by the mode's
    own rules: the first member sure enough (by `measure`) answers; when none is, the vote of them all (a tie to
    the first in pool order)."""
    cost = latency = 0.0
    for tier, answer in enumerate(answers, 1):
        cost += answer.cost or 0.0
        latency += answer.latency_s or 0.0
        gave = int(answer.answered)
        if tier_accepted(answer.certainty_by(measure), False, gave, threshold, measure)[0]:
            return Outcome(bool(answer.correct), cost, latency, tier)
    answered = [a for a in answers if a.answered]
    if not answered:
        return Outcome(False, cost, latency, None)
    keys = [a.calls_key or answer_key(a.text, extractor) for a in answered]
    leaders = [answered[keys.index(k)] for k in plurality(keys)[1]]
    surest = [a for a in leaders if a.certainty_by(measure) is not None] if len(leaders) > 1 else []
    winner = max(surest, key=lambda a: a.certainty_by(measure) or 0.0) if surest else leaders[0]  # as the mode breaks ties
    return Outcome(bool(winner.correct), cost, latency, None)


def frontier(records: Sequence[ItemResult], pool: Sequence[str], test_ids: Sequence[str], dev_ids: Sequence[str],
             systems: Sequence[SystemRow], *, extractor: str = "auto", seed: int = 0,
             target_accuracy: float | None = None, target_cost: float | None = None) -> Frontier | None:
    """None when the pool's members gave no certainties (they were not asked for log-probabilities)."""
    by = {(r.system, r.item): r for r in records}
    if not any(by.get((m, i)) and by[(m, i)].certainty is not None for m in pool for i in test_ids):
        return None

    def point(threshold: float, ids: Sequence[str]) -> CascadePoint:
        return replayed(by, pool, ids, threshold, extractor, "mean", seed)

    points = [point(t, test_ids) for t in THRESHOLDS]
    oracle_rows = pool_rows(by, pool, test_ids)
    oracle = {"accuracy": sum(any(a.correct for a in answers) for answers in oracle_rows) / max(len(oracle_rows), 1),
              "cost_per_item": sum(sum(a.cost or 0.0 for a in answers) for answers in oracle_rows)
              / max(len(oracle_rows), 1)}
    result: Frontier = {"pool": list(pool), "points": points, "oracle": oracle,
                              "dominated": dominated(systems, points)}
    if target_accuracy is not None or target_cost is not None:
        result["calibrated"] = calibrate([point(t, dev_ids or test_ids) for t in THRESHOLDS], points,
                                         target_accuracy, target_cost, on="dev" if dev_ids else "test")
    return result


def pool_rows(by: dict[tuple[str, str], ItemResult], pool: Sequence[str],
              ids: Sequence[str]) -> list[list[ItemResult]]:
    """Each item's pool answers, in pool order, for the items every member answered."""
    return [[by[(m, i)] for m in pool] for i in ids if all((m, i) in by for m in pool)]


def replayed(by: dict[tuple[str, str], ItemResult], pool: Sequence[str], ids: Sequence[str], threshold: float,
             extractor: str, measure: str, seed: int = 0) -> CascadePoint:
    """The cascade at `threshold` replayed on `ids`: accuracy with its interval, cost, latency, escalations."""
    outcomes = [replay(answers, threshold, extractor, measure) for answers in pool_rows(by, pool, ids)]
    return summary(outcomes, threshold, seed)


def summary(outcomes: Sequence[Outcome], threshold: float, seed: int = 0) -> CascadePoint:
    """A replayed cascade's point: accuracy with its interval, cost and median latency per item, escalations."""
    n = max(len(outcomes), 1)
    right = [float(o.correct) for o in outcomes]
    return {"threshold": threshold, "n": len(outcomes), "accuracy": sum(right) / n,
            "interval": bootstrap_interval(right, seed=seed), "cost_per_item": sum(o.cost for o in outcomes) / n,
            "latency_p50_s": percentile([o.latency for o in outcomes], 50),
            "escalated": sum(o.tier != 1 for o in outcomes) / n}


def calibrate(on_dev: list[CascadePoint], on_test: list[CascadePoint], target_accuracy: float | None,
              target_cost: float | None, on: str) -> Calibration:
    """The cheapest threshold meeting the target accuracy on dev, or the most accurate within the target cost."""
    if target_accuracy is not None:
        meeting = [p for p in on_dev if p["accuracy"] >= target_accuracy]
        chosen = min(meeting, key=lambda p: (p["cost_per_item"], -p["accuracy"])) if meeting else None
        goal = f"accuracy at least {target_accuracy:.0%} on {on}"
    else:
        assert target_cost is not None
        meeting = [p for p in on_dev if p["cost_per_item"] <= target_cost]
        chosen = max(meeting, key=lambda p: (p["accuracy"], -p["cost_per_item"])) if meeting else None
        goal = f"cost per item at most {target_cost:g} on {on}"
    if chosen is None:
        return {"goal": goal, "threshold": None, "why": "no threshold meets it"}
    test = next(p for p in on_test if p["threshold"] == chosen["threshold"])
    return {"goal": goal, "threshold": chosen["threshold"], "on": on, "dev": chosen, "test": test}


def dominated(systems: Sequence[SystemRow], points: Sequence[CascadePoint]) -> list[dict[str, str]]:
    """Systems and cascade points another one beats: at least as accurate for no more cost, better in one."""
    entries = [(s["name"], s["accuracy"] or 0.0, s["cost"] / max(s["n"], 1)) for s in systems if not s.get("failed")]
    entries += [(f"cascade({p['threshold']:g})", p["accuracy"], p["cost_per_item"]) for p in points]
    beaten = []
    for name, accuracy, cost in entries:
        for other, other_accuracy, other_cost in entries:
            cheaper = other_cost < cost and not math.isclose(other_cost, cost)
            if other != name and other_accuracy >= accuracy and (other_cost <= cost or math.isclose(other_cost, cost)) \
                    and (other_accuracy > accuracy or cheaper):
                beaten.append({"system": name, "by": other})
                break
    return beaten
