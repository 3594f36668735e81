"""Per-family knowledge, found by convention: `families/{model_type}.py` exports a `FAMILY` object with the chat
markers, media token costs, audio limits and LoRA target presets. Nothing else branches on the family."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from ..errors import ConfigError

ALIASES = {"gemma3_text": "gemma3", "gemma4_text": "gemma4", "gemma4_unified": "gemma4", "gemma3n_text": "gemma3n"}
KNOWN = ("gemma3", "gemma3n", "gemma4")


@dataclass(frozen=True)
class Family:
    name: str
    chat_template: str  # used when a tokenizer ships none
    image_placeholder: str | None  # what the template writes for an image part
    audio_placeholder: str | None
    image_tokens: int  # soft tokens per image, plus markers, when the processor is not at hand
    audio_tokens_per_second: float = 0.0
    audio_max_seconds: float | None = None
    sampling_rate: int = 16_000
    image_min_side: int = 32
    lora_targets: dict[str, list[str]] = field(default_factory=dict)
    # linear layers whose weights the model itself edits in training: never loaded in 4-bit or 8-bit
    keep_full_precision: tuple[str, ...] = ()

    @property
    def takes_audio(self) -> bool:
        return self.audio_placeholder is not None


def family(model_type: str) -> Family:
    name = ALIASES.get(model_type, model_type)
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError:
        raise ConfigError(f"no gemfuse support for model type {model_type!r}; supported: {', '.join(KNOWN)}") from None
    return module.FAMILY


LINEAR_TEXT = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
