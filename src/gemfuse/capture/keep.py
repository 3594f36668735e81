"""Keeping an answer as a training row: one call per kind of answer, used by the server, `gemfuse ask` and
`fuse(capture=...)` alike, with the one rule for the name a fusion is kept under and the writer's own choice
of which models it keeps (`[server] capture_models`)."""

from __future__ import annotations

from collections.abc import Sequence

from ..fusion.preset import FUSION_PREFIX, FusionPreset
from ..fusion.trace import FusionResult
from ..messages import Message
from ..models.base import Completion, GenerateOptions
from ..models.spec import Price
from .provenance import fusion_meta, model_meta
from .writer import CaptureWriter


def fusion_name(preset: str | FusionPreset | None, asked_as: str | None = None) -> str:
    """The name a fusion's answer is kept under: `fusion/<preset>` for a named preset (however it was written),
    else the model name it was asked as, else "fusion"."""
    if isinstance(preset, str):
        return FUSION_PREFIX + preset.removeprefix(FUSION_PREFIX)
    return asked_as or "fusion"


def keep_fusion(writer: CaptureWriter | None, messages: Sequence[Message], result: FusionResult, *, name: str,
                source: str, request_id: str | None = None, options: GenerateOptions | None = None) -> bool:
    """Keep a fusion's answer with its provenance; False when there is no writer or it does not keep `name`."""
    if writer is None or not writer.wants(name):
        return False
    writer.add(messages, result.text, fusion_meta(result, model=name, request_id=request_id, source=source),
               result.tool_calls or (), options)
    return True


def keep_model(writer: CaptureWriter | None, messages: Sequence[Message], completion: Completion, *, name: str,
               price: Price | None, source: str, request_id: str | None = None,
               options: GenerateOptions | None = None) -> bool:
    """Keep one model's answer, with what it cost when the model has a price; False when not kept."""
    if writer is None or not writer.wants(name):
        return False
    usage = completion.usage
    cost = price.cost(usage.prompt_tokens, usage.completion_tokens) if price else None
    writer.add(messages, completion.text, model_meta(completion, model=name, cost=cost, request_id=request_id,
                                                     source=source), completion.tool_calls or (), options)
    return True
