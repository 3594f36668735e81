"""Gemma 4's own function-calling format, for checkpoints whose chat template takes `tools`.

The template renders the tool declarations, earlier calls and tool results itself; the model answers a call as

    <|tool_call>call:get_weather{city:<|"|>Paris<|"|>,days:3}<tool_call|>

(keys bare, strings between `<|"|>` marks, numbers, booleans, objects and arrays as written, several calls one
after another). `read_calls` turns that text into calls; the rest of the answer is its text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ..families.gemma4 import CALL_END, CALL_START, QUOTE, takes_tools
from ..messages import Message
from ..tool_calls import ToolCall

__all__ = ["CALL_END", "CALL_START", "QUOTE", "read_calls", "takes_tools", "template_turns"]


def template_turns(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Calls and results in the shape HF chat templates read: arguments as objects, a result named by its call."""
    names = {call.id: call.name for m in messages for call in m.tool_calls}
    turns: list[dict[str, Any]] = []
    for message in messages:
        turn: dict[str, Any] = {"role": message.role, "content": message.text}
        if message.tool_calls:
            turn["tool_calls"] = [{"id": c.id, "type": "function",
                                   "function": {"name": c.name, "arguments": _arguments(c)}} for c in message.tool_calls]
        if message.role == "tool":
            turn.update(tool_call_id=message.tool_call_id, name=names.get(message.tool_call_id or "", ""))
        turns.append(turn)
    return turns


def _arguments(call: ToolCall) -> Any:
    try:
        return call.args()
    except ValueError:
        return {}


def read_calls(text: str) -> tuple[list[ToolCall], str]:
    """(the calls written in Gemma 4's format, the text around them); a call that does not parse is left as text."""
    calls: list[ToolCall] = []
    kept: list[str] = []
    rest = text
    while CALL_START in rest:
        before, _, after = rest.partition(CALL_START)
        kept.append(before)
        body, found, rest = after.partition(CALL_END)
        call = _call(body) if found else None
        if call is None:
            kept.append(CALL_START + body + (CALL_END if found else ""))
        else:
            calls.append(call)
    kept.append(rest)
    return calls, "".join(kept).strip()


def _call(body: str) -> ToolCall | None:
    if not body.startswith("call:") or "{" not in body or not body.endswith("}"):
        return None
    name, _, arguments = body.removeprefix("call:").partition("{")
    try:
        value, end = _object("{" + arguments, 0)
    except (ValueError, IndexError):
        return None
    if end != len(arguments) + 1 or not name:
        return None
    return ToolCall(name.strip(), json.dumps(value, ensure_ascii=False))


def _value(text: str, i: int) -> tuple[Any, int]:
    if text.startswith(QUOTE, i):
        end = text.index(QUOTE, i + len(QUOTE))
        return text[i + len(QUOTE):end], end + len(QUOTE)
    if text[i] == "{":
        return _object(text, i)
    if text[i] == "[":
        items: list[Any] = []
        i += 1
        while text[i] != "]":
            item, i = _value(text, i)
            items.append(item)
            i = _after_item(text, i, "]")
        return items, i + 1
    end = i
    while end < len(text) and text[end] not in ",}]":
        end += 1
    return _bare(text[i:end].strip()), end


def _object(text: str, i: int) -> tuple[dict[str, Any], int]:
    assert text[i] == "{"
    value: dict[str, Any] = {}
    i += 1
    while text[i] != "}":
        colon = text.index(":", i)
        key = text[i:colon].strip()
        item, i = _value(text, colon + 1)
        value[key] = item
        i = _after_item(text, i, "}")
    return value, i + 1


def _after_item(text: str, i: int, close: str) -> int:
    if text[i] == ",":
        return i + 1
    if text[i] != close:
        raise ValueError(f"expected ',' or {close!r} at {i}")
    return i


def _bare(word: str) -> Any:
    """true, false, null and numbers as themselves; anything else as the text it is."""
    if word in ("true", "false", "null"):
        return json.loads(word)
    try:
        return json.loads(word) if word[:1] in "-0123456789" else word
    except ValueError:
        return word
