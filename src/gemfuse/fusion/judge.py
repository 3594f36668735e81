"""The judge: prompts from data files, candidates anonymised and shuffled with a recorded seed, replies held to
an explicit verdict (constrained to the verdict JSON where the backend can), one repair retry, and the chain
judge -> backup judge. Callers fall back to a vote when both fail.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import random
import re
import string
import tomllib
from collections.abc import Sequence

from ..messages import Message
from ..models.base import GenerateOptions
from .engine import FusionRun, Request
from .events import Delta
from .trace import Call, Verdict

FINAL_MARKER = re.compile(r"final\s+answer\s*:", re.IGNORECASE)
ANALYSIS_MARKER = re.compile(r"^\s*analysis\s*:\s*", re.IGNORECASE)


@functools.cache
def prompt(name: str) -> dict[str, string.Template]:
    text = importlib.resources.files("gemfuse.fusion").joinpath(f"prompts/{name}.toml").read_text("utf-8")
    return {key: string.Template(value) for key, value in tomllib.loads(text).items()}


def render_question(messages: Sequence[Message]) -> str:
    """The conversation as plain text; media stand as [image] / [audio] (judges need not see them)."""
    if len(messages) == 1:
        return _text_of(messages[0])
    return "\n".join(f"{m.role}: {_text_of(m)}" for m in messages)


def _text_of(message: Message) -> str:
    return " ".join(p.text if p.type == "text" else f"[{p.type}]" for p in message.parts).strip()


def render_answers(texts: Sequence[str]) -> str:
    return "\n\n".join(f"Answer {i}:\n{text.strip()}" for i, text in enumerate(texts, 1))


def shuffled(run: FusionRun, candidates: Sequence[Call], salt: int = 0) -> list[Call]:
    """Candidates in a seeded random order, so position bias does not favour a fixed member."""
    order = list(candidates)
    random.Random(run.seed + salt).shuffle(order)
    return order


# The prompt's own example: copied back, it is no verdict.
PLACEHOLDER_REASONS = {"<why, in one short sentence>", "one short sentence", "..."}
_TRUNCATED_JSON = re.compile(r'^\s*\{\s*"best"\s*:\s*"?(\d+)"?\s*[,}]')
_EXPLICIT = [re.compile(p, re.IGNORECASE) for p in (
    r'(?<![\w"])best\s*[:=]\s*"?#?(\d+)\b',  # best: 2
    r"\bbest\s+(?:answer|candidate|one|response)\s+is\s+(?:answer\s+|candidate\s+|number\s+|no\.?\s*|#)?(\d+)\b",
    r"\b(?:answer|candidate|response)\s*#?(\d+)\s+is\s+(?:the\s+)?(?:best|most\s+correct)\b",
    r"\bI\s+(?:choose|pick|select|prefer)\s+(?:answer|candidate|response)\s*#?(\d+)\b",
)]


def parse_verdict(text: str, count: int) -> tuple[int | None, str | None]:
    """(choice, how it was read) from a judge's reply: the verdict JSON the prompt asks for ("json"), or an
    explicit verdict form such as "best: 2" or "Answer 2 is best" ("explicit"); else (None, None). A number
    that is part of an answer ("The answer is 2.") and the prompt's example copied back are no verdict."""
    for blob in re.findall(r"\{[^{}]*\}", text):
        try:
            data = json.loads(blob)
        except ValueError:
            continue
        if not isinstance(data, dict) or str(data.get("reason", "")).strip() in PLACEHOLDER_REASONS:
            continue
        value = data.get("best", data.get("choice"))
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= count:
            return value, "json"
    truncated = _TRUNCATED_JSON.match(text)  # a constrained reply cut short inside its reason
    if truncated and 1 <= int(truncated.group(1)) <= count and "}" not in text:
        return int(truncated.group(1)), "json"
    found = {int(m.group(1)) for pattern in _EXPLICIT for m in pattern.finditer(text)}
    if len(found) == 1 and 1 <= (value := found.pop()) <= count:
        return value, "explicit"
    return None, None


def parse_choice(text: str, count: int) -> int | None:
    """The 1-based choice of a judge's reply, or None when it gave no explicit verdict."""
    return parse_verdict(text, count)[0]


def verdict_schema(count: int) -> dict:
    """The JSON a constrained judge may write: the number of one shown answer, then a short reason."""
    return {"type": "object", "properties": {"best": {"enum": list(range(1, count + 1))},
                                             "reason": {"type": "string", "maxLength": 160}},
            "required": ["best", "reason"], "additionalProperties": False}


def reason_of(text: str) -> str | None:
    for blob in re.findall(r"\{[^{}]*\}", text):
        try:
            data = json.loads(blob)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("reason"), str):
            return data["reason"]
    return None


def judges(run: FusionRun) -> list[tuple[str, str]]:
    preset = run.preset
    return [(name, role) for name, role in ((preset.judge, "judge"), (preset.backup_judge, "backup_judge")) if name]


def judge_request(run: FusionRun, name: str, role: str, messages: list[Message], schema: dict | None = None) -> Request:
    options = GenerateOptions(max_tokens=run.preset.judge_max_tokens, temperature=0, json_schema=schema,
                              json_lenient=True)  # a verdict is read from any reply, JSON or not
    timeout = run.preset.judge_timeout_ms / 1000 if run.preset.judge_timeout_ms else None
    return Request(name, name, messages, options, timeout, role=role)


def rotated(order: Sequence[Call]) -> list[Call]:
    """The swap check's order: every candidate one place on, so each is shown at another position."""
    return [*order[1:], *order[:1]]


async def pick_best(run: FusionRun, order: Sequence[Call], pass_: int = 1) -> Call | None:
    """Ask the judge (then the backup) which of `order`, shown as given, is best; None without an explicit
    verdict from either. Every attempt is recorded in trace.verdicts."""
    if pass_ == 1:
        run.trace.shown_order = [c.member for c in order]
    template = prompt("best_of")
    messages = [Message.system(template["system"].substitute()),
                Message.user(template["user"].substitute(question=render_question(run.messages),
                                                         answers=render_answers([c.said for c in order]),
                                                         count=len(order)))]
    schema = verdict_schema(len(order))
    for name, role in judges(run):
        if run.over_budget():
            run.trace.degrade("max_cost reached before judging")
            return None
        call = await run.call(judge_request(run, name, role, messages, schema))
        if not call.ok:
            run.trace.degrade(f"{role} {name} failed: {call.error}")
            continue
        choice, read_as = _record(run, pass_, name, role, order, call.text)
        if choice is None:
            repair = prompt("repair")["user"].substitute(count=len(order))
            retry = await run.call(judge_request(run, name, "repair",
                                                 [*messages, Message.assistant(call.text), Message.user(repair)],
                                                 schema))
            if retry.ok:
                choice, read_as = _record(run, pass_, name, "repair", order, retry.text)
        if choice is None:
            run.trace.degrade(f"{role} {name} gave no readable choice")
            continue
        if pass_ == 1:
            run.trace.judge_choice = choice
            run.trace.judge_rationale = reason_of(call.text) or call.text.strip()[:500]
        return order[choice - 1]
    return None


def _record(run: FusionRun, pass_: int, name: str, role: str, order: Sequence[Call], text: str):
    choice, read_as = parse_verdict(text, len(order))
    run.trace.verdicts.append(Verdict(pass_, name, role, [c.member for c in order], choice, read_as,
                                      text.strip()[:300]))
    return choice, read_as


async def merge_answers(run: FusionRun, candidates: Sequence[Call]) -> str | None:
    """The judge's merged final answer, streamed after its FINAL ANSWER marker; None if every judge failed."""
    order = shuffled(run, candidates)
    run.trace.shown_order = [c.member for c in order]
    template = prompt("merge")
    messages = [Message.system(template["system"].substitute()),
                Message.user(template["user"].substitute(question=render_question(run.messages),
                                                         answers=render_answers([c.said for c in order])))]
    for name, role in judges(run):
        if run.over_budget():
            run.trace.degrade("max_cost reached before merging")
            return None
        splitter = FinalAnswerStream(run)
        call = await run.call(judge_request(run, name, role, messages), on_text=splitter.feed)
        if call.ok:
            analysis, final = split_final(call.text)
            if final:
                await splitter.finish()
                run.trace.judge_rationale = analysis
                return final
            call.error, call.message = "empty", "no final answer after the analysis"
        run.trace.degrade(f"{role} {name} failed: {call.error}")
    return None


def split_final(text: str) -> tuple[str | None, str]:
    """(analysis, final answer). Without a FINAL ANSWER marker the whole reply is the answer."""
    match = FINAL_MARKER.search(text)
    if not match:
        return None, text.strip()
    analysis = ANALYSIS_MARKER.sub("", text[:match.start()]).strip() or None
    return analysis, text[match.end():].strip()


class FinalAnswerStream:
    """Forwards a judge's streamed text to the fusion's listeners from the FINAL ANSWER marker on. If the
    marker never comes, the whole reply is the answer and is sent when the judge finishes."""

    def __init__(self, run: FusionRun):
        self.run = run
        self.buffer = ""
        self.sent = 0  # characters of the final answer already sent
        self.start: int | None = None

    async def feed(self, text: str) -> None:
        self.buffer += text
        if self.start is None:
            match = FINAL_MARKER.search(self.buffer)
            if not match:
                return
            self.start = match.end()
        # hold back leading whitespace so the answer starts cleanly
        final = self.buffer[self.start:].lstrip() if self.sent == 0 else self.buffer[self.start:]
        if self.sent == 0:
            self.start = len(self.buffer) - len(final)
            final = self.buffer[self.start:]
        if len(final) > self.sent:
            await self.run.emit(Delta(final[self.sent:]))
            self.sent = len(final)

    async def finish(self) -> None:
        if self.start is None:
            final = self.buffer.strip()
            if final:
                await self.run.emit(Delta(final))
            return
        rest = self.buffer[self.start:].rstrip()[self.sent:]
        if rest:
            await self.run.emit(Delta(rest))
