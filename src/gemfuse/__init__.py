"""gemfuse: fine-tune, run, serve and fuse your own models."""

from ._sync import run_sync
from .api import afuse, fuse, get_model
from .errors import GemfuseError
from .fusion import FusionPreset, FusionResult
from .messages import AudioPart, ImagePart, Message, TextPart
from .models.base import Completion, GenerateOptions, Model, StreamChunk, Usage

__version__ = "0.1.0"

__all__ = ["AudioPart", "Completion", "FusionPreset", "FusionResult", "GemfuseError", "GenerateOptions", "ImagePart",
           "Message", "Model", "StreamChunk", "TextPart", "Usage", "afuse", "fuse", "get_model", "run_sync",
           "__version__"]
