"""Function-calling datasets in the layouts they are published in, as our rows (OpenAI's `tools`, `tool_calls`
and `tool` turns):

- ShareGPT / Hermes: the tools as a `<tools>[...]</tools>` block in the system turn (or a `tools` field), calls as
  `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` in the assistant's turns, results in `tool` turns
  (`<tool_response>` blocks), answered in order;
- xLAM: `query`, `tools` and `answers` (JSON strings or lists), its parameters written as `{name: {type,
  description, default}}` and turned into a JSON schema (a parameter with a default, or typed `..., optional`, is
  optional).
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..errors import MessageError

TOOLS_BLOCK = re.compile(r"<tools>(.*?)</tools>", re.DOTALL)
CALL_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
RESPONSE_BLOCK = re.compile(r"<tool_response>(.*?)</tool_response>", re.DOTALL)
PYTHON_TYPES = {"str": "string", "string": "string", "int": "integer", "integer": "integer", "float": "number",
                "number": "number", "bool": "boolean", "boolean": "boolean", "list": "array", "array": "array",
                "tuple": "array", "set": "array", "dict": "object", "object": "object"}


def _json(value: Any, what: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise MessageError(f"{what}: not JSON ({exc})") from None
    return value


def as_tool(function: dict[str, Any]) -> dict[str, Any]:
    """A function definition (OpenAI's, Hermes' or xLAM's) as an OpenAI tool."""
    function = function.get("function", function) if function.get("type") == "function" else function
    if not isinstance(function.get("name"), str):
        raise MessageError(f"a tool without a name: {json.dumps(function)[:80]}")
    parameters = function.get("parameters") or {}
    if "type" not in parameters and all(isinstance(v, dict) for v in parameters.values()):
        parameters = xlam_schema(parameters)
    return {"type": "function", "function": {"name": function["name"], "description": function.get("description", ""),
                                             "parameters": parameters or {"type": "object", "properties": {}}}}


def xlam_schema(parameters: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """xLAM's `{name: {type, description, default}}` as a JSON schema."""
    properties, required = {}, []
    for name, spec in parameters.items():
        written = str(spec.get("type", "")).strip()
        optional = written.endswith(", optional") or "default" in spec
        base = written.removesuffix(", optional").split("[")[0].strip().lower()
        prop: dict[str, Any] = {"description": spec.get("description", "")}
        if base in PYTHON_TYPES:
            prop["type"] = PYTHON_TYPES[base]
        properties[name] = prop
        if not optional:
            required.append(name)
    return {"type": "object", "properties": properties, "required": required}


def _call(written: dict[str, Any], number: int) -> dict[str, Any]:
    if not isinstance(written, dict) or not isinstance(written.get("name"), str):
        raise MessageError(f"a call without a name: {json.dumps(written)[:80]}")
    arguments = _json(written.get("arguments", written.get("parameters", {})), "arguments")
    return {"id": f"call_{number}", "type": "function",
            "function": {"name": written["name"], "arguments": json.dumps(arguments, ensure_ascii=False)}}


def from_xlam(item: dict[str, Any]) -> dict[str, Any]:
    tools = [as_tool(t) for t in _json(item["tools"], "tools")]
    calls = [_call(c, i) for i, c in enumerate(_json(item["answers"], "answers"))]
    return {"tools": tools, "messages": [{"role": "user", "content": item["query"]},
                                         {"role": "assistant", "content": None, "tool_calls": calls}]}


def with_tools(item: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
    """ShareGPT turns (already given our roles) with their tools, calls and results made OpenAI's."""
    tools = [as_tool(t) for t in _json(item["tools"], "tools")] if item.get("tools") else []
    out: list[dict[str, Any]] = []
    waiting: list[str] = []  # calls not yet answered, in order
    count = 0
    for message in messages:
        text = message.get("content") or ""
        if message["role"] == "system" and TOOLS_BLOCK.search(text):
            for block in TOOLS_BLOCK.findall(text):
                listed = _json(block.strip(), "<tools>")
                tools += [as_tool(t) for t in (listed if isinstance(listed, list) else [listed])]
            text = TOOLS_BLOCK.sub("", text).strip()
            if text:
                out.append({"role": "system", "content": text})
        elif message["role"] == "assistant" and CALL_BLOCK.search(text):
            calls = [_call(_json(block.strip(), "<tool_call>"), count + i) for i, block in enumerate(CALL_BLOCK.findall(text))]
            count += len(calls)
            waiting += [c["id"] for c in calls]
            said = CALL_BLOCK.sub("", text).strip()
            out.append({"role": "assistant", "content": said or None, "tool_calls": calls})
        elif message["role"] == "tool":
            results = RESPONSE_BLOCK.findall(text) or [text]
            for result in results:
                if not waiting:
                    raise MessageError("a tool result answers no earlier call")
                out.append({"role": "tool", "tool_call_id": waiting.pop(0), "content": result.strip()})
        else:
            out.append({**message, "content": text})
    row: dict[str, Any] = {"messages": out}
    if tools:
        row["tools"] = tools
    return row
