"""What a person sees while training: a live bar on a terminal (step, loss, supervised tokens/s, ETA, memory),
plain lines elsewhere, validation lines, and a summary at the end."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from .loop import Hooks, State
from .memory import peak_gib
from .runtime import Result
from .setup import RunInfo, Setup


def memory_used(device: str) -> str:
    """Peak memory so far, as the manifest measures it (memory.peak_used)."""
    peak = peak_gib(device)
    return "-" if peak is None else f"{peak:.1f} GiB" + (" RSS" if device == "cpu" else "")


class Reporter(Hooks):
    """A hook: the banner, a live bar on a terminal (plain lines elsewhere), validation and checkpoint lines, and
    the summary."""

    def __init__(self, console=None, enabled: bool = True):
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.live = enabled and self.console.is_terminal
        self.progress: Any = None  # a rich Progress while a live bar is shown
        self.run: RunInfo | None = None  # the run it reports, once set up (`describe`)

    def describe(self, run: RunInfo) -> None:
        """The run, once set up (the reporter shows the data's warnings before that)."""
        self.run = run

    def warnings(self, issues) -> None:
        if not self.enabled or not issues:
            return
        for issue in issues[:10]:
            self.console.print(f"[yellow]{issue}[/]", markup=True, highlight=False)
        if len(issues) > 10:
            self.console.print(f"[yellow]... and {len(issues) - 10} more warnings[/]")

    def started(self, setup: Setup, state: State) -> None:
        self.first_step = state.step
        self.started_at = time.perf_counter()
        self.tokens_at_start = state.tokens  # a resumed run's rate counts this process's tokens only
        run = self.run
        if not self.enabled or run is None:
            return
        s = setup
        self.console.print(
            f"[bold]gemfuse tune[/] {run.base.name} ({run.target.family.name}) on {s.device} {str(s.dtype)[6:]}"
            f"{f' x{s.world}' if s.world > 1 else ''}: {len(run.train_rows)} rows"
            f"{f' + {len(run.val_rows)} validation' if run.val_rows else ''}, {s.total} steps, "
            f"LoRA r={s.config.lora.r} on {len(run.modules)} modules ({s.trainable:,} parameters)")
        self.console.print(f"memory estimate: {run.estimate.summary()}")
        if run.estimate.warning:
            self.console.print(f"[yellow]warning: {run.estimate.warning}[/]")
        if state.step:
            self.console.print(f"resumed at step {state.step} from {run.run_dir / 'checkpoints'}")
        if self.live:
            self.progress = Progress(TextColumn("step {task.completed}/{task.total}"), BarColumn(),
                                     TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
                                     console=self.console, transient=False)
            self.task = self.progress.add_task("train", total=s.total, completed=state.step, info="")
            self.progress.start()

    def stepped(self, setup: Setup, state: State, loss: float, norm: float) -> None:
        if not self.enabled:
            return
        seconds = time.perf_counter() - self.started_at
        done = state.step - self.first_step
        rate = (state.tokens - self.tokens_at_start) / seconds if seconds else 0.0
        info = f"loss {loss:.4f}  {rate:,.0f} tok/s  {memory_used(setup.device)}"
        if self.progress is not None:
            self.progress.update(self.task, completed=state.step, info=info)
        elif state.step % setup.config.run.log_every == 0 or state.step == setup.total:
            remaining = seconds / max(done, 1) * (setup.total - state.step)
            print(f"step {state.step}/{setup.total}  {info}  eta {remaining:,.0f}s", file=sys.stderr, flush=True)

    def skipped(self, setup: Setup, state: State, why: str) -> None:
        self.note(f"[yellow]step {state.step}: {why}; skipped, the weights were not changed[/]")

    def validated(self, setup: Setup, state: State, value: float) -> None:
        self.note(f"step {state.step}: validation loss {value:.4f}")

    def checkpoint(self, setup: Setup, state: State) -> None:
        if self.run is not None:
            self.note(f"checkpoint: {self.run.run_dir / 'checkpoints' / f'step-{state.step:06d}'}")

    def diverged(self, setup: Setup, state: State, result: Result, reason: str) -> str | None:
        self.close()
        return None

    def note(self, text: str) -> None:
        if self.enabled:
            self.console.print(text)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def finished(self, setup: Setup, state: State, result: Result) -> None:
        self.close()
        if not self.enabled:
            return
        if result.interrupted:
            self.console.print(f"[yellow]stopped by {state.stopped_by} at step {result.steps}[/]; continue with "
                               f"`gemfuse tune --resume {result.run}`")
            return
        best = f", best validation loss {result.best_val_loss:.4f}" if result.best_val_loss is not None else ""
        if result.skipped_steps:
            best += f"; {result.skipped_steps} steps skipped (not finite), see metrics.jsonl"
        loss = f"{result.train_loss:.4f}" if result.train_loss is not None else "n/a"
        self.console.print(f"[green]done[/]: {result.steps} steps in {result.seconds:,.0f}s, {result.tokens:,} "
                           f"supervised tokens, final loss {loss}{best}\nadapter: {result.adapter}\n"
                           f"try it: gemfuse ask -m {result.run} \"...\"")
