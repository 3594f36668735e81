"""The report of an eval: per system accuracy with a bootstrap interval, a paired McNemar test against the best
single member (chosen on dev) and a fine-tune against its base, cost per correct answer, tokens, latency; for
fusions the oracle, judge regret, rescues and the judge's position bias. As a rich table, JSON, Markdown and a
PNG of accuracy against cost.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._json import finite
from ..paths import output_path
from ..shapes import REPORT, EvalReport, SystemRow
from .call_scorers import CALL_SCORERS
from .datasets import EvalSet
from .frontier import frontier
from .records import ItemResult
from .separation import separation, separation_findings
from .stats import bootstrap_interval, mcnemar, percentile, position_bias
from .systems import System

SIGNIFICANT = 0.05


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


def _scorer_stats(rows: list[ItemResult], seed: int) -> dict[str, Any]:
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
                test = {"against": other, **mcnemar([correct[i] for i in shared], [theirs[i] for i in shared]).to_dict()}
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


def frontier_findings(found: dict | None) -> list[str]:
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


def _fmt_cost(value: float | None, unpriced: list[str]) -> str:
    if unpriced:
        return "unpriced"
    return "-" if value is None else f"${value:.4g}"


def _fmt_seconds(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}s"


def _test_cell(test: dict | None) -> str:
    return f"{test['only_a']}/{test['only_b']} p={test['p_value']:.2g}" if test else "-"


class Report:
    COLUMNS = ("system", "accuracy (95% CI)", "vs best (+/-, p)", "vs base", "cost/correct", "tokens/item",
               "latency p50 / p95", "oracle", "regret / rescue", "judge picks by position")

    def __init__(self, data: EvalReport, records: list[ItemResult], settings: Any = None):
        self.data = data
        self.records = records
        self.settings = settings  # the EvalSettings it was made with

    def system(self, name: str) -> SystemRow:
        return next(s for s in self.data["systems"] if s["name"] == name)

    def columns(self) -> list[str]:
        """The table's columns, without those no system fills (no fine-tune: no 'vs base')."""
        systems = self.data["systems"]
        keep = {"vs base": any(s.get("vs_base") for s in systems),
                "oracle": any("oracle" in s for s in systems), "regret / rescue": any("oracle" in s for s in systems),
                "judge picks by position": any(s.get("position_bias") for s in systems)}
        return [c for c in self.COLUMNS if keep.get(c, True)]

    def rows(self) -> list[list[str]]:
        """The table's cells; a figure an older report.json lacks is "-"."""
        columns = self.columns()
        out = []
        for s in self.data["systems"]:
            low, high = s.get("interval") or (None, None)
            accuracy = "failed" if s.get("failed") else "-" if s.get("accuracy") is None else \
                f"{s['accuracy']:.1%}" + (f" ({low:.0%}-{high:.0%})" if low is not None and high is not None else "")
            bias = s.get("position_bias")
            tokens = [s.get("prompt_tokens_per_item"), s.get("completion_tokens_per_item")]
            cells = {
                "system": s["name"] + (" (best)" if s["name"] == self.data.get("best_member") else ""),
                "accuracy (95% CI)": accuracy,
                "vs best (+/-, p)": _test_cell(s.get("vs_best")), "vs base": _test_cell(s.get("vs_base")),
                "cost/correct": _fmt_cost(s.get("cost_per_correct"), s.get("unpriced") or []),
                "tokens/item": "-" if None in tokens else f"{sum(t for t in tokens if t is not None):.0f}",
                "latency p50 / p95": f"{_fmt_seconds(s.get('latency_p50_s'))} / {_fmt_seconds(s.get('latency_p95_s'))}",
                "oracle": f"{s['oracle']:.1%}" if "oracle" in s else "-",
                "regret / rescue": f"{s['regret']} / {s['rescue']}" if "oracle" in s else "-",
                "judge picks by position": " ".join(str(p) for p in bias["picks"]) if bias else "-"}
            out.append([cells[c] for c in columns])
        return out

    def heading(self) -> str:
        d = self.data
        scorer = (d.get("scorer") or {}).get("scorer", "-")
        return (f"{d.get('dataset', '-')}: {d.get('test', '-')} test items ({d.get('dev', '-')} dev), scorer {scorer}, "
                f"seed {d.get('seed', '-')}; best member on {d.get('best_chosen_on', '-')}: {d.get('best_member', '-')}")

    def to_markdown(self) -> str:
        columns = self.columns()
        lines = [f"# Eval: {self.data['dataset']}", "", self.heading(), "",
                 "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows()]
        lines += self.scorer_table()
        lines += self.frontier_table()
        lines += self.certainty_table()
        lines += ["", "**What it says**", ""] + [f"- {line}" for line in self.data.get("findings", [])]
        return "\n".join(lines) + "\n"

    def scorer_table(self) -> list[str]:
        """Accuracy by scorer (tool-call, no-call, json-fields, ...) when the items were scored more than one way."""
        systems = [s for s in self.data["systems"] if s.get("by_scorer")]
        if not systems:
            return []
        names = list(dict.fromkeys(name for s in systems for name in s["by_scorer"]))
        lines = ["", "**By scorer** (test items; accuracy, 95% CI, mean score)", "",
                 "| system | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for s in systems:
            cells = []
            for name in names:
                d = s["by_scorer"].get(name)
                low, high = d["interval"] if d else (None, None)
                cells.append("-" if not d or low is None else
                             f"{d['accuracy']:.1%} ({low:.0%}-{high:.0%}), {d['score']:.2f} of {d['n']}")
            lines.append(f"| {s['name']} | " + " | ".join(cells) + " |")
        return lines

    def frontier_table(self) -> list[str]:
        """The cascade at each threshold, replayed from the members' answers, and the oracle."""
        found = self.data.get("frontier")
        if not found:
            return []
        lines = ["", f"**A cascade over {', '.join(found['pool'])}, by threshold** (replayed; test items)", "",
                 "| threshold | accuracy (95% CI) | cost / item | latency p50 | escalated |", "|---|---|---|---|---|"]
        for p in found["points"]:
            low, high = p["interval"]
            lines.append(f"| {p['threshold']:g} | {p['accuracy']:.1%} ({low:.1%}-{high:.1%}) | "
                         f"${p['cost_per_item']:.4g} | {_fmt_seconds(p['latency_p50_s'])} | {p['escalated']:.0%} |")
        oracle = found["oracle"]
        lines.append(f"| oracle (any member right) | {oracle['accuracy']:.1%} | ${oracle['cost_per_item']:.4g} | | |")
        return lines

    def certainty_table(self) -> list[str]:
        """Each certainty measure's AUROC: how well it tells the members' right answers from wrong."""
        found = self.data.get("certainty")
        if not found:
            return []
        members = list(next(iter(found["measures"].values()))["members"]) if found["measures"] else []
        lines = ["", f"**Telling right answers from wrong** (AUROC on {found['on']}; 0.5 is chance)", "",
                 "| measure | AUROC (95% CI) | " + " | ".join(members) + " |", "|---|---|" + "---|" * len(members)]

        def cell(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}"

        for measure, d in found["measures"].items():
            low, high = d["interval"]
            interval = f" ({cell(low)}-{cell(high)})" if low is not None else ""
            pick = " (pick)" if measure == found["pick"] else ""
            lines.append(f"| {measure}{pick} | {cell(d['auroc'])}{interval} | "
                         + " | ".join(cell(d["members"][m]) for m in members) + " |")
        return lines

    def print(self, console=None) -> None:
        from rich.console import Console
        from rich.table import Table

        console = console or Console()
        table = Table(title=self.heading(), title_justify="left")
        for column in self.columns():
            table.add_column(column, overflow="fold")
        for row in self.rows():
            table.add_row(*row)
        console.print(table)
        for line in self.data["findings"]:
            console.print(f"- {line}", highlight=False)

    def write(self, out: str | Path) -> Path:
        folder = output_path(out, folder=True)
        (folder / REPORT).write_text(json.dumps(finite(self.data), indent=2, ensure_ascii=False, allow_nan=False)
                                            + "\n")
        (folder / "report.md").write_text(self.to_markdown())
        with open(folder / "records.jsonl", "w", encoding="utf-8") as handle:
            for record in self.records:
                handle.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
        self.plot(folder / "accuracy_cost.png")
        return folder

    def plot(self, path: Path) -> Path | None:
        try:
            import matplotlib
        except ImportError:
            return None  # the JSON and Markdown still hold every figure
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        systems = self.data["systems"]
        priced = any(s["cost"] > 0 for s in systems) and not any(s["unpriced"] for s in systems)
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for s in (s for s in systems if not s.get("failed")):
            x = s["cost"] / max(s["n"], 1) if priced else s["prompt_tokens_per_item"] + s["completion_tokens_per_item"]
            low, high = s["interval"]
            accuracy = s["accuracy"] or 0.0  # a failed system (no accuracy) is not drawn
            axes.errorbar([x], [accuracy], yerr=[[accuracy - (low or 0.0)], [(high or 0.0) - accuracy]], fmt="o",
                          capsize=3, color="tab:blue" if s["kind"] == "member" else "tab:orange")
            axes.annotate(s["name"], (x, accuracy), textcoords="offset points", xytext=(5, 5), fontsize=8)
        found = self.data.get("frontier")
        if found and priced:
            points = sorted(found["points"], key=lambda p: p["cost_per_item"])
            axes.plot([p["cost_per_item"] for p in points], [p["accuracy"] for p in points], "-", color="tab:green",
                      marker=".", label="cascade, by threshold")
            axes.legend(fontsize=8, loc="lower right")
        axes.set_xlabel("cost per item (USD)" if priced else "tokens per item (prompt + completion)")
        axes.set_ylabel("accuracy on test (95% CI)")
        axes.set_ylim(-0.02, 1.02)
        axes.set_title(f"{self.data['dataset']}: accuracy against cost", fontsize=10)
        axes.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        plt.close(figure)
        return path
