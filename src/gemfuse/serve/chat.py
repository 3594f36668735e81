"""POST /v1/chat/completions: one model or a fusion, whole or streamed as server-sent events."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from ..capture import CaptureWriter, fusion_name, keep_fusion, keep_model
from ..config import ServerSettings
from ..errors import MessageError
from ..fusion.api import afuse, fusion_events, resolve_preset
from ..fusion.events import CallDone, Delta, Done
from ..fusion.preset import FUSION_PREFIX, FusionPreset
from ..fusion.registry import ModelRegistry
from ..fusion.settings import asked_of_members, given_settings, options_set
from ..fusion.trace import Call, FusionResult
from ..messages import Message, parse_messages
from ..models.base import Completion, GenerateOptions, Usage
from .errors import QueueFull, describe
from .fetch import resolve_remote_images
from .load import QueueGate
from .schemas import ChatRequest, call_deltas, chunk_body, completion_body, completion_id

log = logging.getLogger("gemfuse.serve")

def sse(data: dict | str) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, default=str)}\n\n".encode()


def fusion_settings(request: ChatRequest) -> dict[str, Any] | None:
    """The fusion this request asks for (a `fusion/<preset>` model or a `fusion` block), or None."""
    block = request.fusion
    if block is None:
        return {"preset": request.model} if request.model.startswith(FUSION_PREFIX) else None
    named = request.model.startswith(FUSION_PREFIX) and not block.analysis_models
    preset = block.preset or (request.model if named else None)
    if not block.analysis_models and not preset:
        raise MessageError("fusion: give analysis_models (the pool) or a preset")
    settings = {**given_settings(block.model_dump()), "preset": preset, "pool": block.analysis_models,
                "judge": block.model or block.judge, "mode": block.mode}  # no mode: the preset's rule (preset.py)
    return {k: v for k, v in settings.items() if v is not None}


def call_event(call: Call) -> dict[str, Any]:
    return {"role": call.role, "member": call.member, "model": call.model, "round": call.round, "ok": call.ok,
            "text": call.text, "error": call.error, "message": call.message, "latency_s": round(call.latency_s, 4),
            "started_s": round(call.started_s, 4), "ended_s": round(call.ended_s, 4),
            "usage": {"prompt_tokens": call.usage.prompt_tokens, "completion_tokens": call.usage.completion_tokens},
            "cost": call.cost, "certainty": call.certainty}


@dataclass(frozen=True)
class Fusion:
    """A request's fusion, resolved once: the checked preset (the request's own answer length and temperature
    over its preset's, the fusion block over both), the judge's shuffle seed, and the name it is kept under."""

    preset: FusionPreset
    seed: int | None
    name: str


class ChatHandler:
    def __init__(self, registry: ModelRegistry, settings: ServerSettings, capture: CaptureWriter | None = None):
        self.registry = registry
        self.settings = settings
        self.gate = QueueGate(registry, settings)
        self.capture = capture

    async def keep_model_answer(self, name: str, messages: list[Message], completion: Completion, ident: str,
                                options: GenerateOptions) -> None:
        await self._keep(keep_model, messages, completion, name=name, price=self.registry.spec(name).price,
                         source="serve", request_id=ident, options=options)

    async def keep_fusion_answer(self, name: str, messages: list[Message], result: FusionResult, ident: str,
                                 options: GenerateOptions) -> None:
        await self._keep(keep_fusion, messages, result, name=name, source="serve", request_id=ident, options=options)

    async def _keep(self, keep: Callable[..., bool], messages: list[Message], answer: Any, **details: Any) -> None:
        """Off the event loop; a failing capture (a full disk) is logged and the answer still reaches the client."""
        if self.capture is None:
            return
        try:
            await asyncio.to_thread(keep, self.capture, messages, answer, **details)
        except OSError as exc:
            log.warning("capture to %s failed: %s", self.capture.folder, exc)

    async def prepare(self, request: ChatRequest) -> tuple[list[Message], GenerateOptions, Fusion | None]:
        messages = parse_messages(request.messages)
        options = GenerateOptions(**request.options())
        asked = fusion_settings(request)
        fusion = None
        if asked is None:
            model = self.registry.get(request.model)  # unknown names fail here, with close names
            remote = type(model).fetches_media_urls
        else:  # resolved and checked once: a bad pool or preset fails now, before any response has started
            settings = {**options_set(options), **{k: v for k, v in asked.items() if k != "seed"}}
            seed = asked.get("seed", options.seed)  # the fusion block's, else the request's own
            fusion = Fusion(resolve_preset(self.registry, **settings), seed, fusion_name(asked.get("preset"),
                                                                                      request.model))
            if request.n > 1:
                raise MessageError("n: a fusion gives one fused answer; send the request n times for more")
            remote = False
        if not remote:
            messages = await resolve_remote_images(messages, self.settings)
        if request.stream and request.n > 1:
            raise MessageError("n > 1 is not supported with stream = true")
        return messages, options, fusion

    # -- whole answers ----------------------------------------------------------------------------------------
    async def complete(self, request: ChatRequest) -> dict[str, Any]:
        messages, options, fusion = await self.prepare(request)
        ident = completion_id()
        if fusion is not None:
            result = await afuse(messages, registry=self.registry, resolved=fusion.preset, seed=fusion.seed,
                                 **asked_of_members(options))
            await self.keep_fusion_answer(fusion.name, messages, result, ident, options)
            fused = Completion(result.text, request.model, "tool_calls" if result.tool_calls else "stop",
                               logprobs=result.logprobs if options.logprobs else None, tool_calls=result.tool_calls)
            return completion_body(ident, request.model, [fused], result.trace.usage, fusion=result.to_dict())
        model = self.registry.get(request.model)
        async with self.gate.held(request.model) as held:
            choices: list[Completion] = []
            usage = Usage()
            for i in range(request.n):
                seeded = options if options.seed is None or i == 0 else options.model_copy(update={"seed": options.seed + i})
                completion = await model.generate(messages, seeded)
                choices.append(completion)
                await self.keep_model_answer(request.model, messages, completion, ident, options)
                usage = usage + completion.usage
            held.completion_tokens, held.ok = usage.completion_tokens, True
        notes = [note for c in choices for note in c.notes]
        return completion_body(ident, request.model, choices, usage, notes=notes)

    # -- streams ----------------------------------------------------------------------------------------------
    async def stream(self, request: ChatRequest) -> AsyncIterator[bytes]:
        """Server-sent events. Errors before the first event raise (a proper HTTP status); later ones become
        an error event, since the status line has gone out."""
        messages, options, fusion = await self.prepare(request)
        events = (self._fusion_events(request, messages, options, fusion) if fusion is not None
                  else self._model_events(request, messages, options))
        first = await anext(events)
        return self._with_first(first, events)

    async def _with_first(self, first: bytes, events: AsyncGenerator[bytes]) -> AsyncGenerator[bytes]:
        try:
            yield first
            async for event in events:
                yield event
        except Exception as exc:  # the status line is sent: report in the stream
            _, body = describe(exc)
            yield sse(body)
        finally:
            await events.aclose()
        yield sse("[DONE]")

    async def _model_events(self, request: ChatRequest, messages, options) -> AsyncGenerator[bytes]:
        ident, name = completion_id(), request.model
        model = self.registry.get(name)
        started = time.perf_counter()
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        async with self.gate.held(name) as held:
            stream = model.stream(messages, options)
            try:
                first = await anext(stream)  # errors from loading or the first call surface before any event
            except StopAsyncIteration:
                first = None
            yield sse(chunk_body(ident, name, {"role": "assistant", "content": ""}))
            pending = [first] if first is not None else []
            texts: list[str] = []
            async for chunk in _chain(pending, stream):
                if chunk.text or chunk.logprobs:
                    texts.append(chunk.text)
                    yield sse(chunk_body(ident, name, {"content": chunk.text}, logprobs=chunk.logprobs))
                for delta in call_deltas(chunk.tool_calls or ()):
                    yield sse(chunk_body(ident, name, delta))
                if chunk.finish_reason:  # the answer is whole: kept before the client can go away
                    whole = Completion(text="".join(texts), model=name, finish_reason=chunk.finish_reason,
                                       usage=chunk.usage or Usage(), tool_calls=chunk.tool_calls,
                                       latency_s=chunk.latency_s or time.perf_counter() - started)
                    await self.keep_model_answer(name, messages, whole, ident, options)
                    held.completion_tokens, held.ok = whole.usage.completion_tokens, True
                    notes = {"notes": chunk.notes} if chunk.notes else None
                    yield sse(chunk_body(ident, name, {}, finish=chunk.finish_reason, extra=notes))
                    if include_usage and chunk.usage is not None:
                        yield sse(chunk_body(ident, name, usage=chunk.usage))

    async def _fusion_events(self, request: ChatRequest, messages, options, fusion: Fusion) -> AsyncGenerator[bytes]:
        ident, name = completion_id(), request.model
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        yield sse(chunk_body(ident, name, {"role": "assistant", "content": ""}))
        async for event in fusion_events(messages, registry=self.registry, resolved=fusion.preset, seed=fusion.seed,
                                         **asked_of_members(options)):
            if isinstance(event, CallDone):
                yield sse(chunk_body(ident, name, extra={"fusion_event": call_event(event.call)}))
            elif isinstance(event, Delta):
                yield sse(chunk_body(ident, name, {"content": event.text}))
            elif isinstance(event, Done):
                result = event.result
                await self.keep_fusion_answer(fusion.name, messages, result, ident, options)
                if options.logprobs and result.logprobs is not None:  # the chosen answer's tokens, before the end
                    yield sse(chunk_body(ident, name, {"content": ""}, logprobs=result.logprobs))
                for delta in call_deltas(result.tool_calls or ()):
                    yield sse(chunk_body(ident, name, delta))
                finish = "tool_calls" if result.tool_calls else "stop"
                yield sse(chunk_body(ident, name, {}, finish=finish, extra={"fusion": result.to_dict()}))
                if include_usage:
                    yield sse(chunk_body(ident, name, usage=result.trace.usage))


async def chat_chunks(events: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any]]:
    """A chat stream's events as the chunks they carry (an error event too), up to [DONE]: what the Responses and
    completions endpoints re-tell in their own shapes."""
    async for raw in events:
        data = raw.decode().removeprefix("data: ").strip()
        if data == "[DONE]":
            return
        yield json.loads(data)


async def _chain(first: list, rest: AsyncIterator):
    for item in first:
        yield item
    async for item in rest:
        yield item


__all__ = ["ChatHandler", "QueueFull", "chat_chunks", "sse"]
