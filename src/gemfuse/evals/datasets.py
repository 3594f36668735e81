"""Eval sets: items with a prompt, a reference answer and, for multiple choice, the options; split dev / test.

Sources, by what `DATASET` names:
- `builtin:<set>`: a seeded generator (see generators.py);
- a JSONL file, one item a line: `{"prompt": ..., "answer": ...}`, `{"messages": [...], "answer": ...}` (media
  parts as in training data), or a chat whose last turn is the assistant's reference answer (a fine-tune's
  validation file evaluates as it is). Optional: `id`, `choices` (a list; `answer` is a letter, an index or the
  option's text), `split` (dev | test), `instruction`. GSM8K rows (`question`, `answer` ending `#### 72`) too;
- function calls and JSON answers: a row with `tools` whose reference is the assistant's `tool_calls` (or xLAM's
  `query` / `tools` / `answers`), `acceptable` for more right answers (each a list of calls), a text reference for
  "no call fits"; a row with `response_format` whose reference is the JSON answer (none: any valid answer);
- a `datasets` folder (save_to_disk) or a .parquet / .csv / .json file with the same columns.

"The best single member" is chosen on dev and every system is scored on test; without a `split` column a seeded
shuffle puts `dev_fraction` of the items in dev.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..errors import GemfuseError
from ..messages import AudioPart, ImagePart, Message, Part, TextPart, sniff_image
from ..tool_calls import ToolCall, ToolSet
from .generators import CHOICE_INSTRUCTION, LETTERS, generate

Kind = Literal["number", "choice", "text"]
DEV_NAMES = {"dev", "validation", "val", "valid", "train"}
TEST_NAMES = {"test"}
NUMBER = re.compile(r"^[-+]?\d[\d,]*(\.\d+)?$")


class DatasetError(GemfuseError):
    """An eval set cannot be read; the message names the file, the line and the field."""


@dataclass
class EvalItem:
    id: str
    messages: list[Message]
    answer: str | None
    choices: list[str] | None = None
    split: Literal["dev", "test"] = "test"
    where: str = ""  # file:line, for messages about this item
    tags: list[str] = field(default_factory=list)
    tools: ToolSet | None = None  # the functions the item offers (asked of every system)
    schema: dict | None = None  # the JSON schema its answer keeps to
    calls: list[list[ToolCall]] | None = None  # the right answers when they are calls; [[]]: no call fits

    @property
    def question(self) -> str:
        return "\n".join(m.text for m in self.messages if m.role == "user")


@dataclass
class RowPrompt:
    """What a row asks (its turns, tools and schema) and the answer it holds, if any."""

    messages: list[Message]
    answer: Any
    tools: ToolSet | None = None
    schema: dict | None = None
    calls: list[list[ToolCall]] | None = None


@dataclass
class EvalSet:
    name: str
    items: list[EvalItem]
    kind: Kind

    @property
    def dev(self) -> list[EvalItem]:
        return [i for i in self.items if i.split == "dev"]

    @property
    def test(self) -> list[EvalItem]:
        return [i for i in self.items if i.split == "test"]


def load_eval_set(source: str | Path, n: int | None = None, seed: int = 0, dev_fraction: float = 0.25) -> EvalSet:
    """The items of `source` (the first `n`), each with its split."""
    name = str(source)
    if name.startswith("builtin:"):
        try:
            rows = [(f"{name}#{i}", row) for i, row in enumerate(generate(name.removeprefix("builtin:"), n or 60, seed))]
        except ValueError as exc:
            raise DatasetError(str(exc)) from None
        root = Path.cwd()
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise DatasetError(f"{source}: no such file or folder (or use builtin:arithmetic, builtin:word, ...)")
        rows, root = read_rows(path), (path.parent if path.is_file() else path)
    rows = rows[:n] if n else rows
    if not rows:
        raise DatasetError(f"{source}: no items")
    items, problems = [], []
    for index, (where, row) in enumerate(rows):
        try:
            items.append(_item(row, where, index, root))
        except DatasetError as exc:
            problems.append(str(exc))
    if problems:
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DatasetError(f"{len(problems)} bad item(s) in {source}; fix them and run again:\n"
                           + "\n".join(problems[:20]) + more)
    _check_unique_ids(items)
    _assign_splits(items, seed, dev_fraction, explicit=any("split" in row for _, row in rows))
    return EvalSet(name, items, _kind(items))


def read_rows(path: Path) -> list[tuple[str, dict]]:
    if path.is_file() and path.suffix == ".jsonl":
        rows = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{number}: invalid JSON: {exc.msg} at column {exc.colno}") from None
                if not isinstance(row, dict):
                    raise DatasetError(f"{path}:{number}: each line must be a JSON object")
                rows.append((f"{path}:{number}", row))
        return rows
    from ..data.sources import load_table

    table = load_table(path)
    return [(f"{path}:row {i}", dict(row)) for i, row in enumerate(table)]


def prompt_and_reference(row: dict, where: str, root: Path) -> RowPrompt:
    """A row's prompt (ending with a user turn, or a tool's result) and its reference answer, if any: from
    `messages` (a last assistant turn is the reference unless the row gives `answer`; its calls are the reference
    when the row has tools), or `prompt` / `question` with `answer` (GSM8K's "... #### 42" read as 42), or xLAM's
    `query` / `tools` / `answers`; a number as text. The one reader of eval items and distil prompts."""
    if {"query", "tools", "answers"} <= row.keys() and "messages" not in row:
        from ..data.tool_importers import from_xlam

        try:
            row = {**{k: v for k, v in row.items() if k not in ("query", "answers")}, **from_xlam(row)}
        except GemfuseError as exc:
            raise DatasetError(f"{where}: {exc}") from None
    answer = row.get("answer")
    tools, schema, calls = None, None, None
    if "messages" in row:
        messages, tools, schema = row_messages(row, where, root)
        if messages and messages[-1].role == "assistant":
            last = messages.pop()  # a chat's last assistant turn is the reference
            answer = answer if answer is not None else (last.text if last.text or not last.tool_calls else None)
            if tools is not None and tools.active:
                calls = [last.tool_calls]
        if not messages or messages[-1].role not in ("user", "tool"):
            raise DatasetError(f"{where}: messages: must end with a user turn (or a tool's result; then the "
                               "reference answer as the assistant's)")
    else:
        prompt = row.get("prompt", row.get("question"))
        if not isinstance(prompt, str) or not prompt.strip():
            raise DatasetError(f"{where}: needs 'prompt' (or 'question', or 'messages') as text; has "
                               f"{', '.join(sorted(row)) or 'nothing'}")
        if "question" in row and isinstance(answer, str) and "####" in answer:
            answer = answer.rsplit("####", 1)[1].strip().replace(",", "")  # GSM8K: the number after ####
        messages = [Message.user(prompt)]
    if row.get("acceptable") is not None:
        calls = (calls or []) + _acceptable(row["acceptable"], where)
    if calls is not None and (tools is None or not tools.active):
        raise DatasetError(f"{where}: tools: the reference is function calls, but the row offers no tools")
    if isinstance(answer, int | float) and not isinstance(answer, bool):
        answer = str(answer)
    if isinstance(answer, dict | list) and schema is not None:  # a JSON answer given as JSON
        answer = json.dumps(answer, ensure_ascii=False)
    return RowPrompt(messages, answer, tools, schema, calls)


def _acceptable(value: Any, where: str) -> list[list[ToolCall]]:
    """`acceptable`: more right answers, each a list of calls (OpenAI's shape or {name, arguments})."""
    if not isinstance(value, list) or not all(isinstance(answer, list) for answer in value):
        raise DatasetError(f"{where}: acceptable: must be a list of answers, each a list of calls")
    found = []
    for i, answer in enumerate(value):
        calls = []
        for j, call in enumerate(answer):
            spelled = call if isinstance(call, dict) and "function" in call else {"function": call}
            try:
                calls.append(ToolCall.from_openai(spelled, f"acceptable[{i}][{j}]"))
            except GemfuseError as exc:
                raise DatasetError(f"{where}: {exc}") from None
        found.append(calls)
    return found


def _item(row: dict, where: str, index: int, root: Path) -> EvalItem:
    asked = prompt_and_reference(row, where, root)
    messages, answer = asked.messages, asked.answer
    if asked.calls is not None:  # shown in reports as the first right answer
        answer = answer if asked.calls == [[]] else " ".join(c.canonical() for c in asked.calls[0])
        answer = answer or "(no call)"
    elif asked.schema is not None and answer is None:
        answer = ""  # any answer that satisfies the schema
    if answer is not None and not isinstance(answer, str):
        raise DatasetError(f"{where}: answer: must be text or a number, got {type(answer).__name__}")
    choices = row.get("choices")
    if choices is not None:
        if not isinstance(choices, list | tuple) or not 2 <= len(choices) <= 10 or \
                not all(isinstance(c, str | int | float) for c in choices):
            raise DatasetError(f"{where}: choices: must be a list of 2 to 10 options (text or numbers)")
        choices = [str(c) for c in choices]
        answer = _choice_letter(answer, choices, where)
        _add_options(messages, choices, row.get("instruction") or CHOICE_INSTRUCTION)
    elif isinstance(row.get("instruction"), str):
        _append_text(messages, row["instruction"])
    if answer is None:
        raise DatasetError(f"{where}: answer: missing (every item needs a reference answer)")
    ident = row.get("id")
    return EvalItem(id=str(ident) if ident is not None else f"item-{index}", messages=messages, answer=answer,
                    choices=choices, where=where, tags=list(row.get("tags") or []),
                    split=_split_name(row.get("split"), where), tools=asked.tools, schema=asked.schema,
                    calls=asked.calls)


def row_messages(row: dict, where: str, root: Path) -> tuple[list[Message], ToolSet | None, dict | None]:
    """The row's turns as messages (calls and tool results included), its tools and its answer's schema."""
    from ..data.schema import parse_example

    example = parse_example(row, where.rsplit(":", 1)[0], 0, root)
    errors = [i for i in example.issues if i.severity == "error"]
    if errors:
        raise DatasetError(f"{where}: {errors[0].message}")
    messages = []
    for turn in example.turns:
        parts: list[Part] = []
        for part in turn.parts:
            if isinstance(part, str):
                parts.append(TextPart(part))
            elif part.kind == "image":
                data = part.read()
                parts.append(ImagePart(data=data, mime_type=sniff_image(data) or "image/png"))
            else:
                parts.append(AudioPart(data=part.read(), format=part.format or "wav"))
        messages.append(Message(turn.role, parts, list(turn.calls), turn.call_id))  # type: ignore[arg-type]
    return messages, example.tools, example.schema


def _choice_letter(answer: Any, choices: list[str], where: str) -> str:
    letters = LETTERS if len(choices) <= 4 else "ABCDEFGHIJ"
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < len(choices):
        return letters[answer]
    text = str(answer).strip() if answer is not None else ""
    if len(text) == 1 and text.upper() in letters[:len(choices)]:
        return text.upper()
    if text in choices:
        return letters[choices.index(text)]
    raise DatasetError(f"{where}: answer: {answer!r} is neither a letter A-{letters[len(choices) - 1]}, an index, "
                       "nor the text of one of the choices")


def _add_options(messages: list[Message], choices: list[str], instruction: str) -> None:
    options = "\n".join(f"{'ABCDEFGHIJ'[i]}) {c}" for i, c in enumerate(choices))
    _append_text(messages, f"\n\n{options}\n\n{instruction}")


def _append_text(messages: list[Message], text: str) -> None:
    last = messages[-1]
    sep = "" if text.startswith("\n") else " "
    if last.parts and isinstance(last.parts[-1], TextPart):
        last.parts[-1] = TextPart(last.parts[-1].text + sep + text)
    else:
        last.parts.append(TextPart(text.lstrip()))


def _split_name(value: Any, where: str) -> Literal["dev", "test"]:
    if value is None or str(value).lower() in TEST_NAMES:
        return "test"
    if str(value).lower() in DEV_NAMES:
        return "dev"
    raise DatasetError(f"{where}: split: {value!r} is not dev or test")


def _check_unique_ids(items: Iterable[EvalItem]) -> None:
    seen: dict[str, str] = {}
    for item in items:
        if item.id in seen:
            raise DatasetError(f"{item.where}: id: {item.id!r} is also the id of {seen[item.id]}; ids must be unique")
        seen[item.id] = item.where


def _assign_splits(items: list[EvalItem], seed: int, dev_fraction: float, explicit: bool) -> None:
    if explicit:
        return
    order = sorted(range(len(items)), key=lambda i: items[i].id)
    random.Random(seed).shuffle(order)
    n_dev = round(len(items) * dev_fraction)
    if dev_fraction > 0 and len(items) >= 4:
        n_dev = min(max(n_dev, 1), len(items) - 1)
    for rank, i in enumerate(order):
        items[i].split = "dev" if rank < n_dev else "test"


def _kind(items: list[EvalItem]) -> Kind:
    if all(i.choices for i in items):
        return "choice"
    if all(i.answer is not None and NUMBER.match(i.answer.strip()) for i in items):
        return "number"
    return "text"
