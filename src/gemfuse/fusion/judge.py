"""The judge: prompts from data files, candidates anonymised and shuffled with a recorded seed, lenient parsing
with one repair retry, and the chain judge -> backup judge. Callers fall back to a vote when both fail.
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
from .trace import Call

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


def parse_choice(text: str, count: int) -> int | None:
    """A 1-based choice from a judge's reply: JSON first, then `best: N`, then 'Answer N', then a lone number."""
    for blob in re.findall(r"\{[^{}]*\}", text):
        try:
            data = json.loads(blob)
        except ValueError:
            continue
        for key in ("best", "choice", "answer", "index"):
            value = data.get(key) if isinstance(data, dict) else None
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            if isinstance(value, int) and 1 <= value <= count:
                return value
    for pattern in (r'"?best"?\s*[:=]\s*"?(\d+)', r"\banswer\s*#?\s*(\d+)", r"\b(\d+)\b"):
        for match in re.finditer(pattern, text, re.IGNORECASE):
            value = int(match.group(1))
            if 1 <= value <= count:
                return value
    return None


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


def judge_request(run: FusionRun, name: str, role: str, messages: list[Message]) -> Request:
    options = GenerateOptions(max_tokens=run.preset.judge_max_tokens, temperature=0)
    timeout = run.preset.judge_timeout_ms / 1000 if run.preset.judge_timeout_ms else None
    return Request(name, name, messages, options, timeout, role=role)


async def pick_best(run: FusionRun, candidates: Sequence[Call], salt: int = 0) -> Call | None:
    """Ask the judge (then the backup) which candidate is best; None if neither gives a readable choice."""
    order = shuffled(run, candidates, salt)
    if salt == 0:
        run.trace.shown_order = [c.member for c in order]
    template = prompt("best_of")
    messages = [Message.system(template["system"].substitute()),
                Message.user(template["user"].substitute(question=render_question(run.messages),
                                                         answers=render_answers([c.text for c in order]),
                                                         count=len(order)))]
    for name, role in judges(run):
        if run.over_budget():
            run.trace.degrade("max_cost reached before judging")
            return None
        call = await run.call(judge_request(run, name, role, messages))
        if not call.ok:
            run.trace.degrade(f"{role} {name} failed: {call.error}")
            continue
        choice = parse_choice(call.text, len(order))
        if choice is None:
            repair = prompt("repair")["user"].substitute(count=len(order))
            retry = await run.call(judge_request(run, name, "repair",
                                                 [*messages, Message.assistant(call.text), Message.user(repair)]))
            choice = parse_choice(retry.text, len(order)) if retry.ok else None
        if choice is None:
            run.trace.degrade(f"{role} {name} gave no readable choice")
            continue
        if salt == 0:
            run.trace.judge_choice = choice
            run.trace.judge_rationale = reason_of(call.text) or call.text.strip()[:500]
        return order[choice - 1]
    return None


async def merge_answers(run: FusionRun, candidates: Sequence[Call]) -> str | None:
    """The judge's merged final answer, streamed after its FINAL ANSWER marker; None if every judge failed."""
    order = shuffled(run, candidates)
    run.trace.shown_order = [c.member for c in order]
    template = prompt("merge")
    messages = [Message.system(template["system"].substitute()),
                Message.user(template["user"].substitute(question=render_question(run.messages),
                                                         answers=render_answers([c.text for c in order])))]
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
            await self.run.emit({"type": "delta", "text": final[self.sent:]})
            self.sent = len(final)

    async def finish(self) -> None:
        if self.start is None:
            final = self.buffer.strip()
            if final:
                await self.run.emit({"type": "delta", "text": final})
            return
        rest = self.buffer[self.start:].rstrip()[self.sent:]
        if rest:
            await self.run.emit({"type": "delta", "text": rest})
