"""`gemfuse eval`: run an eval with a live progress bar, print the report, write it to --out."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def split_list(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def run_eval(dataset: str, *, models: str | None, pool: str | None, judge: str | None, systems: str, n: int | None,
             seed: int, out: Path | None, settings, config: Path | None, cache: str | None, max_tokens: int,
             judge_max_tokens: int, temperature: float, swap_check: bool, dev_fraction: float, as_json: bool) -> int:
    import json

    from ..evals import Progress as EvalProgress
    from ..evals import run

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
        report = run(dataset, models=split_list(models), pool=split_list(pool), judge=judge,
                     systems=split_list(systems), n=n, seed=seed, out=out, settings=settings, config=config,
                     cache=cache, progress=tracker, max_tokens=max_tokens, judge_max_tokens=judge_max_tokens,
                     temperature=temperature, swap_check=swap_check, dev_fraction=dev_fraction)
    if as_json:
        print(json.dumps(report.data, indent=2, ensure_ascii=False))
    else:
        report.print(Console(width=max(Console().width, 120)))
        if out is not None:
            console.print(f"report: {out}/report.md, report.json, records.jsonl, accuracy_cost.png")
    return 0
