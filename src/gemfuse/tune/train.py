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

from pathlib import Path

from ..errors import ConfigError
from .config import TuneConfig, load_tune_config
from .runtime import DataError, DivergedError, Result
from .session import Session

__all__ = ["DataError", "DivergedError", "Result", "resume", "train"]


def train(config: TuneConfig | str | Path, overrides: list[str] | None = None, *, resume: bool = False,
          console=None, on_step=None) -> Result:
    """Fine-tune per `config` (a TuneConfig or a TOML path); with `resume`, continue its run folder.
    `on_step(step, loss)` is called after every step; returning True stops the run as a signal would
    (checkpoint, then return), for early stopping by the caller's own rule."""
    if not isinstance(config, TuneConfig):
        config = load_tune_config(config, overrides)
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
