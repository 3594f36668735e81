"""How much of the teacher's gain the student kept: (student - base) / (teacher - base) in accuracy on the same
held-out items, with a paired bootstrap interval (items resampled together, so the three systems' answers to
one item stay together), and what the student costs and takes per item next to the teacher."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from ..evals.render import Report
from ..shapes import SystemRow

RESAMPLES = 2000


def gain_kept(report: Report, *, student: str, base: str | None, teacher: str, seed: int = 0,
              level: float = 0.95) -> dict[str, Any]:
    if base is None:
        return {"value": None, "why": f"{student} has no base in this eval"}
    failed = [(name, report.system(name)["failed"]) for name in (student, base, teacher)
              if report.system(name).get("failed")]
    if failed:
        return {"value": None, "why": "; ".join(f"{name} failed: {why}" for name, why in failed)}
    right: dict[str, dict[str, bool]] = {name: {} for name in (student, base, teacher)}
    for record in report.records:
        if record.system in right and record.split == "test":
            right[record.system][record.item] = bool(record.correct)
    items = sorted(set(right[student]) & set(right[base]) & set(right[teacher]))
    if not items:
        return {"value": None, "why": "no held-out item was answered by all three"}

    def accuracy(name: str, chosen: list[str]) -> float:
        return sum(right[name][i] for i in chosen) / len(chosen)

    def ratio(chosen: list[str]) -> float | None:
        headroom = accuracy(teacher, chosen) - accuracy(base, chosen)
        return (accuracy(student, chosen) - accuracy(base, chosen)) / headroom if headroom > 0 else None

    found = {"student": accuracy(student, items), "base": accuracy(base, items), "teacher": accuracy(teacher, items),
             "items": len(items)}
    value = ratio(items)
    if value is None:
        return {"value": None, **found,
                "why": "the teacher is no better than the base on these items, so there was no gain to keep"}
    rng = random.Random(seed)
    samples = sorted(r for _ in range(RESAMPLES) if (r := ratio(rng.choices(items, k=len(items)))) is not None)
    tail = (1 - level) / 2
    interval = ([samples[int(tail * len(samples))], samples[min(len(samples) - 1, int((1 - tail) * len(samples)))]]
                if samples else [None, None])
    return {"value": value, "interval": interval, "level": level, **found,
            "resamples_with_headroom": len(samples)}


def per_item_fraction(student: SystemRow, teacher: SystemRow, field: str) -> dict[str, Any]:
    """The student's figure as a fraction of the teacher's (cost: per item; latency: the median)."""
    def per_item(stats: Mapping[str, Any]) -> float | None:
        value = stats.get(field)
        if value is None:
            return None
        return value / stats["n"] if field == "cost" and stats.get("n") else value

    mine, theirs = per_item(student), per_item(teacher)
    result: dict[str, Any] = {"student": mine, "teacher": theirs,
                              "fraction": mine / theirs if mine is not None and theirs else None}
    if field == "cost" and teacher.get("unpriced"):
        result["why"] = f"the teacher's cost is partly unknown: no price for {', '.join(teacher['unpriced'])}"
    return result
