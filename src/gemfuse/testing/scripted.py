"""A scriptable in-memory model for deterministic fusion tests: queued answers, delays, failures.

    registry = scripted_registry({"a": ScriptedModel(["4", "5"], delay_s=0.05), "j": ScriptedModel(['{"best": 1}'])})
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable, Sequence

from ..config import Config, ConfigFile
from ..messages import Message
from ..models.base import GenerateOptions, Model, StreamChunk, TokenLogprob, Usage
from ..models.spec import ModelSpec, Price
from ..registry import Registry
from ..tool_calls import ToolCall

Answer = str | list[ToolCall]  # text, or function calls
Reply = (str | BaseException | Callable[[Sequence[Message]], Answer]
         | Callable[[Sequence[Message], GenerateOptions], Answer])


class ScriptedModel(Model):
    backend = "scripted"

    def __init__(self, replies: Sequence[Reply] | Reply = "ok", *, delay_s: float = 0.0, name: str = "scripted",
                 price: Price | None = None, concurrency: int | None = None, chunk_words: bool = True,
                 certainty: float | Callable[[Sequence[Message]], float] | None = None,
                 logprobs: Callable[[Sequence[Message]], list[TokenLogprob]] | None = None):
        super().__init__(name)
        self.replies = list(replies) if isinstance(replies, list | tuple) else [replies]
        self.delay_s = delay_s
        self.spec = ModelSpec(backend="scripted", price=price, concurrency=concurrency)
        self.chunk_words = chunk_words
        self.certainty = certainty  # each word's log-probability when logprobs are asked for; None: it gives none
        self.logprobs = logprobs  # or the answer's tokens, figures and all, given whole
        self.calls: list[list[Message]] = []  # what each call was asked
        self.options: list[GenerateOptions] = []
        self.cancelled = 0

    def enqueue(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def _next(self, messages: Sequence[Message], options: GenerateOptions) -> Answer:
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]  # the last one repeats
        if isinstance(reply, BaseException):
            raise reply
        if not callable(reply):
            return str(reply)
        if len(inspect.signature(reply).parameters) > 1:  # reply(messages, options): a seed's own answer
            return reply(messages, options)  # type: ignore[call-arg]
        return reply(messages)  # type: ignore[call-arg]

    async def stream(self, messages: Sequence[Message], options: GenerateOptions | None = None
                     ) -> AsyncIterator[StreamChunk]:
        self.calls.append(list(messages))
        self.options.append(options or GenerateOptions())
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        text = self._next(messages, options or GenerateOptions())
        if isinstance(text, list):  # function calls, whole in one chunk as local models send them
            yield StreamChunk(tool_calls=text)
            yield StreamChunk(finish_reason="tool_calls", usage=Usage(sum(len(m.text.split()) for m in messages),
                                                                       sum(len(c.arguments.split()) for c in text)))
            return
        pieces = [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))] if self.chunk_words else [text]
        for piece in pieces:
            yield StreamChunk(text=piece)
        prompt = sum(len(m.text.split()) for m in messages)
        logprobs = None
        if (options and options.logprobs) and self.logprobs is not None:
            logprobs = self.logprobs(messages)
        elif (options and options.logprobs) and self.certainty is not None:
            value = self.certainty(messages) if callable(self.certainty) else self.certainty
            logprobs = [TokenLogprob(piece, value) for piece in pieces]
        yield StreamChunk(finish_reason="stop", usage=Usage(prompt, len(text.split())), logprobs=logprobs)


def scripted_registry(models: dict[str, ScriptedModel], presets: dict | None = None,
                      with_builtins: bool = False) -> Registry:
    """A registry holding exactly these models (and presets), with no config file behind it; with
    `with_builtins`, the built-in models beside them (a scripted teacher, a real student)."""
    from ..models.builtin import builtin_specs

    for name, model in models.items():
        model.name = name
    specs: dict[str, ModelSpec] = dict(builtin_specs()) if with_builtins else {}
    specs.update({n: m.spec for n, m in models.items() if m.spec is not None})
    registry = Registry(Config(None, ConfigFile(), specs, presets or {}))
    registry._models.update(models)
    return registry
