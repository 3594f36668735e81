"""A function-calling task of our own making: invented functions (enums, integers, numbers, optional fields)
asked in many phrasings, with a noisy teacher pool that knows the right calls.

- `train`: prompts for the seen functions in the training phrasings and values (no reference: a teacher labels
  them);
- `held_out`: the seen functions in phrasings and numbers never trained on, each with its right call;
- `unseen`: functions never trained on at all (does the format carry over?);
- `control`: the training prompts with calls to the wrong function (valid arguments, chosen at random): a model
  trained on them learns the format and nothing of which call fits.

`noisy_member(task, share, seed)` answers every prompt with the right call, each argument wrong with
probability `share`, independently of the other members (another seed).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..messages import Message
from ..tool_calls import ToolCall


@dataclass(frozen=True)
class Argument:
    name: str
    kind: str  # enum, integer, number
    values: tuple[Any, ...]  # enum: its values; numbers: those trained on
    held: tuple[Any, ...] = ()  # numbers only asked in held-out prompts
    optional: bool = False

    def schema(self) -> dict[str, Any]:
        if self.kind == "enum":
            return {"type": "string", "enum": list(self.values)}
        return {"type": self.kind}


@dataclass(frozen=True)
class Function:
    name: str
    description: str
    arguments: tuple[Argument, ...]
    train: tuple[str, ...]  # phrasings, {argument} placeholders; optional ones in brackets [ ... {mode}]
    held: tuple[str, ...]

    def tool(self) -> dict[str, Any]:
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": {"type": "object", "properties": {a.name: a.schema() for a in self.arguments},
                           "required": [a.name for a in self.arguments if not a.optional],
                           "additionalProperties": False}}}


THERMOSTAT = Function(
    "set_thermostat", "Set a room's heating",
    (Argument("room", "enum", ("kitchen", "bedroom", "office", "hallway")),
     Argument("celsius", "integer", (16, 18, 20, 22, 24, 26), held=(17, 19, 21, 23, 25)),
     Argument("mode", "enum", ("heat", "cool"), optional=True)),
    ("Set the {room} to {celsius} degrees[ on {mode}].", "Make the {room} {celsius} C[, {mode} mode].",
     "I want {celsius} degrees in the {room}[ ({mode})].", "Thermostat: {room}, {celsius}[, {mode}].",
     "Could you put the {room} at {celsius} degrees[ using {mode}]?", "{room} should be {celsius} degrees[, {mode}]."),
    ("Please heat or cool the {room} so it reads {celsius} degrees[ in {mode} mode].",
     "The {room} needs to be at {celsius} C[; use {mode}]."))
COURT = Function(
    "book_court", "Book a sports court",
    (Argument("sport", "enum", ("tennis", "squash", "padel")),
     Argument("players", "integer", (2, 4), held=(3,)),
     Argument("day", "enum", ("monday", "tuesday", "friday", "sunday"))),
    ("Book a {sport} court for {players} players on {day}.", "{sport} on {day}, {players} of us.",
     "Reserve {sport} for {day}, {players} people.", "Get us a {sport} court {day} for {players}.",
     "Can you book {sport} on {day}? We are {players}.", "{players} players want {sport} on {day}."),
    ("We'd like to play {sport} on {day}; there will be {players} of us.",
     "Find a {sport} court on {day} for a group of {players}."))
PAINT = Function(
    "order_paint", "Order paint",
    (Argument("colour", "enum", ("teal", "amber", "crimson", "ivory")),
     Argument("litres", "number", (1, 2.5, 4, 10), held=(3, 7.5)),
     Argument("finish", "enum", ("matte", "gloss"), optional=True)),
    ("Order {litres} litres of {colour} paint[, {finish}].", "I need {litres} L of {colour}[ in {finish}].",
     "Buy {colour} paint, {litres} litres[, {finish} finish].", "{litres} litres of {colour}[ ({finish})], please.",
     "Get me {colour} paint: {litres} litres[, {finish}].", "Paint order: {colour}, {litres} L[, {finish}]."),
    ("Could you order some {colour} paint, {litres} litres of it[, with a {finish} finish]?",
     "We are short of {colour}: order {litres} litres[ in {finish}]."))
GARDEN = Function(
    "water_garden", "Water part of the garden",
    (Argument("zone", "enum", ("roses", "lawn", "herbs")),
     Argument("minutes", "integer", (), held=(5, 10, 15, 20))),
    (), ("Water the {zone} for {minutes} minutes.", "Give the {zone} {minutes} minutes of water."))
FISH = Function(
    "feed_fish", "Feed the fish in a tank",
    (Argument("tank", "enum", ("reef", "pond")),
     Argument("grams", "number", (), held=(2, 3.5, 5))),
    (), ("Feed the {tank} tank {grams} grams.", "Put {grams} g of food in the {tank} tank."))
SEEN = (THERMOSTAT, COURT, PAINT)
UNSEEN = (GARDEN, FISH)


@dataclass
class CallTask:
    train: Path  # prompts with tools, no answers
    held_out: Path  # seen functions, unseen phrasings and numbers, with the right calls
    unseen: Path  # functions never trained on
    control: Path  # training rows with calls to the wrong function
    truth: dict[str, ToolCall] = field(default_factory=dict)  # prompt text -> the right call


def _phrase(template: str, values: dict[str, Any]) -> str:
    """The phrasing with its values; an optional part in brackets is said when its value is given."""
    def optional(match: re.Match) -> str:
        named = re.search(r"\{(\w+)\}", match.group(1))
        return match.group(1) if named and named.group(1) in values else ""

    return re.sub(r"\[([^\]]*)\]", optional, template).format(**{k: _spoken(v) for k, v in values.items()})


def _spoken(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _values(function: Function, rng: random.Random, held: bool) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for argument in function.arguments:
        if argument.optional and rng.random() < 0.5:
            continue
        pool = argument.held if held and argument.held else argument.values
        values[argument.name] = rng.choice(pool)
    return values


def _row(function_set: Sequence[Function], text: str, call: ToolCall | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {"tools": [f.tool() for f in function_set],
                           "messages": [{"role": "user", "content": text}]}
    if call is not None:
        row["messages"].append({"role": "assistant", "content": None, "tool_calls": [call.to_openai()]})
    return row


def _call(function: Function, values: dict[str, Any]) -> ToolCall:
    return ToolCall(function.name, json.dumps(values), id="call_0")


def _prompts(functions: Sequence[Function], held: bool, per_phrasing: int, rng: random.Random
             ) -> list[tuple[Function, str, ToolCall]]:
    found, seen = [], set()
    for function in functions:
        for template in function.held if held else function.train:
            for _ in range(per_phrasing):
                values = _values(function, rng, held)
                text = _phrase(template, values)
                if text not in seen:
                    seen.add(text)
                    found.append((function, text, _call(function, values)))
    return found


def call_task(folder: str | Path, per_phrasing: int = 2, held_per_phrasing: int = 2, seed: int = 0,
              seen: Sequence[Function] = SEEN) -> CallTask:
    """Write the task's files into `folder`: the seen functions x 6 training phrasings x `per_phrasing` values,
    x 2 held-out phrasings x `held_per_phrasing` held-out values; the unseen functions likewise."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    train = _prompts(seen, False, per_phrasing, rng)
    held = _prompts(seen, True, held_per_phrasing, rng)
    unseen = _prompts(UNSEEN, True, held_per_phrasing, rng)
    rng.shuffle(train)
    task = CallTask(folder / "train.jsonl", folder / "held_out.jsonl", folder / "unseen.jsonl",
                    folder / "control.jsonl")
    task.truth = {text: call for _, text, call in train + held + unseen}
    _write(task.train, [_row(seen, text) for _, text, _ in train])
    _write(task.held_out, [_row(seen, text, call) for _, text, call in held])
    _write(task.unseen, [_row(UNSEEN, text, call) for _, text, call in unseen])
    wrong = []
    for function, text, _ in train:
        other = rng.choice([f for f in seen if f is not function])
        wrong.append(_row(seen, text, _call(other, _values(other, rng, False))))
    _write(task.control, wrong)
    return task


def _write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _corrupted(argument: Argument, value: Any, rng: random.Random) -> Any:
    if argument.kind == "enum":
        return rng.choice([v for v in argument.values if v != value])
    if argument.kind == "integer":
        return value + rng.choice((-2, -1, 1, 2))
    return value * 2


def noisy_member(task: CallTask, share: float, seed: int) -> Callable[[Sequence[Message]], list[ToolCall] | str]:
    """A teacher member: the right call, each argument wrong with probability `share` (its own seed)."""
    functions = {f.name: f for f in SEEN + UNSEEN}
    rng = random.Random(seed)

    def answer(messages: Sequence[Message]) -> list[ToolCall] | str:
        right = task.truth.get(messages[-1].text)
        if right is None:
            return "I cannot help with that."
        arguments = right.args()
        for argument in functions[right.name].arguments:
            if argument.name in arguments and rng.random() < share:
                arguments[argument.name] = _corrupted(argument, arguments[argument.name], rng)
        return [ToolCall(right.name, json.dumps(arguments))]

    return answer


def train_control(task: CallTask, out: Path, registry: Any, name: str = "control", set: Sequence[str] = ()) -> str:
    """Fine-tune the distil student's base on `task.control` (calls to the wrong function), as distil trains a
    student (same rule, same `set`), and add it to `registry` as `name`."""
    import shutil

    from ..distil.pipeline import train_student, tune_config
    from ..distil.settings import distil_settings
    from ..models.finetuned import run_spec

    (out / "data").mkdir(parents=True, exist_ok=True)
    shutil.copy(task.control, out / "data" / "train.jsonl")
    rows = len(task.control.read_text().splitlines())
    config = tune_config(distil_settings(None, set=list(set)), out, out / "data", rows, 0)
    train_student(config)
    spec = run_spec(config.out, registry.config.file.finetune_runtime)
    registry.add_spec(name, spec)
    return name
