"""How well each certainty measure tells a member's right answers from its wrong ones: the area under the ROC
curve (the chance that a right answer is surer than a wrong one; 0.5 is chance) with a bootstrap interval, per
member and over the pool, on dev items (test when there are none, said so), and the measure it would pick.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from ..models.certainty import MEASURES
from .records import ItemResult

RESAMPLES = 1000


def auroc(pairs: Sequence[tuple[float, bool]]) -> float | None:
    """P(a right answer's score > a wrong one's), ties counted half (Mann-Whitney); None without both kinds."""
    ranked = sorted(pairs, key=lambda p: p[0])
    right = sum(1 for _, ok in pairs if ok)
    wrong = len(pairs) - right
    if not right or not wrong:
        return None
    rank_sum, i = 0.0, 0
    while i < len(ranked):  # average ranks over ties
        j = i
        while j < len(ranked) and ranked[j][0] == ranked[i][0]:
            j += 1
        rank_sum += sum(1 for _, ok in ranked[i:j] if ok) * (i + j + 1) / 2
        i = j
    return (rank_sum - right * (right + 1) / 2) / (right * wrong)


def auroc_interval(pairs: Sequence[tuple[float, bool]], seed: int = 0, level: float = 0.95) -> list[float | None]:
    """Percentile bootstrap interval (answers resampled; resamples holding one kind only are skipped)."""
    rng = random.Random(seed)
    values = sorted(v for _ in range(RESAMPLES) if (v := auroc(rng.choices(pairs, k=len(pairs)))) is not None)
    if not values:
        return [None, None]
    tail = (1 - level) / 2
    return [values[int(tail * len(values))], values[min(len(values) - 1, int((1 - tail) * len(values)))]]


def separation(records: Sequence[ItemResult], members: Sequence[str], dev_ids: Sequence[str],
               test_ids: Sequence[str], seed: int = 0) -> dict[str, Any] | None:
    """None when no member's answers carry certainties (they were not asked for log-probabilities)."""
    on, ids = ("dev", set(dev_ids)) if dev_ids else ("test", set(test_ids))
    rows = [r for r in records if r.system in members and r.item in ids]
    if not any(r.certainty_by("mean") is not None for r in rows):
        return None
    measures: dict[str, Any] = {}
    for measure in MEASURES:
        pairs = [(value, bool(r.correct)) for r in rows if (value := r.certainty_by(measure)) is not None]
        if not pairs:
            continue
        per_member = {m: auroc([(v, bool(r.correct)) for r in rows if r.system == m
                                and (v := r.certainty_by(measure)) is not None]) for m in members}
        measures[measure] = {"auroc": auroc(pairs), "interval": auroc_interval(pairs, seed), "answers": len(pairs),
                             "right": sum(ok for _, ok in pairs), "members": per_member}
    scored = {m: d["auroc"] for m, d in measures.items() if d["auroc"] is not None}
    pick = max(scored, key=lambda m: (scored[m], -MEASURES.index(m))) if scored else None  # ties: the cheaper
    return {"on": on, "measures": measures, "pick": pick}


def separation_findings(found: dict[str, Any] | None) -> list[str]:
    if not found:
        return []
    parts = []
    for measure, d in found["measures"].items():
        if d["auroc"] is None:
            parts.append(f"{measure} undefined ({d['right']} of {d['answers']} answers right: it needs both kinds)")
        else:
            low, high = d["interval"]
            parts.append(f"{measure} {d['auroc']:.2f} [{low:.2f}, {high:.2f}]")
    line = (f"Telling the members' right answers from wrong on {found['on']} (AUROC, 0.5 is chance): "
            + "; ".join(parts) + ".")
    if found["pick"]:
        line += (f" The measure to pick: {found['pick']} (the certainty setting, --certainty, of confidence, cascade "
                 "and weighted votes).")
    if found["on"] == "test":
        line += " No dev items: measured on the test items themselves."
    return [line]
