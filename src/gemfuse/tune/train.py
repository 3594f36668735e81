"""The training loop: LoRA on a Gemma, loss on assistant tokens only, never losing work.

- Gradient accumulation divides every micro-batch's summed loss by the supervised tokens of the *whole*
  accumulated step (all ranks), so 4 micro-batches of 1 equal one batch of 4.
- The data order is a pure function of (seed, epoch); with the step counter it fixes the data position, so a
  resumed run sees exactly the batches an uninterrupted one would.
- SIGINT / SIGTERM finish the step in flight, write a checkpoint and stop; a second signal stops at once.
- Several processes (`torchrun --nproc-per-node N` or `accelerate launch`) split each step's batch and sum
  gradients, with the same config and no code change.
"""

from __future__ import annotations

import math
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, GemfuseError
from .config import TuneConfig, load_tune_config


class DataError(GemfuseError):
    """The training data has errors; the message lists them with file and line."""


@dataclass
class Result:
    run: Path
    adapter: Path | None
    steps: int
    interrupted: bool
    train_loss: float | None
    best_val_loss: float | None
    tokens: int
    seconds: float


class Stop:
    """SIGINT/SIGTERM: the first asks the loop to checkpoint and stop; the second interrupts at once."""

    def __init__(self):
        self.requested: str | None = None
        self._previous = {}

    def __enter__(self):
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: no handlers, nothing to restore
            self._previous.clear()
        return self

    def _handle(self, signum, frame):
        if self.requested:
            signal.default_int_handler(signum, frame)
        self.requested = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def schedule_factor(step: int, total: int, warmup: int, kind: str) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    if kind == "constant" or total <= warmup:
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * progress)) if kind == "cosine" else max(0.0, 1 - progress)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(params, config: TuneConfig, device: str):
    import torch

    settings = dict(lr=config.train.lr, weight_decay=config.train.weight_decay)
    if device in ("cuda", "cpu"):
        try:
            return torch.optim.AdamW(params, fused=True, **settings)
        except (RuntimeError, TypeError, ValueError):  # older torch or a dtype fused kernels do not take
            pass
    return torch.optim.AdamW(params, **settings)


def train(config: TuneConfig | str | Path, overrides: list[str] | None = None, *, resume: bool = False,
          console=None, on_step=None) -> Result:
    """Fine-tune per `config` (a TuneConfig or a TOML path); with `resume`, continue its run folder.
    `on_step(step, loss)` is called after every step; returning True stops the run as a signal would
    (checkpoint, then return), for early stopping by the caller's own rule."""
    if not isinstance(config, TuneConfig):
        config = load_tune_config(config, overrides)
    from .session import Session

    with Session(config, resume=resume, console=console, on_step=on_step) as session:
        return session.run()


def resume(run: str | Path, overrides: list[str] | None = None, console=None) -> Result:
    """Continue the run in folder `run` from its latest checkpoint, with its own config (and `overrides`)."""
    from .run_folder import is_run, read_manifest

    if not is_run(run):
        raise ConfigError(f"--resume {run}: not a run folder (no manifest.json)")
    manifest = read_manifest(run)
    config = load_tune_config(None, overrides, base={**manifest["config"], "out": str(run)})
    return train(config, resume=True, console=console)


def distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun / accelerate's environment."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def elapsed(start: float) -> float:
    return time.perf_counter() - start
