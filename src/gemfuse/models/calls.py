"""Function tools as OpenAI defines them, the choice among them, and whether a call (gemfuse/tool_calls.py)
keeps to them."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..tool_calls import ToolCall
from .json_schema import check_schema, validate

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


class Function(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: dict(NO_PARAMETERS))
    strict: bool | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not TOOL_NAME.match(value):
            raise ValueError(f"{value!r} is not a function name: use letters, digits, _ and -, at most 64")
        return value

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, value: dict) -> dict:
        check_schema(value)
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
