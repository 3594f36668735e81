"""POST /v1/completions, the legacy text API: each prompt is answered as one user turn (the model's chat
template applies, as for chat), whole or streamed as `text_completion` chunks."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..models.base import Temperature, TopP
from .chat import chat_chunks, sse
from .schemas import ChatRequest

LEGACY_MAX_TOKENS = 16  # OpenAI's documented default for this endpoint


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    prompt: str | list[str]
    max_tokens: int = Field(LEGACY_MAX_TOKENS, ge=1)
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: int = Field(1, ge=1, le=8)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    echo: bool = False
    user: str | None = None  # accepted, no effect
    frequency_penalty: float | None = None  # accepted, no effect
    presence_penalty: float | None = None  # accepted, no effect

    @model_validator(mode="after")
    def _one_prompt_when_streamed(self) -> CompletionRequest:
        if self.stream and isinstance(self.prompt, list) and len(self.prompt) != 1:
            raise ValueError("prompt: one prompt when stream is true")
        return self

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def to_chat(self, prompt: str) -> ChatRequest:
        chat = {"model": self.model, "messages": [{"role": "user", "content": prompt}], "max_tokens": self.max_tokens,
                "n": self.n, "stream": self.stream, "stop": self.stop}
        for key in ("temperature", "top_p", "seed"):
            if getattr(self, key) is not None:
                chat[key] = getattr(self, key)
        if self.stream:
            chat["stream_options"] = {"include_usage": True}
        return ChatRequest.model_validate({k: v for k, v in chat.items() if v is not None})


def completion_id() -> str:
    return f"cmpl-{uuid.uuid4().hex[:24]}"


def text_body(request: CompletionRequest, answers: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """`answers`: (prompt, the chat completion body of it) for each prompt."""
    choices: list[dict[str, Any]] = []
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    for prompt, chat in answers:
        for choice in chat["choices"]:
            text = (prompt if request.echo else "") + (choice["message"]["content"] or "")
            choices.append({"text": text, "index": len(choices), "logprobs": None,
                            "finish_reason": choice["finish_reason"]})
        usage = {k: usage[k] + chat["usage"][k] for k in usage}
    return {"id": completion_id(), "object": "text_completion", "created": int(time.time()), "model": request.model,
            "choices": choices, "usage": usage}


async def text_events(request: CompletionRequest, chat_events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The chat stream's chunks as `text_completion` chunks (usage last when asked for)."""
    ident, created = completion_id(), int(time.time())
    include_usage = bool((request.stream_options or {}).get("include_usage"))

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        body = {"id": ident, "object": "text_completion", "created": created, "model": request.model,
                "choices": choices, **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()

    if request.echo:
        yield chunk([{"text": request.prompts()[0], "index": 0, "logprobs": None, "finish_reason": None}])
    async for event in chat_chunks(chat_events):
        if "error" in event:
            yield sse(event)
            break
        for choice in event.get("choices") or []:
            text = (choice.get("delta") or {}).get("content") or ""
            if text or choice.get("finish_reason"):
                yield chunk([{"text": text, "index": 0, "logprobs": None, "finish_reason": choice.get("finish_reason")}])
        if event.get("usage") and include_usage:
            yield chunk([], usage=event["usage"])
    yield b"data: [DONE]\n\n"
