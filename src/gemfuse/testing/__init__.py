"""Tiny random-weight Gemma 3, 3n and 4 models with an offline tokenizer and processor, built in seconds,
and small media files, for tests and demos. Nothing here touches the network.

    from gemfuse.testing import build_tiny_model
    folder = build_tiny_model("gemma3", tmp_path / "tiny-gemma3")
"""

from __future__ import annotations

import importlib
from pathlib import Path

FAMILIES = ("gemma3", "gemma3n", "gemma4")


def build_tiny_model(family: str, folder: str | Path, seed: int = 0) -> Path:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    from .._torchvision import import_transformers

    import_transformers()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return importlib.import_module(f".{family}", __name__).build(folder, seed=seed)
