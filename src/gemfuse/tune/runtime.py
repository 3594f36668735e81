"""What one training process needs around its loop: its rank, seeds, signal handling, optimizer and learning-rate
schedule, and the Result it returns. Below the set-up, the loop and the way in (setup.py, loop.py, train.py)."""

from __future__ import annotations

import math
import os
import random
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GemfuseError
from .config import TuneConfig


class DataError(GemfuseError):
    """The training data has errors; the message lists them with file and line."""


class DivergedError(GemfuseError):
    """Several steps in a row had a non-finite loss or gradient; none of them reached the weights."""


@dataclass
class Result:
    run: Path | None  # None for a loop driven without a run folder
    adapter: Path | None
    steps: int
    interrupted: bool
    train_loss: float | None
    best_val_loss: float | None
    tokens: int
    seconds: float
    skipped_steps: int = 0  # steps whose loss or gradient was not finite: the weights were left as they were


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


def make_optimizer(params, config: TuneConfig, device: str, fused: bool = True):
    import torch

    settings: dict[str, Any] = dict(lr=config.train.lr, weight_decay=config.train.weight_decay)
    if fused and device in ("cuda", "cpu"):
        try:
            return torch.optim.AdamW(params, fused=True, **settings)
        except (RuntimeError, TypeError, ValueError):  # older torch or a dtype fused kernels do not take
            pass
    return torch.optim.AdamW(params, **settings)


def distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun / accelerate's environment."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))

