"""What a Hugging Face model takes and how its inputs are prepared: modalities from its config, and its
tokenizer or processor (with PIL image processing). Shared by the data checks, the backend and the tuner."""

from __future__ import annotations

import json
from pathlib import Path


def modalities_of(config: dict) -> frozenset[str]:
    """What a model takes, from its config (a vision or audio tower beside the text model)."""
    return frozenset({"text"} | ({"image"} if config.get("vision_config") else set())
                     | ({"audio"} if config.get("audio_config") else set()))


def declared_modalities(config_file: Path) -> frozenset[str]:
    """Modalities from a local config.json, so listings and input checks need not load the weights."""
    try:
        return modalities_of(json.loads(config_file.read_text()))
    except (OSError, ValueError):
        return frozenset({"text"})


def load_processor(path: str, modalities: frozenset[str], **kwargs):
    """The tokenizer of a text model, or the processor of a multimodal one with a PIL image side: torchvision's
    processors give different pixels on CPU, and here they cannot run at all. Gemma 4's video processor has no
    PIL backend, so only its image side is swapped."""
    from ._torchvision import import_transformers

    transformers = import_transformers()
    if modalities == {"text"}:
        return transformers.AutoTokenizer.from_pretrained(path, **kwargs)
    try:
        return transformers.AutoProcessor.from_pretrained(path, backend="pil", **kwargs)
    except (ImportError, TypeError, ValueError):
        processor = transformers.AutoProcessor.from_pretrained(path, **kwargs)
    if getattr(processor, "image_processor", None) is not None and "Pil" not in type(processor.image_processor).__name__:
        processor.image_processor = transformers.AutoImageProcessor.from_pretrained(path, backend="pil", **kwargs)
    return processor
