"""Fusing answers that are function calls or JSON: compared by meaning, not by spelling.

Calls count as the same answer when their canonical forms match (name and arguments with key order,
whitespace and number spelling normalised); JSON answers when their values do. When no whole answer has a
majority, the vote over calls goes argument by argument among the members that chose the winning function
(each argument's value by plurality, ties to the surer member, else pool order); the merged call is kept only
when it satisfies its tool. The trace holds every member's calls and how each argument went.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from ..json_schema import parse_json
from ..tool_calls import ToolCall, canonical_calls, normalised
from .engine import FusionRun
from .extract import answer_key, plurality
from .trace import Call


def key_of(run: FusionRun, call: Call) -> str:
    """What a vote counts this answer as."""
    if call.tool_calls:
        return "calls: " + " ".join(canonical_calls(call.tool_calls))
    if run.json_schema is not None:
        try:
            return "json: " + json.dumps(normalised(parse_json(call.text)), sort_keys=True, separators=(",", ":"))
        except ValueError:
            pass
    return answer_key(call.text, run.preset.extractor)


def structured(run: FusionRun) -> bool:
    return run.tools is not None or run.json_schema is not None


def _surest(candidates: Sequence[Call]) -> list[float]:
    """Weights that only break ties: a vote is one, plus a hair for how sure the member was."""
    return [1.0 + 1e-6 * math.exp(c.certainty) if c.certainty is not None else 1.0 for c in candidates]


def vote_arguments(run: FusionRun, candidates: Sequence[Call]) -> list[ToolCall] | None:
    """One call merged argument by argument from the members that chose the most chosen function (each making
    one call), or None when that is not possible or the merged call breaks its tool."""
    single = [c for c in candidates if c.tool_calls and len(c.tool_calls) == 1]
    if len(single) < 2 or run.tools is None:
        return None
    names = [c.tool_calls[0].name for c in single if c.tool_calls]
    _, leaders = plurality(names, _surest(single))
    chose = [c for c in single if c.tool_calls and c.tool_calls[0].name == leaders[0]]
    if len(chose) < 2:
        return None
    arguments = [c.tool_calls[0].args() if c.tool_calls else {} for c in chose]
    tool = run.tools.tool(leaders[0])
    required = set(tool.parameters.get("required", [])) if tool is not None else set()
    merged: dict = {}
    votes: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(k for a in arguments for k in a):
        present = [(a[name], c) for a, c in zip(arguments, chose, strict=True) if name in a]
        keys = [json.dumps(normalised(value), sort_keys=True) for value, _ in present]
        counts, top = plurality(keys, _surest([c for _, c in present]))
        votes[name] = {k: round(v) for k, v in counts.items()}
        if name in required or len(present) * 2 > len(chose):  # an optional one most members left out stays out
            merged[name] = present[keys.index(top[0])][0]
    call = ToolCall(leaders[0], json.dumps(merged, ensure_ascii=False))
    if run.tools.check(call):
        run.trace.degrade("the argument-by-argument vote made a call that breaks its tool; the whole calls were voted")
        return None
    run.trace.argument_votes = votes
    return [call]
