"""Checkpoints that survive a crash: adapter, optimizer, scheduler, RNG states and the step (which fixes the
data position), written to a temporary folder and renamed, so a reader sees a whole checkpoint or none.

    run/checkpoints/step-000040/adapter_model.safetensors, adapter_config.json, state.pt
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from ..errors import ConfigError
from ..paths import published_folder

STATE = "state.pt"
TRAINABLE = "trainable.pt"  # a sharded run's trainable weights in full, by parameter name (tune/shard.py)


def rng_state() -> dict:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run: Path, model, optimizer, scheduler, step: int, extra: dict, keep: int = 2,
                    gathered: tuple[dict, dict] | None = None) -> Path:
    """`gathered`: a sharded run's full trainable weights and optimizer state (shard.gathered_*)."""
    import torch

    final = run / "checkpoints" / f"step-{step:06d}"
    with published_folder(final) as staging:
        if gathered is None:
            model.save_pretrained(staging)
            optimizer_state = optimizer.state_dict()
        else:
            weights, optimizer_state = gathered
            model.save_pretrained(staging, state_dict=weights)  # an ordinary PEFT adapter
            torch.save(weights, staging / TRAINABLE)
        torch.save({"step": step, "optimizer": optimizer_state, "scheduler": scheduler.state_dict(),
                    "rng": rng_state(), "sharded": gathered is not None, **extra}, staging / STATE)
    for old in checkpoints(run)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def trainable_weights(folder: Path) -> dict:
    """A sharded run's checkpoint's trainable weights in full, by parameter name."""
    import torch

    return torch.load(folder / TRAINABLE, map_location="cpu", weights_only=False)


def checkpoints(run: Path) -> list[Path]:
    """Whole checkpoints, oldest first (temporary folders of an interrupted save are not listed)."""
    folder = Path(run) / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.name.startswith("step-") and (p / STATE).is_file())


def load_checkpoint(folder: Path, model, optimizer, scheduler) -> dict:
    """Restore adapter weights, optimizer, scheduler and RNG states in place; returns the saved state."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from .shard import is_sharded, restore_optimizer

    state = torch.load(folder / STATE, map_location="cpu", weights_only=False)
    sharded_now = any(is_sharded(p) for p in model.parameters())
    if bool(state.get("sharded")) != sharded_now:
        raise ConfigError(f"{folder}: written by a run with train.shard = {'fsdp' if state.get('sharded') else 'none'}; "
                          "resume it with the same train.shard")
    if sharded_now:  # its weights went in before sharding (setup: shard.load_whole)
        restore_optimizer(model, optimizer, state["optimizer"])
    else:
        result = set_peft_model_state_dict(model, load_file(str(folder / "adapter_model.safetensors")))
        unexpected = getattr(result, "unexpected_keys", [])
        if unexpected:
            raise ConfigError(f"{folder}: checkpoint does not match this model ({len(unexpected)} unexpected "
                              "weights): resume it with the base model and LoRA settings it was trained with")
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return state
