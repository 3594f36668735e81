"""A fusion preset behind the ordinary Model interface (`fusion/<preset>`), so the CLI, the server and other
code use it like any model. It cannot be a member of another fusion."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from ..messages import Message
from ..models.base import Completion, GenerateOptions, Model, StreamChunk
from .api import afuse, fusion_events, resolve_preset
from .events import Delta, Done
from .preset import FusionPreset
from .registry import ModelRegistry
from .settings import asked_of_members, options_set
from .trace import FusionResult


class FusionModel(Model):
    backend = "fusion"

    def __init__(self, name: str, preset: FusionPreset, registry: ModelRegistry):
        super().__init__(name)
        self.preset = preset
        self.registry = registry
        self.modalities = frozenset({"text", "image", "audio"})  # each member checks its own

    def where(self) -> str:
        judge = f" -> {self.preset.judge}" if self.preset.judge else ""
        return f"{self.preset.mode}: {', '.join(m.model for m in self.preset.members())}{judge}"

    def _fusion_args(self, options: GenerateOptions | None) -> dict:
        """The preset with the options the caller set (settings.options_set), checked once."""
        resolved = resolve_preset(self.registry, preset=self.preset, **options_set(options))
        return dict(resolved=resolved, registry=self.registry, seed=options.seed if options else None,
                    **asked_of_members(options))

    async def fuse(self, messages: Sequence[Message], options: GenerateOptions | None = None) -> FusionResult:
        return await afuse(messages, **self._fusion_args(options))

    async def generate(self, messages: Sequence[Message], options: GenerateOptions | None = None) -> Completion:
        result = await self.fuse(messages, options)
        return Completion(text=result.text, model=self.name, finish_reason="tool_calls" if result.tool_calls else "stop",
                          usage=result.trace.usage, latency_s=result.trace.phases.get("total", 0.0),
                          trace=result.to_dict(), tool_calls=result.tool_calls)

    async def stream(self, messages: Sequence[Message], options: GenerateOptions | None = None
                     ) -> AsyncIterator[StreamChunk]:
        """The fused answer as it is written (merge) or once chosen (vote, best-of); usage at the end."""
        async for event in fusion_events(messages, **self._fusion_args(options)):
            if isinstance(event, Delta):
                yield StreamChunk(text=event.text)
            elif isinstance(event, Done):
                calls = event.result.tool_calls
                yield StreamChunk(finish_reason="tool_calls" if calls else "stop", usage=event.result.trace.usage,
                                  tool_calls=calls)
