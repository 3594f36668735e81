"""`gemfuse distil label | filter | run`: a progress bar while the teacher labels, then what each stage did."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..distil.settings import DistilSettings, distil_settings
from ..shapes import DistilReport
from .options import flag


def checked(settings_file: Path | None, given: dict[str, Any]) -> DistilSettings:
    return distil_settings(file=settings_file, named=flag, **given)  # before anything loads


class LabelBar:
    def __init__(self, console: Console):
        self.bar = Progress(TextColumn("label"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            console=console, transient=True)
        self.task = self.bar.add_task("label", total=None)

    def __call__(self, done: int, total: int) -> None:
        self.bar.update(self.task, completed=done, total=total)


def describe_label(report) -> str:
    calls = sum(report.calls_made.values())
    line = (f"labelled {report.labelled} of {report.prompts} prompts with {report.teacher} in {report.seconds:.1f} s "
            f"({calls} calls made, {sum(report.calls_reused.values())} from the cache, {report.from_cache} labels "
            f"already done) -> {report.folder}/labelled.jsonl")
    failed = "".join(f"\n  not labelled: {f['where']}: {f['why']}" for f in report.failed[:10])
    return line + failed


def describe_filter(report) -> str:
    dropped = ", ".join(f"{reason} {count}" for reason, count in sorted(report.dropped.items())) or "none"
    return (f"kept {report.kept} of {report.rows} rows ({report.train} train, {report.val} validation); "
            f"dropped: {dropped} -> {report.folder}/train.jsonl, dropped.jsonl")


def run_label(prompts: Path, *, out: Path, cache: str | None, settings_file: Path | None, config: Path | None,
              as_json: bool, given: dict[str, Any]) -> int:
    from ..distil import label

    settings = checked(settings_file, given)
    console = Console(stderr=True)
    bar = LabelBar(console)
    with bar.bar:
        report = label(prompts, out=out, cache=cache, config=config, settings=settings, on_label=bar)
    print(json.dumps(report.to_dict(), indent=2)) if as_json else console.print(describe_label(report))
    return 0 if report.labelled else 1


def run_filter(folder: Path, *, settings_file: Path | None, as_json: bool, given: dict[str, Any]) -> int:
    from ..distil import filter as filter_rows

    report = filter_rows(folder, settings=checked(settings_file, given))
    print(json.dumps(report.to_dict(), indent=2)) if as_json else Console(stderr=True).print(describe_filter(report))
    return 0


def run_distil(prompts: Path, *, out: Path, cache: str | None, settings_file: Path | None, config: Path | None,
               as_json: bool, given: dict[str, Any]) -> int:
    from ..distil import run
    from ..distil.filter import FilterReport
    from ..distil.label import LabelReport

    settings = checked(settings_file, given)
    console = Console(stderr=True)
    bar = LabelBar(console)
    with bar.bar:
        report = run(prompts, out=out, cache=cache, config=config, settings=settings, on_label=bar, console=console)
    if as_json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    console.print(describe_label(LabelReport(**report["label"])))
    console.print(describe_filter(FilterReport(**report["filter"])))
    training = report["training"]
    console.print(f"trained {report['student']['name']} ({report['student']['model']}): {training['rows']} rows, "
                  f"{training['epochs']:g} passes at lr {training['lr']:g} "
                  f"({'reused' if training.get('reused') else str(training.get('steps')) + ' steps'}); "
                  f"rule: {training['rule']}")
    accuracy = ", ".join(f"{name} {value:.0%}" for name, value in report["eval"]["accuracy"].items())
    console.print(f"held-out accuracy ({report['eval']['items']} items): {accuracy}")
    console.print(gain_line(report))
    if report["registered"]:
        console.print(f"registered as {report['student']['name']} in {report['registered']}: "
                      f"gemfuse ask -m {report['student']['name']} \"...\"")
    console.print(f"report: {out}/report.json, the eval's tables in {out}/eval/")
    return 0


def gain_line(report: DistilReport) -> str:
    gain = report["gain_kept"]
    if gain.get("value") is None:
        return f"gain kept: not defined ({gain.get('why')})"
    low, high = gain["interval"]
    text = (f"gain kept: {gain['value']:.0%} of the teacher's gain over the base "
            f"(95% interval {low:.0%} to {high:.0%})" if low is not None else f"gain kept: {gain['value']:.0%}")
    for label, share in (("cost", report["cost_fraction"]), ("latency", report["latency_fraction"])):
        fraction = share.get("fraction")
        text += f"; {label} per item {fraction:.1%} of the teacher's" if fraction is not None else \
            f"; {label}: {share.get('why', 'the teacher has none recorded')}"
    return text
