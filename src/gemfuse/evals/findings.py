"""What a reader should take from an eval's figures, in sentences: the paired tests, failures, a cascade's
calibration, what a fusion lost and rescued, the judge's habits, the replayed cascade and the certainty measures."""

from __future__ import annotations

from ..shapes import EvalReport, Frontier, SystemRow
from .separation import separation_findings

SIGNIFICANT = 0.05


def findings(data: EvalReport) -> list[str]:
    """What a reader should take from the table, in sentences."""
    lines = []
    best = data["best_member"]
    scored = [s for s in data["systems"] if s["n"] and not s.get("failed")]
    if scored and all(s["correct"] == 0 for s in scored):
        scorer = data["scorer"]["scorer"]
        lines.append(f"Every system scored 0, the best members included: the {scorer!r} scorer most likely cannot read "
                     "these answers, not the models. Look at records.jsonl, then score with contains (the reference "
                     "anywhere in the reply), numeric, or regex with a pattern (the scorer setting, --scorer).")
    if data["best_chosen_on"] == "test":
        lines.append("No dev items: the best member was chosen on the test items themselves, which flatters it.")
    for s in data["systems"]:
        for test, what in ((s.get("vs_best"), "the best member"), (s.get("vs_base"), "its base")):
            if not test:
                continue
            verdict = ("better than" if test["only_a"] > test["only_b"] else "worse than") \
                if test["p_value"] < SIGNIFICANT else "not distinguishable from"
            lines.append(f"{s['name']} is {verdict} {what} {test['against']} (right where it was wrong: "
                         f"{test['only_a']}, the reverse: {test['only_b']}, McNemar p = {test['p_value']:.3g}).")
        if s.get("failed"):
            lines.append(f"{s['name']} failed: {s['failed']} (records.jsonl has each item's error).")
            continue
        if "threshold" in s:
            lines.append(cascade_finding(s))
        if s["kind"] == "fusion":
            lines.append(f"{s['name']}: the members together knew {s['oracle']:.0%} (oracle); the fusion lost "
                         f"{s['regret']} item(s) a member had right and rescued {s['rescue']} that none had.")
            if s.get("judge_replies"):
                lines.append(f"{s['name']}: {s['verdict_share']:.0%} of {s['judge_replies']} judge replies were a "
                             "verdict (the verdict JSON or an explicit 'best: N').")
            bias = s.get("position_bias")
            if bias and bias["verdicts"]:
                first, chance = bias["shares"][0], bias["expected"][0] / bias["verdicts"]
                lines.append(f"{s['name']}: the judge picked the first shown answer in {first:.0%} of "
                             f"{bias['verdicts']} verdicts (chance: {chance:.0%}; p = {bias['p_value']:.3g}).")
            if s.get("swap_disagreement"):
                lines.append(f"{s['name']}: asked again in another order, the judge changed its choice on "
                             f"{s['swap_disagreement']:.0%} of its verdicts; those items fell back to the vote.")
            if s["degraded"]:
                reasons = ", ".join(f"{reason} ({count})" for reason, count in s["degraded_reasons"].items())
                lines.append(f"{s['name']}: {s['degraded']} of {s['n']} answers came from a fallback: {reasons}.")
        if s["errors"]:
            lines.append(f"{s['name']}: {s['errors']} item(s) got no answer (see records.jsonl).")
    if best is None:
        lines.append("No member systems: nothing to compare the fusions with.")
    lines.extend(frontier_findings(data.get("frontier")))
    lines.extend(separation_findings(data.get("certainty")))
    return lines


def cascade_finding(s: SystemRow) -> str:
    calibration = s.get("calibration")
    if calibration and calibration.get("threshold") is not None:
        dev = calibration["dev"]
        return (f"{s['name']}: threshold {s['threshold']:g} ({s['certainty']}) calibrated on {dev['n']} dev items for "
                f"{calibration['goal']}: {dev['accuracy']:.0%} right there, escalating {dev['escalated']:.0%}.")
    why = f" ({calibration['why']})" if calibration and calibration.get("why") else ""
    return f"{s['name']}: threshold {s['threshold']:g} ({s['certainty']}), as set or by default, not calibrated{why}."


def frontier_findings(found: Frontier | None) -> list[str]:
    if not found:
        return []
    lines = []
    points = found["points"]
    best = max(points, key=lambda p: (p["accuracy"], -p["cost_per_item"]))
    lines.append(f"A cascade over {', '.join(found['pool'])} (replayed from the members' answers): at threshold "
                 f"{best['threshold']:g} it is {best['accuracy']:.0%} right for ${best['cost_per_item']:.4g} an item, "
                 f"escalating {best['escalated']:.0%} of them; the members together knew {found['oracle']['accuracy']:.0%}.")
    beaten = {d["system"]: d["by"] for d in found["dominated"] if not d["system"].startswith("cascade(")}
    if beaten:
        lines.append("Dominated (another is at least as accurate for no more cost): "
                     + ", ".join(f"{system} by {by}" for system, by in beaten.items()) + ".")
    calibrated = found.get("calibrated")
    if calibrated and calibrated.get("threshold") is not None:
        test = calibrated["test"]
        lines.append(f"For {calibrated['goal']}: threshold {calibrated['threshold']:g}; on test it is "
                     f"{test['accuracy']:.0%} right for ${test['cost_per_item']:.4g} an item.")
    elif calibrated:
        lines.append(f"For {calibrated['goal']}: {calibrated['why']}.")
    return lines
