"""The way in: `train(config)` builds the Setup, restores the State of a resumed run, and runs the loop with its
hooks (the run folder, the progress display, signals, the caller's `on_step`).

- The data order is a pure function of (seed, epoch); with the step counter it fixes the data position, so a
  resumed run sees exactly the batches an uninterrupted one would.
- SIGINT / SIGTERM finish the step in flight, write a checkpoint and stop; a second signal stops at once.
- Several processes (`torchrun --nproc-per-node N` or `accelerate launch`) split each step's batch and sum
  gradients, with the same config and no code change.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import SettingError
from ..shapes import read_manifest
from .config import TuneConfig, load_tune_config
from .loop import Hooks, State, loop
from .progress import Reporter
from .run_folder import is_run
from .run_writer import RunWriter, restore
from .runtime import DataError, DivergedError, Result, Stop, distributed
from .setup import Setup, setup

__all__ = ["DataError", "DivergedError", "Result", "resume", "train"]


class SignalStop(Hooks):
    def __init__(self, stop: Stop):
        self.stop = stop

    def stop_requested(self, setup: Setup, state: State) -> str | None:
        return self.stop.requested


class Callback(Hooks):
    """`on_step(step, loss)` after every step that changed the weights; True stops the run as a signal would."""

    def __init__(self, on_step: Callable[[int, float], bool | None]):
        self.on_step = on_step
        self.asked = False

    def stepped(self, setup: Setup, state: State, loss: float, norm: float) -> None:
        self.asked = bool(self.on_step(state.step, loss)) or self.asked

    def stop_requested(self, setup: Setup, state: State) -> str | None:
        return "on_step" if self.asked else None


def train(config: TuneConfig | str | Path, overrides: list[str] | None = None, *, resume: bool = False,
          console=None, on_step=None) -> Result:
    """Fine-tune per `config` (a TuneConfig or a TOML path); with `resume`, continue its run folder.
    `on_step(step, loss)` is called after every step; returning True stops the run as a signal would
    (checkpoint, then return), for early stopping by the caller's own rule."""
    if not isinstance(config, TuneConfig):
        config = load_tune_config(config, overrides)
    rank = distributed()[0]
    reporter = Reporter(console, enabled=rank == 0 and config.run.progress)
    with Stop() as stop:
        try:
            prepared = setup(config, resume=resume, warn=reporter.warnings)
            run = prepared.run
            assert run is not None, "setup() describes the run it sets up"
            reporter.describe(run)
            state = restore(prepared, run) if resume else State()
            hooks: list[Hooks] = [RunWriter(run), reporter, SignalStop(stop)]
            if on_step is not None:
                hooks.append(Callback(on_step))
            return loop(prepared, hooks, state)
        finally:
            _close_distributed()


def _close_distributed() -> None:
    if distributed()[1] > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def resume(run: str | Path, overrides: list[str] | None = None, console=None) -> Result:
    """Continue the run in folder `run` from its latest checkpoint, with its own config (and `overrides`)."""
    if not is_run(run):
        raise SettingError("run", Path(run), "not a run folder (no manifest.json)", option="--resume")
    manifest = read_manifest(run)
    config = load_tune_config(None, overrides, base={**manifest["config"], "out": str(run)})
    return train(config, resume=True, console=console)
