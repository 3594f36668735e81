"""Wire types of the OpenAI-compatible API (requests validated, responses built) and the server's settings."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..fusion.settings import settings_model
from ..models.base import MaxTokens, Temperature, TopP


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


# An ad-hoc fusion, OpenRouter style (`analysis_models` the pool, `model` the judge), or a preset with any of
# its settings changed: every setting is generated from FusionPreset's fields (gemfuse.fusion.settings).
FusionBlock = settings_model(
    "FusionBlock",
    analysis_models=(list[str] | None, Field(None, min_length=1, description="the pool")),
    model=(str | None, Field(None, description="the judge")),
    preset=(str | None, Field(None, description="start from this preset")))


class ChatRequest(BaseModel):
    """OpenAI chat completion parameters we honour; harmless ones we accept and ignore; anything else is 400."""

    model_config = ConfigDict(extra="forbid")

    model: str
    messages: list[Any] = Field(min_length=1)
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=8)
    stream: bool = False
    stream_options: StreamOptions | None = None
    fusion: FusionBlock | None = None  # type: ignore[valid-type]  # generated from FusionPreset at import
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    # accepted for compatibility, no effect
    user: str | None = None
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)

    @model_validator(mode="after")
    def _top_logprobs_need_logprobs(self) -> ChatRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs: needs logprobs = true")
        return self

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value):
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    def options(self) -> dict[str, Any]:
        """Only what the request set: an unset max_tokens is the model's default, or a fusion preset's own."""
        given = dict(max_tokens=self.max_completion_tokens or self.max_tokens, temperature=self.temperature,
                     top_p=self.top_p, seed=self.seed, stop=self.stop, logprobs=self.logprobs or None,
                     top_logprobs=self.top_logprobs if self.logprobs else None)
        return {k: v for k, v in given.items() if v is not None}


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage_dict(usage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def logprobs_body(tokens) -> dict[str, Any] | None:
    """OpenAI's `choices[].logprobs`: {"content": [{token, logprob, bytes, top_logprobs}]}, or None."""
    return None if tokens is None else {"content": [t.to_openai() for t in tokens]}


def completion_body(ident: str, model: str, choices: list[tuple[str, str | None, Any]], usage,
                    fusion: dict | None = None) -> dict[str, Any]:
    """`choices`: (text, finish reason, the tokens' log-probabilities or None) for each."""
    body: dict[str, Any] = {
        "id": ident, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": finish or "stop",
                     "logprobs": logprobs_body(tokens)} for i, (text, finish, tokens) in enumerate(choices)],
        "usage": usage_dict(usage)}
    if fusion is not None:
        body["fusion"] = fusion
    return body


def chunk_body(ident: str, model: str, delta: dict | None = None, finish: str | None = None, usage=None,
               extra: dict | None = None, logprobs=None) -> dict[str, Any]:
    body: dict[str, Any] = {"id": ident, "object": "chat.completion.chunk", "created": int(time.time()),
                            "model": model,
                            "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish,
                                                                  "logprobs": logprobs_body(logprobs)}]}
    if usage is not None:
        body["usage"] = usage_dict(usage)
    if extra:
        body.update(extra)
    return body


ErrorType = Literal["invalid_request_error", "authentication_error", "not_found_error", "rate_limit_error",
                    "upstream_error", "timeout_error", "server_error"]


def error_body(message: str, type_: ErrorType, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
