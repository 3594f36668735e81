"""POST /v1/responses, stateless: a Responses request is translated into a chat request (same models, fusions,
gates, capture and contracts), and the chat answer back into a response object or the Responses stream events.

Nothing is stored: `previous_response_id` is refused (send the conversation in `input`), `store` is ignored.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import MessageError
from ..models.base import MaxTokens, Temperature, TopP
from .chat import chat_chunks
from .schemas import ChatRequest, FusionBlock

# Responses fields that change nothing here: accepted and ignored, in one place.
IGNORED = ("store", "metadata", "reasoning", "truncation", "include", "user", "service_tier", "prompt_cache_key",
           "safety_identifier", "max_tool_calls", "prompt_cache_retention")


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    max_output_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stream: bool = False
    previous_response_id: str | None = None
    fusion: FusionBlock | None = None  # type: ignore[valid-type]  # generated from FusionPreset at import
    seed: int | None = Field(None, description="gemfuse's own: a seeded answer")

    @model_validator(mode="after")
    def _known_fields_only(self) -> ResponsesRequest:
        unknown = sorted(set(self.model_extra or {}) - set(IGNORED))
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown field")
        if self.previous_response_id:
            raise ValueError("previous_response_id: this server keeps no responses; send the whole conversation "
                             "in input")
        return self

    def to_chat(self) -> ChatRequest:
        messages: list[dict[str, Any]] = [{"role": "system", "content": self.instructions}] if self.instructions else []
        items = [{"role": "user", "content": self.input}] if isinstance(self.input, str) else self.input
        for i, item in enumerate(items):
            _add_item(messages, item, f"input[{i}]")
        chat: dict[str, Any] = {"model": self.model, "messages": messages, "stream": self.stream}
        if self.stream:
            chat["stream_options"] = {"include_usage": True}
        for ours, theirs in (("max_output_tokens", "max_tokens"), ("temperature", "temperature"),
                             ("top_p", "top_p"), ("parallel_tool_calls", "parallel_tool_calls"), ("seed", "seed")):
            if getattr(self, ours) is not None:
                chat[theirs] = getattr(self, ours)
        if self.fusion is not None:
            chat["fusion"] = self.fusion.model_dump(exclude_none=True)
        if self.tools:
            chat["tools"] = [_chat_tool(t, f"tools[{i}]") for i, t in enumerate(self.tools)]
        if self.tool_choice is not None:
            choice = self.tool_choice
            chat["tool_choice"] = ({"type": "function", "function": {"name": choice.get("name")}}
                                   if isinstance(choice, dict) else choice)
        form = (self.text or {}).get("format")
        if form and form.get("type") == "json_schema":
            chat["response_format"] = {"type": "json_schema", "json_schema": {
                k: form[k] for k in ("name", "schema", "strict", "description") if k in form}}
        elif form and form.get("type") in ("json_object", "text"):
            chat["response_format"] = {"type": form["type"]}
        return ChatRequest.model_validate(chat)


def _chat_tool(tool: dict[str, Any], where: str) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise MessageError(f"{where}: only function tools are served here (got {tool.get('type')!r})")
    return {"type": "function", "function": {k: tool[k] for k in ("name", "description", "parameters", "strict")
                                             if tool.get(k) is not None}}


def _text_of(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise MessageError(f"{where}.content: must be a string or a list of parts")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "refusal":
            parts.append({"type": "text", "text": part.get("refusal", "")})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        else:
            raise MessageError(f"{where}.content[{j}]: unsupported part {kind!r}; use input_text, output_text or "
                               "input_image with an image_url")
    return parts


def _add_item(messages: list[dict[str, Any]], item: Any, where: str) -> None:
    """One input item as chat turns: messages as they are, calls joined to one assistant turn, outputs as tools."""
    if not isinstance(item, dict):
        raise MessageError(f"{where}: each input item must be an object")
    kind = item.get("type", "message")
    if kind == "message":
        messages.append({"role": item.get("role"), "content": _text_of(item.get("content", ""), where)})
    elif kind == "function_call":
        call = {"id": item.get("call_id"), "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments", "{}")}}
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant" and last.get("tool_calls") and not last.get("content"):
            last["tool_calls"].append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        messages.append({"role": "tool", "tool_call_id": item.get("call_id"),
                         "content": output if isinstance(output, str) else json.dumps(output)})
    elif kind != "reasoning":  # a reasoning model's notes: nothing for these models to read
        raise MessageError(f"{where}: unsupported item type {kind!r}; use message, function_call or "
                           "function_call_output")


def _usage(usage: dict[str, int] | None) -> dict[str, Any]:
    usage = usage or {}
    return {"input_tokens": usage.get("prompt_tokens", 0), "output_tokens": usage.get("completion_tokens", 0),
            "total_tokens": usage.get("total_tokens", 0), "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0}}


def _message_item(text: str, status: str = "completed", ident: str | None = None) -> dict[str, Any]:
    return {"type": "message", "id": ident or f"msg_{uuid.uuid4().hex[:24]}", "status": status, "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if text or
            status == "completed" else []}


def _call_item(call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    return {"type": "function_call", "id": f"fc_{call['id'].removeprefix('call_')}", "call_id": call["id"],
            "name": call["function"]["name"], "arguments": call["function"]["arguments"], "status": status}


class Shell:
    """The response object around an answer: the request's settings echoed, as OpenAI's object carries them."""

    def __init__(self, request: ResponsesRequest):
        self.request = request
        self.id = f"resp_{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())

    def body(self, output: list[dict[str, Any]], status: str, usage: dict[str, int] | None, finish: str | None = None,
             extra: dict[str, Any] | None = None) -> dict[str, Any]:
        request = self.request
        body: dict[str, Any] = {
            "id": self.id, "object": "response", "created_at": self.created, "status": status, "model": request.model,
            "output": output, "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if finish == "length" else None,
            "instructions": request.instructions, "max_output_tokens": request.max_output_tokens,
            "parallel_tool_calls": request.parallel_tool_calls is not False, "previous_response_id": None,
            "temperature": request.temperature, "top_p": request.top_p,
            "tool_choice": request.tool_choice or "auto", "tools": request.tools or [],
            "text": request.text or {"format": {"type": "text"}}, "truncation": "disabled", "store": False,
            "metadata": {}, "usage": _usage(usage) if usage is not None else None}
        if finish == "length":
            body["status"] = "incomplete"
        body.update(extra or {})
        return body

    def from_chat(self, chat: dict[str, Any]) -> dict[str, Any]:
        choice = chat["choices"][0]
        message = choice["message"]
        output = [_call_item(c) for c in message.get("tool_calls") or []] or [_message_item(message.get("content") or "")]
        extra: dict[str, Any] = {k: chat[k] for k in ("fusion", "notes") if k in chat}
        return self.body(output, "completed", chat.get("usage"), choice.get("finish_reason"), extra)


class EventWriter:
    """Responses stream events, numbered, as server-sent events with their type as the event name."""

    def __init__(self):
        self.sequence = 0

    def __call__(self, kind: str, **fields: Any) -> bytes:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(event, ensure_ascii=False, default=str)}\n\n".encode()


async def response_events(shell: Shell, chat_events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The chat stream's chunks re-told as the Responses API's events."""
    emit = EventWriter()
    output: list[dict[str, Any]] = []
    text: list[str] = []
    message: dict[str, Any] | None = None
    finish, usage = None, None
    extra: dict[str, Any] = {}
    yield emit("response.created", response=shell.body([], "in_progress", None))
    yield emit("response.in_progress", response=shell.body([], "in_progress", None))
    async for chunk in chat_chunks(chat_events):
        if "error" in chunk:
            yield emit("error", code=chunk["error"].get("code"), message=chunk["error"].get("message"),
                       param=chunk["error"].get("param"))
            yield emit("response.failed", response=shell.body(output, "failed", usage,
                                                                extra={"error": chunk["error"]}))
            return
        usage = chunk.get("usage") or usage
        extra.update({k: chunk[k] for k in ("fusion", "notes") if k in chunk})
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if delta.get("content"):
                if message is None:
                    message = _message_item("", "in_progress")
                    yield emit("response.output_item.added", output_index=len(output), item=message)
                    yield emit("response.content_part.added", item_id=message["id"], output_index=len(output),
                               content_index=0, part={"type": "output_text", "text": "", "annotations": []})
                text.append(delta["content"])
                yield emit("response.output_text.delta", item_id=message["id"], output_index=len(output),
                           content_index=0, delta=delta["content"], logprobs=[])
            for call in delta.get("tool_calls") or []:
                item = _call_item(call, "in_progress")
                index = len(output) + (message is not None)
                yield emit("response.output_item.added", output_index=index, item={**item, "arguments": ""})
                yield emit("response.function_call_arguments.delta", item_id=item["id"], output_index=index,
                           delta=item["arguments"])
                yield emit("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                           arguments=item["arguments"], name=item["name"])
                done = {**item, "status": "completed"}
                yield emit("response.output_item.done", output_index=index, item=done)
                output.append(done)
            finish = choice.get("finish_reason") or finish
    if message is not None:
        whole = "".join(text)
        index = len(output)
        part = {"type": "output_text", "text": whole, "annotations": [], "logprobs": []}
        yield emit("response.output_text.done", item_id=message["id"], output_index=index, content_index=0,
                   text=whole, logprobs=[])
        yield emit("response.content_part.done", item_id=message["id"], output_index=index, content_index=0,
                   part=part)
        done = {**message, "status": "completed", "content": [part]}
        yield emit("response.output_item.done", output_index=index, item=done)
        output.insert(0, done)
    final = shell.body(output or [_message_item("")], "completed", usage, finish, extra)
    yield emit("response.incomplete" if final["status"] == "incomplete" else "response.completed", response=final)
