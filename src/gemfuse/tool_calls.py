"""The function calls a model makes, as an assistant turn carries them.

A call's arguments travel as a JSON string (as on the wire); `canonical` is the form calls are compared in
(fusion's vote, distil's filter): the name and the arguments with key order, whitespace and number spelling
normalised (1, 1.0 and 1e0 are one number).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import MessageError


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True)
class ToolCall:
    """One function call: its id, the function's name and the arguments as a JSON string."""

    name: str
    arguments: str = "{}"
    id: str = field(default_factory=new_call_id)

    def args(self) -> Any:
        return json.loads(self.arguments)

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}

    @classmethod
    def from_openai(cls, raw: Any, where: str = "tool_calls[0]") -> ToolCall:
        function = raw.get("function") if isinstance(raw, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise MessageError(f"{where}: needs function.name (and function.arguments as a JSON string)")
        arguments = function.get("arguments", "{}")
        if not isinstance(arguments, str):  # some endpoints send an object; the wire form is a string
            arguments = json.dumps(arguments, ensure_ascii=False)
        ident = raw.get("id")
        return cls(function["name"], arguments or "{}", ident if isinstance(ident, str) and ident else new_call_id())

    def canonical(self) -> str:
        """The call as compared: name and normalised arguments (unparseable arguments compare as their text)."""
        try:
            arguments = json.dumps(normalised(json.loads(self.arguments)), sort_keys=True, separators=(",", ":"),
                                   ensure_ascii=False)
        except ValueError:
            arguments = self.arguments.strip()
        return f"{self.name}({arguments})"


def normalised(value: Any) -> Any:
    """A JSON value with integral floats as ints, through objects and arrays."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: normalised(item) for key, item in value.items()}
    if isinstance(value, list):
        return [normalised(item) for item in value]
    return value


def canonical_calls(calls: Sequence[ToolCall]) -> tuple[str, ...]:
    """Several calls compared as a set (parallel calls come in any order)."""
    return tuple(sorted(call.canonical() for call in calls))
