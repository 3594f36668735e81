"""gemfuse: fine-tune, run, serve and fuse your own models.

The names below load on first use, so `import gemfuse.models.base` (a backend plugin's import) does not pull in
fusion, the registry or the config."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "run_sync": "._sync", "afuse": ".api", "fuse": ".api", "aevaluate": ".api", "evaluate": ".api",
    "get_model": ".api", "GemfuseError": ".errors",
    "FusionPreset": ".fusion", "FusionResult": ".fusion", "AudioPart": ".messages", "ImagePart": ".messages",
    "Message": ".messages", "TextPart": ".messages", "Completion": ".models.base", "GenerateOptions": ".models.base",
    "Model": ".models.base", "StreamChunk": ".models.base", "Usage": ".models.base",
}

__all__ = ["AudioPart", "Completion", "FusionPreset", "FusionResult", "GemfuseError", "GenerateOptions", "ImagePart",
           "Message", "Model", "StreamChunk", "TextPart", "Usage", "aevaluate", "afuse", "evaluate", "fuse",
           "get_model", "run_sync", "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'gemfuse' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from ._sync import run_sync
    from .api import aevaluate, afuse, evaluate, fuse, get_model
    from .errors import GemfuseError
    from .fusion import FusionPreset, FusionResult
    from .messages import AudioPart, ImagePart, Message, TextPart
    from .models.base import Completion, GenerateOptions, Model, StreamChunk, Usage
