"""A fusion preset behind the ordinary Model interface (`fusion/<preset>`), so the CLI, the server and other
code use it like any model. It cannot be a member of another fusion."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from ..messages import Message
from ..models.base import Completion, GenerateOptions, Model, StreamChunk
from .api import FusionResult, afuse
from .preset import FusionPreset


class FusionModel(Model):
    backend = "fusion"

    def __init__(self, name: str, preset: FusionPreset, registry):
        super().__init__(name)
        self.preset = preset
        self.registry = registry
        self.modalities = frozenset({"text", "image", "audio"})  # each member checks its own

    def where(self) -> str:
        judge = f" -> {self.preset.judge}" if self.preset.judge else ""
        return f"{self.preset.mode}: {', '.join(m.model for m in self.preset.members())}{judge}"

    def _preset_for(self, options: GenerateOptions | None) -> FusionPreset:
        if options is None:
            return self.preset
        update = {"max_tokens": options.max_tokens}
        if options.temperature is not None:
            update["temperature"] = options.temperature
        return self.preset.model_copy(update=update)

    async def fuse(self, messages: Sequence[Message], options: GenerateOptions | None = None,
                   on_event=None) -> FusionResult:
        seed = options.seed if options else None
        return await afuse(messages, preset=self._preset_for(options), registry=self.registry, on_event=on_event,
                           seed=seed)

    async def generate(self, messages: Sequence[Message], options: GenerateOptions | None = None) -> Completion:
        result = await self.fuse(messages, options)
        return Completion(text=result.text, model=self.name, finish_reason="stop", usage=result.trace.usage,
                          latency_s=result.trace.phases.get("total", 0.0), trace=result.to_dict())

    async def stream(self, messages: Sequence[Message], options: GenerateOptions | None = None
                     ) -> AsyncIterator[StreamChunk]:
        """The fused answer as it is written (merge) or once chosen (vote, best-of); usage at the end."""
        queue: asyncio.Queue = asyncio.Queue()
        task = asyncio.create_task(self.fuse(messages, options, on_event=queue.put))
        task.add_done_callback(lambda t: queue.put_nowait({"type": "finished"}))
        try:
            while True:
                event = await queue.get()
                if event["type"] == "delta":
                    yield StreamChunk(text=event["text"])
                elif event["type"] == "finished":
                    result = task.result()  # raises the fusion's error, if any
                    yield StreamChunk(finish_reason="stop", usage=result.trace.usage)
                    return
        finally:
            if not task.done():
                task.cancel()
