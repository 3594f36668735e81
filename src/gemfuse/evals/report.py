"""The figures of an eval, assembled from its records: per system accuracy with a bootstrap interval, a paired
McNemar test against the best single member (chosen on dev) and a fine-tune against its base, cost per correct
answer, tokens, latency; for fusions the oracle, judge regret, rescues and the judge's position bias; the replayed
cascade and the certainty measures. The sentences are findings.py's, the tables and files render.py's.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from ..shapes import EvalReport, PairedTest, ScorerFigures, SystemRow
from .call_scorers import CALL_SCORERS
from .datasets import EvalSet
from .findings import findings
from .frontier import frontier
from .records import ItemResult
from .render import Report
from .separation import separation
from .stats import bootstrap_interval, mcnemar, percentile, position_bias
from .systems import System


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def failure(rows: Sequence[ItemResult]) -> str | None:
    """Why a system answered nothing: every one of its items errored (its most common error), else None."""
    if not rows or any(not r.error for r in rows):
        return None
    reason, count = Counter(r.error for r in rows).most_common(1)[0]
    return f"every one of its {len(rows)} items got no answer; {count} said: {reason}"


def _system_stats(system: System, rows: list[ItemResult], seed: int) -> SystemRow:
    correct = [bool(r.correct) for r in rows]
    latencies = [r.latency_s for r in rows if r.latency_s is not None]
    cost = sum(r.cost or 0.0 for r in rows)
    n_correct = sum(correct)
    stats: SystemRow = {
        "name": system.name, "kind": system.kind, "members": system.members, "mode": system.preset.mode,
        "judge": system.preset.judge if system.kind == "fusion" else None, "base": system.base,
        "n": len(rows), "correct": n_correct, "accuracy": _mean([float(c) for c in correct]),
        "interval": bootstrap_interval([float(c) for c in correct], seed=seed),
        "score": _mean([r.value for r in rows]),
        "errors": sum(1 for r in rows if r.error), "degraded": sum(1 for r in rows if r.degraded),
        "cost": cost, "cost_per_correct": cost / n_correct if n_correct else None,
        "unpriced": sorted({m for r in rows for m in r.unpriced}),
        "eval_cost": sum(r.eval_cost for r in rows),
        "prompt_tokens_per_item": _mean([r.prompt_tokens for r in rows]),
        "completion_tokens_per_item": _mean([r.completion_tokens for r in rows]),
        "calls_per_item": _mean([r.calls for r in rows]),
        "latency_p50_s": percentile(latencies, 50), "latency_p95_s": percentile(latencies, 95),
    }
    scorers = list(dict.fromkeys(r.scorer for r in rows if r.scorer))
    if len(scorers) > 1 or set(scorers) & set(CALL_SCORERS):
        stats["by_scorer"] = {name: _scorer_stats([r for r in rows if r.scorer == name], seed) for name in scorers}
    failed = failure(rows)
    if failed:  # no accuracy: a system that never answered was not measured at 0%
        stats["failed"], stats["accuracy"], stats["interval"], stats["score"] = failed, None, (None, None), None
    if system.kind == "fusion":
        stats.update(_fusion_stats(rows))
    if system.preset.mode in ("cascade", "confidence") and system.kind == "fusion":
        stats["certainty"] = system.preset.certainty
    if system.preset.mode == "cascade" and system.kind == "fusion":
        stats["threshold"] = system.preset.cascade_threshold()
        stats["calibration"] = system.calibration
    return stats


def _scorer_stats(rows: list[ItemResult], seed: int) -> ScorerFigures:
    """One scorer's items: accuracy with its interval, and the mean value (a call's share of arguments right)."""
    correct = [float(bool(r.correct)) for r in rows]
    return {"n": len(rows), "correct": int(sum(correct)), "accuracy": _mean(correct),
            "interval": bootstrap_interval(correct, seed=seed), "score": _mean([r.value for r in rows])}


def _fusion_stats(rows: list[ItemResult]) -> SystemRow:
    n = len(rows)
    oracle = [any(r.candidates.values()) for r in rows]
    regret = sum(1 for o, r in zip(oracle, rows, strict=True) if o and not r.correct)
    rescue = sum(1 for o, r in zip(oracle, rows, strict=True) if not o and r.correct)
    # every verdict the judge gave, first pass and swap pass alike: where it points is the bias
    verdicts = [(v.choice, v.shown) for r in rows for v in r.verdicts if v.choice is not None]
    asked = [v for r in rows for v in r.verdicts]
    swaps = [r.judge.swap_disagreed for r in rows if r.judge]
    reasons = Counter(part for r in rows if r.degraded for part in r.degraded.split("; "))
    out: SystemRow = {"degraded_reasons": dict(reasons.most_common()), "oracle": _mean([float(o) for o in oracle]),
                           "regret": regret, "regret_rate": regret / n if n else 0,
                           "rescue": rescue, "rescue_rate": rescue / n if n else 0,
                           "ties": sum(1 for r in rows if r.tie)}
    if asked:
        out["judge_replies"] = len(asked)
        out["verdict_share"] = len(verdicts) / len(asked)
    if verdicts:
        out["position_bias"] = position_bias(verdicts).to_dict()
        out["swap_disagreement"] = _mean([float(s) for s in swaps])
    return out


def build_report(eval_set: EvalSet, systems: Sequence[System], records: list[ItemResult], settings, *,
                 calls_made: dict[str, int] | None = None, calls_reused: dict[str, int] | None = None,
                 results_reused: int = 0) -> Report:
    by_system: dict[str, list[ItemResult]] = {s.name: [] for s in systems}
    for record in records:
        by_system[record.system].append(record)
    test_ids = [i.id for i in eval_set.test]
    members = [s for s in systems if s.kind == "member"]
    dev_accuracy = {s.name: _mean([float(r.correct) for r in by_system[s.name] if r.split == "dev"])
                    for s in members}
    members = [s for s in members if not failure(by_system[s.name])]  # a member that never answered is not best
    chosen_on = "dev" if eval_set.dev else "test"
    ranking = {s.name: (dev_accuracy[s.name] if chosen_on == "dev" else
                        _mean([float(r.correct) for r in by_system[s.name] if r.split == "test"])) for s in members}
    best = max(ranking, key=lambda name: (ranking[name], -list(ranking).index(name))) if ranking else None

    def test_rows(name: str) -> list[ItemResult]:
        rows = {r.item: r for r in by_system[name] if r.split == "test"}
        return [rows[i] for i in test_ids if i in rows]

    table = []
    for system in systems:
        rows = test_rows(system.name)
        stats = _system_stats(system, rows, settings.seed)
        if system.kind == "member":
            stats["dev_accuracy"] = None if stats.get("failed") else dev_accuracy[system.name]
        correct = {r.item: bool(r.correct) for r in rows}
        for label, other in (("vs_best", best), ("vs_base", system.base)):
            if other and other != system.name and not stats.get("failed") and not failure(test_rows(other)):
                theirs = {r.item: bool(r.correct) for r in test_rows(other)}
                shared = [i for i in test_ids if i in correct and i in theirs]
                paired = mcnemar([correct[i] for i in shared], [theirs[i] for i in shared])
                test = PairedTest(against=other, only_a=paired.only_a, only_b=paired.only_b, p_value=paired.p_value,
                                  method=paired.method)
                if label == "vs_best":
                    stats["vs_best"] = test
                else:
                    stats["vs_base"] = test
        table.append(stats)
    data: EvalReport = {
        "kind": "eval", "dataset": eval_set.name, "answers": eval_set.kind, "items": len(eval_set.items),
        "dev": len(eval_set.dev), "test": len(eval_set.test), "scorer": settings.scorer_id(eval_set.kind),
        "seed": settings.seed, "best_member": best, "best_chosen_on": chosen_on, "systems": table,
        "calls": {"made": calls_made or {}, "reused": calls_reused or {}, "results_reused": results_reused}}
    pool = [name for name in settings.pool if name in by_system]
    found = frontier(records, pool, test_ids, [i.id for i in eval_set.dev], table,
                     extractor=systems[0].preset.extractor if systems else "auto", seed=settings.seed,
                     target_accuracy=settings.target_accuracy, target_cost=settings.target_cost) if pool else None
    if found is not None:
        data["frontier"] = found
    told = separation(records, [s.name for s in members], [i.id for i in eval_set.dev], test_ids, settings.seed)
    if told is not None:
        data["certainty"] = told
    data["findings"] = findings(data)
    return Report(data, records, settings)
