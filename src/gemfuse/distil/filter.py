"""Filter: the user's rules over the labelled rows, each row's fate recorded. In order: not degraded, enough
members agreeing (under the vote's extractor), a best-of verdict that survived the swap check, right against the
reference where there is one (rejection sampling), answer length within bounds, and no repeat of an earlier
prompt (exact or near). Kept rows split into train and validation files; dropped rows go to `dropped.jsonl` with
their reason; `filter.json` counts both."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..evals.call_scorers import tool_call
from ..evals.datasets import EvalItem
from ..evals.scorers import scorer_for
from ..prompted_tools import call_text
from ..shapes import LABELLED
from ..tool_calls import Tool, ToolCall, ToolSet, canonical_calls
from .duplicates import repeats
from .label import write_jsonl
from .prompts import normal_text
from .settings import DistilSettings

TRAIN, VAL, DROPPED = "train.jsonl", "val.jsonl", "dropped.jsonl"
NUMBER = re.compile(r"^[-+]?\d[\d,]*(\.\d+)?$")


@dataclass
class FilterReport:
    folder: str
    rows: int = 0
    kept: int = 0
    train: int = 0
    val: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> rows
    rules: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_labelled(folder: Path) -> list[dict]:
    path = folder / LABELLED
    if not path.is_file():
        raise ConfigError(f"{path}: no labelled rows; run `gemfuse distil label` into {folder} first")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def filter_rows(folder: str | Path, settings: DistilSettings) -> FilterReport:
    folder = Path(folder)
    rows = read_labelled(folder)
    fates = [fate(row, settings) for row in rows]
    if settings.dedupe:
        alive = [i for i, f in enumerate(fates) if f is None]
        keys = [_prompt_key(rows[i]) for i in alive]
        texts = [normal_text(_prompt_text(rows[i])) for i in alive]
        for position, (earlier, similarity) in repeats(keys, texts, settings.near_duplicate).items():
            if similarity < 1.0 and _calls_of(rows[alive[position]]) != _calls_of(rows[alive[earlier]]):
                continue  # "set it to 20" and "set it to 22": close in words, other calls
            first = rows[alive[earlier]]["meta"].get("where")
            fates[alive[position]] = ("duplicate", f"repeats {first}" if similarity == 1.0
                                      else f"near repeat ({similarity:.2f}) of {first}")
    kept = [row for row, f in zip(rows, fates, strict=True) if f is None]
    dropped = []
    for row, f in zip(rows, fates, strict=True):
        if f is not None:
            dropped.append({**row, "meta": {**row["meta"], "dropped": {"reason": f[0], "detail": f[1]}}})
    train, val = split(kept, settings)
    write_jsonl(folder / TRAIN, train)
    write_jsonl(folder / VAL, val)
    write_jsonl(folder / DROPPED, dropped)
    rules = settings.model_dump(include={"min_agree", "swap_agreed", "drop_degraded", "verify", "scorer", "min_chars",
                                         "max_chars", "dedupe", "near_duplicate", "val_fraction"})
    report = FilterReport(str(folder), len(rows), len(kept), len(train), len(val),
                          dict(Counter(f[0] for f in fates if f is not None)), rules)
    (folder / "filter.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def fate(row: dict, settings: DistilSettings) -> tuple[str, str] | None:
    """None to keep the row, else (reason, detail)."""
    meta = row.get("meta") or {}
    last = row["messages"][-1]
    calls = [ToolCall.from_openai(c) for c in last.get("tool_calls") or []]
    answer = (last.get("content") or "") if isinstance(last.get("content"), str | None) else \
        " ".join(p.get("text", "") for p in last["content"])
    answer = answer or call_text(calls)
    if settings.drop_degraded and meta.get("degraded"):
        return "degraded", meta["degraded"]
    agreed = meta.get("agreement") or {}
    if settings.min_agree and agreed.get("count", 0) < settings.min_agree:
        return "disagreed", f"{agreed.get('count', 0)} of {agreed.get('of', 0)} members agreed; need {settings.min_agree}"
    judge = meta.get("judge") or {}
    if settings.swap_agreed and judge.get("swap_check") == "disagreed":
        return "swap_disagreed", "the judge chose differently when the answers were shown in another order"
    reference = meta.get("reference")
    if settings.verify and meta.get("reference_calls"):
        right, read = verify_calls(row, meta["reference_calls"], calls)
        if not right:
            return "wrong", f"reference {call_text([ToolCall.from_openai(c) for c in meta['reference_calls']])}, " \
                            f"answer {read}"
    elif settings.verify and reference:
        right, read = verify(reference, answer, settings) if not calls else (False, answer)
        if not right:
            return "wrong", f"reference {reference!r}, answer read as {read!r}"
    if len(answer) < settings.min_chars:
        return "too_short", f"{len(answer)} characters, under {settings.min_chars}"
    if len(answer) > settings.max_chars:
        return "too_long", f"{len(answer)} characters, over {settings.max_chars}"
    return None


def verify(reference: str, answer: str, settings: DistilSettings) -> tuple[bool, str | None]:
    """Is `answer` right? `auto`: numbers by value, text by the reference appearing in the answer as words."""
    name = settings.scorer
    if name == "auto":
        name = "numeric" if NUMBER.match(reference.strip()) else "contains"
    score = scorer_for(name, pattern=settings.pattern)(EvalItem("row", [], reference), answer)
    return score.correct, score.extracted


def verify_calls(row: dict, reference: list[dict], calls: list[ToolCall]) -> tuple[bool, str | None]:
    """Are `calls` the reference calls (the eval's tool-call scorer: arguments by value, as a set)?"""
    tools = ToolSet(tools=tuple(Tool.model_validate(t) for t in row.get("tools") or []))
    item = EvalItem("row", [], None, tools=tools, calls=[[ToolCall.from_openai(c) for c in reference]])
    score = tool_call(item, calls)
    return score.correct, score.extracted


def split(rows: list[dict], settings: DistilSettings) -> tuple[list[dict], list[dict]]:
    """A seeded share of rows held out for validation loss: `val_fraction`, else a tenth from 50 rows up."""
    fraction = settings.val_fraction if settings.val_fraction is not None else (0.1 if len(rows) >= 50 else 0.0)
    count = round(len(rows) * fraction)
    if count == 0:
        return rows, []
    chosen = set(random.Random(settings.seed).sample(range(len(rows)), count))
    return ([r for i, r in enumerate(rows) if i not in chosen], [r for i, r in enumerate(rows) if i in chosen])


def _calls_of(row: dict) -> tuple[str, ...] | None:
    """The row's answer as canonical calls (None: an answer in words)."""
    calls = row["messages"][-1].get("tool_calls")
    return canonical_calls([ToolCall.from_openai(c) for c in calls]) if calls else None


def _prompt_text(row: dict) -> str:
    """The user turns' text, with each media part's file (named by its content): two questions about different
    pictures are never near repeats."""
    texts = []
    for message in row["messages"][:-1]:
        if message["role"] != "user":
            continue
        content = message["content"]
        for part in [{"type": "text", "text": content}] if isinstance(content, str) else content:
            texts.append(part["text"] if part.get("type") == "text" else f"<{part.get('path') or part.get('url')}>")
    return " ".join(texts)


def _prompt_key(row: dict) -> str:
    """Text and media files (named by their content) of the user turns."""
    parts = []
    for message in row["messages"][:-1]:
        if message["role"] == "user":
            content = message["content"]
            for part in [{"type": "text", "text": content}] if isinstance(content, str) else content:
                parts.append(normal_text(part["text"]) if part.get("type") == "text" else json.dumps(part, sort_keys=True))
    return "\0".join(parts)
