"""A fine-tune's run folder is a model: its manifest names the base model and the chat template it was trained
with, and its `adapter/` folder holds the LoRA weights. Read here from the files alone (no import of the tuner)."""

from __future__ import annotations

import json
from pathlib import Path

from ..files import adapter_folder
from .spec import Price
from .transformers import TransformersSpec


def run_spec(name: str) -> TransformersSpec | None:
    """The spec of the run folder `name`, or None when `name` is not a finished run folder."""
    folder = Path(name).expanduser()
    manifest = folder / "manifest.json"
    if not manifest.is_file() or not (adapter_folder(folder) / "adapter_config.json").is_file():
        return None
    info = json.loads(manifest.read_text())
    written = info.get("config", {}).get("model") or info["base_model"]  # the base as the user named it
    return TransformersSpec(path=info["base_model"], adapter=str(adapter_folder(folder).resolve()),
                            chat_template=info.get("chat_template"), concurrency=1, price=Price(input=0, output=0),
                            description=f"LoRA fine-tune of {written} ({folder})")
