"""Function calling for models whose chat template has no tools (Gemma 3 and 3n, SmolLM2): Google's documented
prompted format. The tools go into the system turn as JSON, the model writes a call as
`{"name": ..., "parameters": {...}}` (a list of them for several), and earlier calls and results are folded into
plain turns: a call as the assistant's text, results as a user turn (Gemma's turns alternate user and model).

A forced call (`tool_choice` required or named) is decoded under the grammar of `call_schema`, so it always
parses and satisfies its tool; under `auto` the text is read after, and is a call only when it validates.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from .json_schema import parse_json
from .messages import Message, TextPart
from .tool_calls import ToolCall, ToolSet

INSTRUCTIONS = ("You have access to functions. If you decide to invoke any of the function(s), you MUST put it in "
                "the format of\n{\"name\": function name, \"parameters\": dictionary of argument name and its value}"
                "\n\nYou SHOULD NOT include any other text in the response if you call a function\n")

RESULTS_FOLLOW_UP = "Answer the question with these results, or call another function if you need one."


def call_text(calls: Sequence[ToolCall]) -> str:
    """Calls as the model writes them: one object, or a list of them."""
    written = [{"name": c.name, "parameters": _arguments(c)} for c in calls]
    return json.dumps(written[0] if len(written) == 1 else written, ensure_ascii=False)


def _arguments(call: ToolCall) -> Any:
    try:
        return call.args()
    except ValueError:
        return call.arguments


def system_text(tools: ToolSet) -> str:
    definitions = [{"name": t.name, "description": t.function.description or "", "parameters": t.parameters}
                   for t in tools.callable()]
    listed = ",\n".join(json.dumps(d, ensure_ascii=False) for d in definitions)  # one a line, compact: fewer tokens
    text = f"{INSTRUCTIONS}[{listed}]"
    if tools.forced:
        names = [t.name for t in tools.callable()]
        text += f"\n\nCall {names[0]} now." if len(names) == 1 else "\n\nCall one of the functions now."
    return text


Turn = tuple[str, list[Any], Sequence[ToolCall], str | None]  # role, parts, its calls, the call it answers


def plain_turns(turns: Sequence[Turn], tools: ToolSet | None, text: Callable[[str], Any]) -> list[tuple[str, list[Any]]]:
    """Turns of any part type as plain (role, parts): calls written out, results joined in one user turn, the tools
    in the system turn when the model may call them. `text` makes a text part of the caller's type."""
    names = {call.id: call.name for _, _, calls, _ in turns for call in calls}
    out: list[tuple[str, list[Any]]] = []
    results: list[Any] | None = None  # the parts of the user turn holding the latest results: the next ones join it
    for role, parts, calls, answers in turns:
        if role == "tool":
            said = "".join(p for p in parts if isinstance(p, str)) or "".join(getattr(p, "text", "") for p in parts)
            result = text(f"Function {names.get(answers or '', 'call')} returned: {said}\n")
            if results is not None and out[-1][1] is results:
                results.insert(-1, result)
            else:
                results = [result, text(RESULTS_FOLLOW_UP)]
                out.append(("user", results))
        elif calls:
            written = [p for p in parts if not isinstance(p, str) and not hasattr(p, "text")]
            said = "".join(p if isinstance(p, str) else getattr(p, "text", "") for p in parts)
            out.append(("assistant", [*written, text((said + "\n" if said else "") + call_text(calls))]))
        else:
            out.append((role, list(parts)))
    if tools is not None and tools.active:
        head = system_text(tools)
        if out and out[0][0] == "system":
            out[0] = ("system", [*out[0][1], text("\n\n" + head)])
        else:
            out.insert(0, ("system", [text(head)]))
    return out


def render(messages: Sequence[Message], tools: ToolSet | None) -> list[Message]:
    """The conversation in plain turns, with the tools in the system turn when the model may call them."""
    turns = [(m.role, m.parts, m.tool_calls, m.tool_call_id) for m in messages]
    if not tools and not any(m.role == "tool" or m.tool_calls for m in messages):
        return list(messages)
    return [Message(role, parts) for role, parts in plain_turns(turns, tools, TextPart)]  # type: ignore[arg-type]


def call_schema(tools: ToolSet) -> dict[str, Any]:
    """The grammar of one forced call: the name of a callable tool and arguments of its schema."""
    options = [{"type": "object", "properties": {"name": {"const": t.name}, "parameters": t.parameters},
                "required": ["name", "parameters"], "additionalProperties": False} for t in tools.callable()]
    return options[0] if len(options) == 1 else {"anyOf": options}


def parse_calls(text: str, tools: ToolSet, check: bool = True) -> tuple[list[ToolCall] | None, str | None]:
    """(the calls the text makes, None) when every one satisfies its tool (or, `check` False, names a callable
    tool), else (None, why not)."""
    try:
        value = parse_json(text)
    except ValueError as exc:
        return None, str(exc)
    written = value if isinstance(value, list) else [value]
    if not written or not all(isinstance(w, dict) and isinstance(w.get("name"), str) for w in written):
        return None, "the answer is JSON but not a call ({\"name\": ..., \"parameters\": {...}})"
    if len(written) > 1 and not tools.parallel:
        return None, "several calls, but parallel_tool_calls is false"
    calls = [ToolCall(w["name"], json.dumps(w.get("parameters", w.get("arguments", {})), ensure_ascii=False))
             for w in written]
    for call in calls:
        problem = tools.check(call)
        if problem and (check or tools.tool(call.name) is None):
            return None, problem
    return calls, None


def with_schema_hint(messages: Sequence[Message], schema: dict[str, Any]) -> list[Message]:
    """The schema asked for in the system turn, for an endpoint that takes no response_format."""
    return with_system(messages, f"Answer with JSON only, matching this JSON schema: "
                                 f"{json.dumps(schema, ensure_ascii=False)}")


def with_system(messages: Sequence[Message], text: str) -> list[Message]:
    """`text` added to the system turn (one made first when there is none)."""
    out = list(messages)
    if out and out[0].role == "system":
        out[0] = Message("system", [*out[0].parts, TextPart("\n\n" + text)])
    else:
        out.insert(0, Message.system(text))
    return out
