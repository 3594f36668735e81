"""An eval's report as people read it: a table (the terminal's rich table, Markdown, the dashboard's cells), the
by-scorer, cascade and certainty tables, a PNG of accuracy against cost, and the folder written whole
(report.json, report.md, records.jsonl, the plot), each file published at once. Figures an older report.json
lacks show as "-"."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .._json import finite
from ..paths import output_path, published_file, write_file
from ..shapes import REPORT, EvalReport, PairedTest, SystemRow
from .records import ItemResult


def _fmt_cost(value: float | None, unpriced: list[str]) -> str:
    if unpriced:
        return "unpriced"
    return "-" if value is None else f"${value:.4g}"


def _fmt_seconds(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}s"


def _test_cell(test: PairedTest | None) -> str:
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
        return write_report(out, self.data, self.records, self)

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
        with published_file(path) as staging:
            figure.savefig(staging, dpi=110, format="png")
        plt.close(figure)
        return path


def write_report(out: str | Path, data: EvalReport, records: list[ItemResult], report: Report | None = None) -> Path:
    """The eval's folder: report.json, report.md, records.jsonl and accuracy_cost.png, each file whole or not at
    all (a reader, the dashboard among them, never sees half of one). Returns the folder."""
    report = report or Report(data, records)
    folder = output_path(out, folder=True)
    write_file(folder / "records.jsonl", "".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in records))
    write_file(folder / "report.md", report.to_markdown())
    report.plot(folder / "accuracy_cost.png")
    # last: a folder with a report.json is a finished eval to the dashboard
    write_file(folder / REPORT, json.dumps(finite(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n")
    return folder
