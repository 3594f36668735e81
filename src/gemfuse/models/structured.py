"""Tools and JSON schemas on a backend that decodes text under a grammar (llama.cpp, transformers).

`plan` turns a request into a text request: the tools rendered in the prompted format, a forced call or a schema
as the grammar (`json_schema`), after checking that the grammar can enforce it (strict: refused naming the
keyword; loose: noted). `Answer.finish` reads the text back: calls only when they satisfy their tools, a JSON answer
checked against its schema, a cut answer (max_tokens) handed back as text with finish_reason "length".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..errors import BadRequestError
from ..json_schema import check_answer, unenforced
from ..messages import Message
from ..prompted_tools import call_schema, parse_calls, render
from ..tool_calls import ToolCall, ToolSet
from .base import GenerateOptions, StreamChunk
from .gemma4_calls import read_calls


@dataclass
class Plan:
    messages: list[Message]
    options: GenerateOptions  # what the text backend decodes: json_schema is the grammar, no tools
    tools: ToolSet | None  # calls to read back (None: a text or JSON answer)
    schema: dict | None  # the JSON answer's schema, checked after
    notes: list[str] = field(default_factory=list)
    native: bool = False  # the model's own template renders the tools; its calls are read in its own format

    @property
    def holds_text(self) -> bool:
        """Whether the text is held back until it is known to be a call (tools in play) or streamed."""
        return self.tools is not None


def _check(schema: dict, strict: bool, where: str, model: str) -> list[str]:
    skipped = unenforced(schema)
    if skipped and strict:
        raise BadRequestError(f"{where}: the keyword {skipped[0]!r} cannot be enforced by this model's grammar; "
                              "drop it, or set strict to false (the answer is then checked, not enforced)", model=model)
    return [f"{where}: not enforced: {', '.join(skipped)}"] if skipped else []


def plan(messages: Sequence[Message], options: GenerateOptions, model: str, native: bool = False) -> Plan:
    """`native`: the model's chat template takes tools (Gemma 4); it then renders them and the history itself,
    unless a call is forced (decoded under the grammar of the prompted format, which always parses)."""
    tools = options.tools if options.tools is not None and options.tools.active else None
    if native and not (tools is not None and tools.forced):
        return Plan(list(messages), options, tools, None, native=True)
    rendered = render(messages, tools) if tools is not None or any(m.role == "tool" or m.tool_calls
                                                                   for m in messages) else list(messages)
    text_options = options.model_copy(update={"tools": None})
    notes: list[str] = []
    if tools is not None:
        if tools.forced:
            for tool in tools.callable():
                notes += _check(tool.parameters, bool(tool.function.strict), f"tools[{tool.name}].parameters", model)
            text_options = text_options.model_copy(update={"json_schema": call_schema(tools)})
        else:
            text_options = text_options.model_copy(update={"json_schema": None})
        return Plan(rendered, text_options, tools, None, notes)
    schema = options.json_schema
    if schema is not None:
        notes = _check(schema, options.json_strict, "response_format.json_schema", model)
    return Plan(rendered, text_options, None, schema, notes)


def _native_finish(plan: Plan, text: str, last: StreamChunk) -> StreamChunk:
    """Calls in the model's own format, kept only when every one satisfies its tool; the rest is the text."""
    calls, rest = read_calls(text)
    problems = [p for p in (plan.tools.check(c) if plan.tools else "no tools were given" for c in calls) if p]
    if calls and not problems:
        return StreamChunk(text=rest, finish_reason="tool_calls", usage=last.usage, tool_calls=calls,
                           logprobs=last.logprobs)
    notes = [f"a call was read as text: {problems[0]}"] if problems else None
    return StreamChunk(text=text.strip() if problems else rest, finish_reason=last.finish_reason, usage=last.usage,
                       logprobs=last.logprobs, notes=notes)


def may_be_a_call(text: str, plan: Plan) -> bool:
    """Whether held text could still become a call: a forced call always, else until it starts as plain text."""
    if plan.tools is None:
        return False
    if plan.tools.forced:
        return True
    start = text.lstrip()
    return not start or start[0] in "{[`"


def finish(plan: Plan, text: str, last: StreamChunk) -> StreamChunk:
    """The closing chunk of a planned answer: its calls (and the held text when it is none), or its notes."""
    text += last.text  # a backend may hand the whole answer over with its last chunk
    notes = list(plan.notes)
    cut = last.finish_reason == "length"
    if plan.native:
        return _native_finish(plan, text, last)
    if plan.tools is not None:
        calls: list[ToolCall] | None = None
        if not cut:
            calls, why = parse_calls(text, plan.tools)
            if calls is None and plan.tools.forced:  # only a keyword the grammar skipped can be broken
                calls, _ = parse_calls(text, plan.tools, check=False)
                notes.append(f"the call does not satisfy its tool: {why}")
        if calls:
            return StreamChunk(finish_reason="tool_calls", usage=last.usage, tool_calls=calls, notes=notes or None,
                               logprobs=last.logprobs)
        return StreamChunk(text=text, finish_reason=last.finish_reason, usage=last.usage, notes=notes or None,
                           logprobs=last.logprobs)
    if plan.schema is not None and not cut:
        problem = check_answer(text, plan.schema)
        if problem:
            notes.append(f"the answer {problem}")
    last.notes = (last.notes or []) + notes or None
    return last
