"""Function tools as OpenAI defines them, the choice among them, and the calls a model makes.

A call's arguments travel as a JSON string (as on the wire); `canonical` is the form calls are compared in
(fusion's vote, distil's filter): the name and the arguments with key order, whitespace and number spelling
normalised (1, 1.0 and 1e0 are one number).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import MessageError
from .json_schema import JsonSchema, validate


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


TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


class Function(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str | None = None
    parameters: JsonSchema = Field(default_factory=lambda: dict(NO_PARAMETERS))
    strict: bool | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not TOOL_NAME.match(value):
            raise ValueError(f"{value!r} is not a function name: use letters, digits, _ and -, at most 64")
        return value


class Tool(BaseModel):
    """One function tool: `{"type": "function", "function": {"name", "description", "parameters", "strict"}}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["function"] = "function"
    function: Function

    @property
    def name(self) -> str:
        return self.function.name

    @property
    def parameters(self) -> dict[str, Any]:
        return self.function.parameters

    def to_openai(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str


class NamedChoice(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["function"] = "function"
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedChoice


def forced_name(choice: ToolChoice | None) -> str | None:
    return choice.function.name if isinstance(choice, NamedChoice) else None


class ToolSet(BaseModel):
    """The tools of a request and how the model may use them; a named choice must name one of the tools."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tools: tuple[Tool, ...] = ()
    choice: ToolChoice = "auto"
    parallel: bool = True

    @model_validator(mode="after")
    def _choice_names_a_tool(self) -> ToolSet:
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise ValueError(f"tools: function names repeat ({', '.join(sorted({n for n in names if names.count(n) > 1}))})")
        name = forced_name(self.choice)
        if name is not None and name not in names:
            raise ValueError(f"tool_choice: names {name!r}, which is not among the tools ({', '.join(names) or 'none'})")
        if self.choice != "none" and self.choice != "auto" and not self.tools:
            raise ValueError("tool_choice: asks for a call but no tools are given")
        return self

    @property
    def active(self) -> bool:
        """Whether the model may call at all."""
        return bool(self.tools) and self.choice != "none"

    @property
    def forced(self) -> bool:
        return self.active and self.choice != "auto"

    def callable(self) -> tuple[Tool, ...]:
        """The tools a call may name: the named one, or all."""
        name = forced_name(self.choice)
        return tuple(t for t in self.tools if name is None or t.name == name)

    def tool(self, name: str) -> Tool | None:
        return next((t for t in self.tools if t.name == name), None)

    def check(self, call: ToolCall) -> str | None:
        """Why this call breaks the tool set (an unknown function, arguments that fail its schema), or None."""
        tool = next((t for t in self.callable() if t.name == call.name), None)
        if tool is None:
            return f"calls {call.name!r}, which is not among the callable tools"
        try:
            arguments = json.loads(call.arguments)
        except ValueError:
            return f"{call.name}: arguments are not JSON"
        problem = validate(arguments, tool.parameters)
        return f"{call.name}: arguments {problem}" if problem else None
