"""Scorers: did a reply get the item right? Each returns a Score: correct or not, a value in [0, 1] and what was
read from the reply, so a report can show why.

- exact: the reply's answer (after "answer:" / "the answer is", its first line) equals the reference after
  normalisation (case, punctuation, articles, spaces);
- numeric: the reply's final number equals the reference within a relative tolerance;
- choice: the option letter (or the option's text) named in the reply;
- regex: the reference is a pattern the reply must contain, or with `pattern` the pattern's first group read
  from the reply must equal the reference;
- rubric: an evaluator model compares the reply with the reference on a rubric, pairwise, in both orders; a
  disagreement between the orders is a tie, kept as a tie (0.5). Correct means "at least as good as the reference".
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..fusion.extract import letter
from .datasets import EvalItem

_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")
_MARKERS = (re.compile(r"####\s*(.*)", re.DOTALL), re.compile(r"\\boxed\{([^{}]*)\}"),
            re.compile(r"(?:final answer|the answer is|answer)\s*(?:is|:|=)?\s*(.+)", re.IGNORECASE | re.DOTALL))
_ARTICLES = re.compile(r"\b(a|an|the)\b")


@dataclass
class Score:
    correct: bool
    value: float  # 1.0 right, 0.0 wrong; rubric: 1 better, 0.5 tie, 0 worse than the reference
    extracted: str | None  # what was read from the reply


def normalise(text: str) -> str:
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(_ARTICLES.sub(" ", text).split())


def focus(text: str) -> str:
    """The part of a reply that states the answer: after '####', inside \\boxed{}, after 'the answer is'."""
    for marker in _MARKERS:
        found = marker.findall(text)
        if found:
            return found[-1]
    return text


def final_number(text: str) -> float | None:
    """The number a reply gives as its answer: the first after an answer marker, else the last one."""
    marked = focus(text)
    numbers = _NUMBER.findall(marked)
    if not numbers:
        return None
    raw = (numbers[0] if marked is not text else numbers[-1]).replace(",", "")
    try:
        return float(raw)
    except ValueError:
        return None


def exact(item: EvalItem, reply: str) -> Score:
    answer = normalise(item.answer or "")
    lines = [line for line in focus(reply).strip().splitlines() if line.strip()]
    said = normalise(lines[0]) if lines else ""
    return Score(bool(answer) and (said == answer or normalise(reply) == answer), float(said == answer), said)


def contains(item: EvalItem, reply: str) -> Score:
    """The reference, as whole words, anywhere in the reply ("The capital is Lima." for "Lima"): for answers
    given in sentences."""
    answer = normalise(item.answer or "")
    said = normalise(reply)
    right = bool(answer) and f" {answer} " in f" {said} "
    return Score(right, float(right), answer if right else (said[:80] or None))


def numeric(item: EvalItem, reply: str, tolerance: float = 1e-6) -> Score:
    expected = float((item.answer or "nan").replace(",", ""))
    got = final_number(reply)
    right = got is not None and math.isclose(got, expected, rel_tol=tolerance, abs_tol=tolerance)
    shown = None if got is None else (str(int(got)) if got.is_integer() else repr(got))
    return Score(right, float(right), shown)


def choice(item: EvalItem, reply: str) -> Score:
    said = letter(reply)
    if said is None and item.choices:  # the option's own text instead of its letter
        wanted = normalise(focus(reply).strip().splitlines()[0] if reply.strip() else "")
        for i, option in enumerate(item.choices):
            if normalise(option) == wanted:
                said = "ABCDEFGHIJ"[i]
    if said is not None and item.choices and "ABCDEFGHIJ".index(said) >= len(item.choices):
        said = None
    right = said is not None and said == (item.answer or "").upper()
    return Score(right, float(right), said)


def regex(item: EvalItem, reply: str, pattern: str | None = None) -> Score:
    if pattern is None:
        found = re.search(item.answer or "", reply, re.IGNORECASE)
        return Score(found is not None, float(found is not None), found.group(0) if found else None)
    found = re.search(pattern, reply, re.IGNORECASE)
    said = (found.group(1) if found.groups() else found.group(0)) if found else None
    right = said is not None and normalise(said) == normalise(item.answer or "")
    return Score(right, float(right), said)


SCORERS = ("exact", "contains", "numeric", "choice", "regex", "rubric")


def default_scorer(kind: str) -> str:
    return {"number": "numeric", "choice": "choice"}.get(kind, "exact")


def scorer_for(name: str, *, tolerance: float = 1e-6, pattern: str | None = None) -> Callable[[EvalItem, str], Score]:
    """The plain (model-free) scorer `name`."""
    if name == "exact":
        return exact
    if name == "contains":
        return contains
    if name == "numeric":
        return lambda item, reply: numeric(item, reply, tolerance)
    if name == "choice":
        return choice
    if name == "regex":
        if pattern is not None:
            re.compile(pattern)  # a bad pattern fails here, before any model is called
        return lambda item, reply: regex(item, reply, pattern)
    raise ValueError(f"unknown scorer {name!r}; known: {', '.join(SCORERS)}")


# -- rubric: an evaluator model, pairwise, both orders ------------------------------------------------------------
DEFAULT_RUBRIC = "Which answer answers the question correctly, completely and without made-up facts?"
RUBRIC_SYSTEM = ("You compare two answers to the same question against a rubric. Reply with JSON only: "
                 '{"better": 1} or {"better": 2} or {"better": "tie"}.')
_VERDICT = re.compile(r'"?better"?\s*[:=]\s*"?(1|2|tie)\b', re.IGNORECASE)

Ask = Callable[[str, str], Awaitable[str]]  # (system, user) -> the evaluator's reply


def read_verdict(text: str) -> str | None:
    """'1', '2' or 'tie' from the evaluator's reply; None when it gave no verdict."""
    for blob in re.findall(r"\{[^{}]*\}", text):
        try:
            value = json.loads(blob).get("better")
        except (ValueError, AttributeError):
            continue
        if str(value).lower() in ("1", "2", "tie"):
            return str(value).lower()
    match = _VERDICT.search(text)
    return match.group(1).lower() if match else None


def rubric_prompt(item: EvalItem, first: str, second: str, rubric: str) -> str:
    return (f"Question:\n{item.question}\n\nRubric: {rubric}\n\nAnswer 1:\n{first.strip()}\n\n"
            f"Answer 2:\n{second.strip()}\n\nWhich answer is better by the rubric? Reply with JSON only.")


async def rubric(item: EvalItem, reply: str, ask: Ask, rubric_text: str = DEFAULT_RUBRIC) -> Score:
    """The reply against the reference answer, shown both ways round; ties and disagreements count 0.5."""
    reference = item.answer or ""
    as_second = read_verdict(await ask(RUBRIC_SYSTEM, rubric_prompt(item, reference, reply, rubric_text)))
    as_first = read_verdict(await ask(RUBRIC_SYSTEM, rubric_prompt(item, reply, reference, rubric_text)))
    outcomes = [{"2": 1.0, "1": 0.0}.get(as_second or "", 0.5), {"1": 1.0, "2": 0.0}.get(as_first or "", 0.5)]
    value = 0.5 if outcomes[0] != outcomes[1] else outcomes[0]
    return Score(value >= 0.5, value, f"reference first: {as_second or 'none'}, reply first: {as_first or 'none'}")
