"""A remote answer held to its request's contract: calls that satisfy their tools, JSON that satisfies its schema.

An endpoint may ignore `tools` or `response_format`, or have refused them (the prompted format is then used and
the text read back). An answer that breaks the contract gets one repair (the model is told what was wrong and
asked again); a second breach is an InvalidAnswerError. An invalid answer is never handed on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from ..errors import InvalidAnswerError
from ..json_schema import check_answer
from ..messages import Message
from ..prompted_tools import call_text, parse_calls
from .base import Completion, GenerateOptions


def in_force(options: GenerateOptions) -> bool:
    return (options.tools is not None and options.tools.active) or (options.json_schema is not None
                                                                    and not options.json_lenient)


def read_calls(completion: Completion, options: GenerateOptions) -> Completion:
    """A prompted answer's text read as calls, when it is calls that satisfy their tools."""
    tools = options.tools
    if tools is None or not tools.active or completion.tool_calls or completion.finish_reason == "length":
        return completion
    calls, _ = parse_calls(completion.text, tools)
    return replace(completion, text="", tool_calls=calls, finish_reason="tool_calls") if calls else completion


def breach(completion: Completion, options: GenerateOptions) -> str | None:
    """What the answer breaks of its request's tools or schema, or None: a remote answer's repair and a fusion
    member's exclusion read the same verdict."""
    tools = options.tools
    if completion.tool_calls:
        if tools is None or not tools.active:
            return "makes a call though no tool may be called"
        for call in completion.tool_calls:
            problem = tools.check(call)
            if problem:
                return f"makes a call that breaks its tool: {problem}"
        return None
    if tools is not None and tools.forced:
        return "makes no call though tool_choice requires one"
    if options.json_schema is not None and completion.finish_reason != "length":  # a cut answer is said as cut
        return check_answer(completion.text, options.json_schema)
    return None


async def checked(generate: Callable[[Sequence[Message], GenerateOptions], Awaitable[Completion]],
                  messages: Sequence[Message], options: GenerateOptions, model: str) -> Completion:
    """`generate`'s answer once it keeps the contract (after at most one repair); a cut answer as it is."""
    first = read_calls(await generate(messages, options), options)
    problem = breach(first, options)
    if problem is None or first.finish_reason == "length":
        return first
    said = first.text if not first.tool_calls else call_text(first.tool_calls)
    repair = [*messages, Message.assistant(said),
              Message.user(f"That answer {problem}. Answer again, keeping to the tools and format you were given.")]
    second = read_calls(await generate(repair, options), options)
    again = breach(second, options)
    if again is not None and second.finish_reason != "length":
        raise InvalidAnswerError(f"the answer {problem}, and after one repair it {again}", model=model)
    return replace(second, usage=first.usage + second.usage, latency_s=first.latency_s + second.latency_s,
                   notes=[*second.notes, f"repaired once: the first answer {problem}"])
