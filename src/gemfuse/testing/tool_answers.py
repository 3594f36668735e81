"""What the loopback upstream (upstream.py) answers to tools and schemas, picked by the request's `model`:

    call:<json>   calls the forced tool (else the first) with these arguments; text once a tool has answered
    call:<name>:<json>  calls that function with these arguments
    tools         calls it with the least arguments its schema takes; a schema's least instance as the answer
    no-tools      400 when sent `tools` or `response_format` (many endpoints refuse them); asked in the prompted
                  format instead, answers there the way `tools` does
"""

from __future__ import annotations

import json
from typing import Any

PROMPTED = "You have access to functions."
SCHEMA_HINT = "matching this JSON schema"


def least_instance(schema: dict[str, Any]) -> Any:
    """A small value that satisfies a plain schema (first enum value, required properties only, ...)."""
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return least_instance(schema[key][0])
    kind = schema.get("type", "object")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: least_instance(properties.get(name, {})) for name in schema.get("required", [])}
    if kind == "array":
        return [least_instance(schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.5))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "x" * max(1, schema.get("minLength", 1))


def _system_text(body: dict) -> str:
    return " ".join(m.get("content") or "" for m in body.get("messages", [])
                    if m.get("role") == "system" and isinstance(m.get("content"), str))


def _tool_answered(body: dict) -> str | None:
    last = (body.get("messages") or [{}])[-1]
    return str(last.get("content")) if last.get("role") == "tool" else None


def _target(body: dict) -> dict | None:
    tools = [t["function"] for t in body.get("tools") or []]
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        return next(t for t in tools if t["name"] == choice["function"]["name"])
    return tools[0]


def refused(behaviour: str, body: dict) -> str | None:
    """The 400 message of an endpoint that takes no tools or schemas, or None."""
    if behaviour == "no-tools" and ("tools" in body or "response_format" in body):
        return "tools and response_format are not supported by this model"
    return None


def answer(behaviour: str, body: dict) -> tuple[str, list[dict]] | None:
    """(text, calls in OpenAI's shape) for the behaviours above, or None for the plain ones."""
    if not (behaviour.startswith("call:") or behaviour in ("tools", "no-tools")):
        return None
    result = _tool_answered(body)
    if result is not None:
        return f"The tool said: {result}", []
    if behaviour == "no-tools":
        system = _system_text(body)
        if PROMPTED in system:
            definitions = json.loads(system[system.index("["):].split("\n\n", 1)[0])
            tool = definitions[0]
            return json.dumps({"name": tool["name"], "parameters": least_instance(tool["parameters"])}), []
        if SCHEMA_HINT in system:
            schema = json.loads(system[system.index("{", system.index(SCHEMA_HINT)):])
            return json.dumps(least_instance(schema)), []
        return "no tools here", []
    target = _target(body)
    if target is not None:
        arguments = json.dumps(least_instance(target.get("parameters", {})))
        if behaviour.startswith("call:"):
            name, _, arguments = behaviour.removeprefix("call:").partition(":")
            if name.startswith("{"):  # call:{json}: the forced or first tool
                arguments = f"{name}:{arguments}" if arguments else name
            else:
                target = {"name": name}
        return "", [{"id": f"call_{len(body.get('messages', []))}", "type": "function",
                     "function": {"name": target["name"], "arguments": arguments}}]
    if (body.get("response_format") or {}).get("type") == "json_object":
        return "{}", []
    schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema")
    if schema is not None:
        return json.dumps(least_instance(schema)), []
    return "plain text", []
