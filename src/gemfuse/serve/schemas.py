"""Wire types of the OpenAI-compatible API: requests validated, responses built (the server's settings are in
config.py)."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..fusion.settings import settings_model
from ..json_schema import JSON_OBJECT, JsonSchema
from ..models.base import MaxTokens, Temperature, TopP
from ..tool_calls import Tool, ToolChoice, ToolSet

# OpenAI fields a request may carry that change nothing here (storage, billing, caching and reasoning hints, ...):
# accepted and ignored, in one place. Any other unknown field is a 400.
IGNORED_FIELDS = ("store", "metadata", "reasoning_effort", "service_tier", "prompt_cache_key", "safety_identifier",
                  "verbosity", "user", "frequency_penalty", "presence_penalty", "logit_bias", "prediction",
                  "web_search_options", "modalities", "audio")


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


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = "answer"
    description: str | None = None
    schema_: JsonSchema = Field(default_factory=lambda: dict(JSON_OBJECT), alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format: type json_schema needs a json_schema object with a schema")
        return self

    def answer_schema(self) -> tuple[dict | None, bool]:
        """(the answer's schema or None, strict)"""
        if self.type == "json_object":
            return dict(JSON_OBJECT), False
        if self.type == "json_schema" and self.json_schema is not None:
            return self.json_schema.schema_, bool(self.json_schema.strict)
        return None, False


class ChatRequest(BaseModel):
    """OpenAI chat completion parameters we honour; IGNORED_FIELDS we accept and ignore; anything else is 400."""

    model_config = ConfigDict(extra="allow")

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
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None

    @model_validator(mode="after")
    def _known_fields_only(self) -> ChatRequest:
        unknown = sorted(set(self.model_extra or {}) - set(IGNORED_FIELDS))
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown field")
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
        schema, strict = self.response_format.answer_schema() if self.response_format else (None, False)
        given = dict(max_tokens=self.max_completion_tokens or self.max_tokens, temperature=self.temperature,
                     top_p=self.top_p, seed=self.seed, stop=self.stop, logprobs=self.logprobs or None,
                     top_logprobs=self.top_logprobs if self.logprobs else None, json_schema=schema,
                     json_strict=strict or None, tools=self.tool_set())
        return {k: v for k, v in given.items() if v is not None}

    def tool_set(self) -> ToolSet | None:
        if not self.tools and self.tool_choice in (None, "none", "auto"):
            return None
        return ToolSet(tools=tuple(self.tools or ()), choice=self.tool_choice or "auto",
                       parallel=self.parallel_tool_calls is not False)


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage_dict(usage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def logprobs_body(tokens) -> dict[str, Any] | None:
    """OpenAI's `choices[].logprobs`: {"content": [{token, logprob, bytes, top_logprobs}]}, or None."""
    return None if tokens is None else {"content": [t.to_openai() for t in tokens]}


def message_body(text: str, calls) -> dict[str, Any]:
    """The assistant's message: its text, or its calls (content null, as OpenAI sends a call)."""
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None, "refusal": None}
    if calls:
        message["tool_calls"] = [call.to_openai() for call in calls]
    return message


def completion_body(ident: str, model: str, choices: list, usage, fusion: dict | None = None,
                    notes: list[str] | None = None) -> dict[str, Any]:
    """`choices`: Completions (or anything with text, finish_reason, logprobs and tool_calls)."""
    body: dict[str, Any] = {
        "id": ident, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": i, "message": message_body(c.text, c.tool_calls),
                     "finish_reason": c.finish_reason or "stop", "logprobs": logprobs_body(c.logprobs)}
                    for i, c in enumerate(choices)],
        "usage": usage_dict(usage)}
    if fusion is not None:
        body["fusion"] = fusion
    if notes:
        body["notes"] = notes  # e.g. schema keywords the model's grammar did not enforce
    return body


def call_deltas(calls) -> list[dict[str, Any]]:
    """A stream's tool-call deltas: each call whole in one delta (id, type, name and all its arguments)."""
    return [{"tool_calls": [{"index": i, **call.to_openai()}]} for i, call in enumerate(calls)]


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
