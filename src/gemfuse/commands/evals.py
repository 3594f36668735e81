"""`gemfuse eval`: run an eval with a live progress bar, print the report, write it to --out."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def run_eval(dataset: str, *, out: Path | None, config: Path | None, cache: str | None, as_json: bool,
             settings: dict) -> int:
    import json

    from ..api import evaluate
    from ..evals import Progress as EvalProgress
    from ..evals.settings import eval_settings
    from .options import flag

    checked = eval_settings(named=flag, **settings)  # before anything loads

    console = Console(stderr=True)
    tracker = EvalProgress()
    bar = Progress(TextColumn("eval"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=True)
    task = bar.add_task("eval", total=None, status="")

    def show(progress: EvalProgress) -> None:
        accuracy = progress.correct / progress.done if progress.done else 0.0
        bar.update(task, total=progress.total, completed=progress.done,
                   status=f"right so far {accuracy:.0%}  cost ${progress.cost:.4f}")

    tracker.listeners.append(show)
    with bar:
        report = evaluate(dataset, checked, config=config, cache=cache, progress=tracker, out=out)
    if as_json:
        print(json.dumps(report.data, indent=2, ensure_ascii=False))
    else:
        report.print(Console(width=max(Console().width, 120)))
        if out is not None:
            console.print(f"report: {out}/report.md, report.json, records.jsonl, accuracy_cost.png")
    return 0
