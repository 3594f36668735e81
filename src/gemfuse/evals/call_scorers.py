"""Scorers for answers that are function calls or JSON: read by meaning, never by spelling.

- tool-call: the right functions with the right arguments. Every argument of the right answer is present and
  equal after normalisation (numbers by value, "3" for a number as 3, text by case and outer spaces); the answer
  may add optional arguments its tool allows; parallel calls compare as a set; an item may list several right
  answers (the best one counts). The value is the share of the right answer's arguments given right.
- no-call: no call at all (none of the tools fits, or the results are in and the model should answer).
- json-schema: the answer is JSON that satisfies the item's schema.
- json-fields: the share of the reference's fields (leaves, by path) the answer gets right; correct when all are
  and the answer satisfies the schema.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from typing import Any

from ..json_schema import parse_json, validate
from ..tool_calls import ToolCall, normalised
from .datasets import EvalItem
from .scorers import Score

CALL_SCORERS = ("tool-call", "no-call", "json-schema", "json-fields")


def item_scorer(item: EvalItem) -> str | None:
    """The scorer an item's shape asks for, or None for a plain answer."""
    if item.calls is not None:
        return "no-call" if all(not answer for answer in item.calls) else "tool-call"
    if item.schema is not None:
        return "json-fields" if item.answer else "json-schema"
    return None


def same_value(expected: Any, given: Any) -> bool:
    """Equal after normalisation: numbers by value (a number written as text too), text by case and outer spaces,
    objects and lists item by item."""
    if isinstance(expected, bool) or isinstance(given, bool):
        return _as_bool(expected) is not None and _as_bool(expected) == _as_bool(given)
    if isinstance(expected, int | float):
        number = _as_number(given)
        return number is not None and math.isclose(float(expected), number, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(expected, str):
        if isinstance(given, int | float):
            return same_value(given, expected)
        return isinstance(given, str) and expected.strip().casefold() == given.strip().casefold()
    if isinstance(expected, dict):
        return isinstance(given, dict) and expected.keys() == given.keys() and \
            all(same_value(expected[k], given[k]) for k in expected)
    if isinstance(expected, list):
        return isinstance(given, list) and len(expected) == len(given) and \
            all(same_value(e, g) for e, g in zip(expected, given, strict=True))
    return normalised(expected) == normalised(given)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value).strip().replace(",", ""))
    except ValueError:
        return None


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    return {"true": True, "false": False}.get(str(value).strip().lower())


def _arguments(call: ToolCall) -> dict[str, Any] | None:
    try:
        value = call.args()
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def call_match(expected: ToolCall, given: ToolCall, item: EvalItem) -> float:
    """How much of `expected` `given` gets right: 0 for another function or arguments its tool refuses, else the
    share of expected arguments given equal (1.0 when it has none)."""
    if expected.name != given.name:
        return 0.0
    if item.tools is not None and item.tools.tool(given.name) is not None and item.tools.check(given):
        return 0.0
    want, got = _arguments(expected) or {}, _arguments(given)
    if got is None:
        return 0.0
    if not want:
        return 1.0
    return sum(1 for key, value in want.items() if key in got and same_value(value, got[key])) / len(want)


def calls_match(expected: Sequence[ToolCall], given: Sequence[ToolCall], item: EvalItem) -> float:
    """Calls against calls as sets: each expected call paired with the given call it best matches, no given call
    used twice; a missing or extra call counts as a wrong one."""
    if not expected and not given:
        return 1.0
    if not expected or not given:
        return 0.0
    left = list(given)
    total = 0.0
    for want in sorted(expected, key=lambda c: -len(_arguments(c) or {})):  # the most specific first
        scores = [call_match(want, g, item) for g in left]
        if scores and max(scores) > 0:
            best = scores.index(max(scores))
            total += scores[best]
            left.pop(best)
    return total / max(len(expected), len(given))


def tool_call(item: EvalItem, calls: Sequence[ToolCall] | None) -> Score:
    given = list(calls or [])
    shown = " ".join(c.canonical() for c in given) or "(no call)"
    best = max((calls_match(answer, given, item) for answer in item.calls or [[]]), default=0.0)
    return Score(best == 1.0, best, shown)


def no_call(item: EvalItem, calls: Sequence[ToolCall] | None) -> Score:
    right = not calls
    return Score(right, float(right), "(no call)" if right else " ".join(c.canonical() for c in calls or []))


def json_schema(item: EvalItem, reply: str) -> Score:
    try:
        value = parse_json(reply)
    except ValueError:
        return Score(False, 0.0, None)
    problem = validate(value, item.schema or {})
    return Score(problem is None, float(problem is None), json.dumps(value, ensure_ascii=False)[:200])


def leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) of each field, objects flattened by key (lists are one field)."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}" if path else str(key))
    else:
        yield path, value


def json_fields(item: EvalItem, reply: str) -> Score:
    try:
        value = parse_json(reply)
    except ValueError:
        return Score(False, 0.0, None)
    try:
        reference = json.loads(item.answer or "")
    except ValueError:
        reference = item.answer
    want = dict(leaves(reference))
    got = dict(leaves(value))
    share = sum(1 for path, v in want.items() if path in got and same_value(v, got[path])) / len(want) if want else 1.0
    valid = item.schema is None or validate(value, item.schema) is None
    return Score(share == 1.0 and valid, share, json.dumps(value, ensure_ascii=False)[:200])


def score_structured(name: str, item: EvalItem, reply: str, calls: Sequence[ToolCall] | None) -> Score:
    if name == "tool-call":
        return tool_call(item, calls)
    if name == "no-call":
        return no_call(item, calls)
    if name == "json-schema":
        return json_schema(item, reply)
    if name == "json-fields":
        return json_fields(item, reply)
    raise ValueError(f"unknown scorer {name!r}")
