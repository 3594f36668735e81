"""`gemfuse data validate`: read everything once and report every problem with file:line before any compute
is spent. Errors make the run fail; warnings (resampling, downscaling, duplicates) do not."""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..json_schema import check_answer
from ..prompted_tools import plain_turns
from .media import MediaCache
from .schema import Example, Issue
from .sources import read_rows
from .target import Target

IMAGE_MAX_SIDE = 4096


@dataclass
class Report:
    files: list[str]
    rows: int = 0
    issues: list[Issue] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    media: Counter = field(default_factory=Counter)

    @property
    def errors(self) -> int:
        return sum(1 for i in self.issues if i.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for i in self.issues if i.severity == "warning")

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def summary(self) -> dict:
        bad_rows = len({(i.file, i.line) for i in self.issues if i.severity == "error"})
        return {"files": self.files, "rows": self.rows, "rows_with_errors": bad_rows, "errors": self.errors,
                "warnings": self.warnings, "by_code": dict(Counter(i.code for i in self.issues)),
                "images": self.media["image"], "audio": self.media["audio"],
                "tokens": {"max": max(self.tokens, default=0),
                           "median": int(statistics.median(self.tokens)) if self.tokens else 0,
                           "total": sum(self.tokens)}}


def check_turns(example: Example) -> None:
    turns = example.turns
    if not turns:  # a line that did not parse has said so already; one error per cause
        if not example.issues:
            example.issue("error", "empty_conversation", "no messages")
        return
    for i, turn in enumerate(turns):
        if turn.role == "system" and i != 0:
            example.issue("error", "bad_turn_order", f"messages[{i}]: a system message may only come first")
        if turn.role == "assistant" and not turn.text.strip() and not turn.calls:
            example.issue("error", "empty_assistant", f"messages[{i}]: the assistant turn is empty")
        if turn.role == "assistant" and turn.media:
            example.issue("error", "media_in_answer", f"messages[{i}]: assistant turns are text only")
        if turn.role == "system" and any(m.kind == "audio" for m in turn.media):
            example.issue("error", "media_in_system", f"messages[{i}]: put media in user turns")
    # a tool's results are read as a user turn (several in a row as one)
    dialogue = [r for j, r in enumerate("user" if t.role == "tool" else t.role for t in turns)
                if r != "system" and not (turns[j].role == "tool" and j and turns[j - 1].role == "tool")]
    if dialogue and dialogue[0] != "user":
        example.issue("error", "bad_turn_order", "the conversation must start with a user turn (after any system)")
    for i in range(1, len(dialogue)):
        if dialogue[i] == dialogue[i - 1]:
            example.issue("error", "bad_turn_order", f"two {dialogue[i]} turns in a row; user and assistant must alternate")
            break
    if "assistant" not in dialogue:
        example.issue("error", "no_assistant", "no assistant turn: nothing to train on")


def check_tools(example: Example) -> None:
    """Calls to functions the row does not offer, arguments that break their schema, results that answer no
    call, and a JSON answer that breaks its schema: each named by its turn."""
    asked: set[str] = set()
    for i, turn in enumerate(example.turns):
        for j, call in enumerate(turn.calls):
            asked.add(call.id)
            where = f"messages[{i}].tool_calls[{j}]"
            if example.tools is None or example.tools.tool(call.name) is None:
                offered = ", ".join(t.name for t in example.tools.tools) if example.tools else "none"
                example.issue("error", "unknown_function", f"{where}: calls {call.name!r}, which the row's tools do "
                              f"not offer ({offered})")
            else:
                problem = example.tools.check(call)
                if problem:
                    example.issue("error", "bad_arguments", f"{where}: {problem}")
        if turn.role == "tool" and turn.call_id is not None and turn.call_id not in asked:
            example.issue("error", "unanswered_result", f"messages[{i}]: a tool result for {turn.call_id!r}, "
                          "which no earlier assistant turn called")
    answers = [t for t in example.turns if t.role == "assistant"]
    if example.schema is not None and answers and not answers[-1].calls:
        problem = check_answer(answers[-1].text, example.schema)
        if problem:
            example.issue("error", "schema_mismatch", f"messages[{example.turns.index(answers[-1])}]: the answer "
                          f"{problem}")


def check_control_tokens(example: Example, target: Target) -> None:
    """Text that spells a chat control token would be read as one and corrupt the turn structure."""
    prefix, end = target.markers
    specials = {s for s in (prefix.split("\n")[0], end.strip()) if s}
    for i, turn in enumerate(example.turns):
        for token in specials:
            if token and token in turn.text:
                example.issue("error", "control_token_in_text", f"messages[{i}]: the text contains {token!r}")


def check_media(example: Example, cache: MediaCache, target: Target) -> None:
    for turn in example.turns:
        for media in turn.media:
            info = cache.get(media)
            if info.error:
                example.issue("error", info.code or "bad_media", f"{media.where}: {info.error}")
                continue
            if media.kind == "image":
                if not target.takes_images:
                    example.issue("error", "unsupported_media", f"{media.where}: {target.family.name} takes no images")
                elif min(info.width, info.height) < target.family.image_min_side:
                    example.issue("warning", "image_small", f"{media.where}: {info.width} x {info.height} image "
                                  f"will be upscaled (under {target.family.image_min_side} px)")
                elif max(info.width, info.height) > IMAGE_MAX_SIDE:
                    example.issue("warning", "image_large", f"{media.where}: {info.width} x {info.height} image "
                                  "will be downscaled; resize it yourself to save decoding time")
            else:
                limit = target.family.audio_max_seconds
                if not target.takes_audio:
                    example.issue("error", "unsupported_media", f"{media.where}: {target.family.name} takes no audio")
                elif limit and info.seconds > limit:
                    example.issue("error", "audio_too_long", f"{media.where}: {info.seconds:.1f} s of audio is over "
                                  f"{target.family.name}'s {limit:g} s limit; split the clip")
                elif info.sampling_rate != target.sampling_rate:
                    example.issue("warning", "resampled", f"{media.where}: {info.sampling_rate} Hz audio will be "
                                  f"resampled to {target.sampling_rate} Hz")


def conversation(example: Example, native: bool = False) -> list[dict]:
    """The example in the content-list shape chat templates read; media as typed placeholders. Tools, calls and
    results as the served model reads them: `native` (a template that takes tools, Gemma 4's) as the template's
    own turns, else in the prompted format."""
    if native:
        return _template_turns(example)
    turns = [(t.role, t.parts, t.calls, t.call_id) for t in example.turns]
    out = []
    for role, parts in plain_turns(turns, example.tools, str):
        out.append({"role": role, "content": _content(parts)})
    return out


def _content(parts: list) -> list[dict]:
    return [{"type": "text", "text": p} if isinstance(p, str) else {"type": p.kind} for p in parts]


def _template_turns(example: Example) -> list[dict]:
    """Calls with their arguments as objects, a result named by its call (as serving renders them)."""
    names = {call.id: call.name for turn in example.turns for call in turn.calls}
    out: list[dict] = []
    for turn in example.turns:
        if turn.role == "tool":
            out.append({"role": "tool", "content": turn.text, "tool_call_id": turn.call_id,
                        "name": names.get(turn.call_id or "", "")})
            continue
        entry: dict = {"role": turn.role, "content": _content(turn.parts)}
        if turn.calls:
            entry["tool_calls"] = [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": _args(c)}}
                                   for c in turn.calls]
        out.append(entry)
    return out


def _args(call) -> object:
    try:
        return call.args()
    except ValueError:
        return {}


def rendered(target: Target, example: Example) -> str:
    """The example's text as trained: with a template that takes tools, the tools go to the template."""
    if example.tools is not None and example.tools.active and target.takes_tools:
        return target.render(conversation(example, native=True),
                             tools=[tool.to_openai() for tool in example.tools.tools])
    return target.render(conversation(example))


def count_tokens(examples: list[Example], cache: MediaCache, target: Target, max_length: int | None,
                 report: Report) -> None:
    """Token length with each family's media cost, and what data.max_length would cut."""
    tokenizer = target.tokenizer
    placeholders = {target.family.image_placeholder: "image", target.family.audio_placeholder: "audio"}
    placeholder_ids = {tokenizer.convert_tokens_to_ids(p): kind for p, kind in placeholders.items() if p}
    prefix_ids = tokenizer(target.markers[0], add_special_tokens=False).input_ids
    texts = [rendered(target, e) for e in examples]
    encoded = tokenizer(texts, add_special_tokens=False).input_ids if texts else []
    for example, ids in zip(examples, encoded, strict=True):
        media = iter([m for t in example.turns for m in t.media])
        position, media_spans, answer_start, last_answer = 0, [], None, None
        for index, token in enumerate(ids):
            kind = placeholder_ids.get(token)
            if kind is not None:
                item = next(media, None)
                cost = target.image_cost if kind == "image" else target.audio_cost(cache.get(item).seconds if item else 0)
                media_spans.append((position, position + cost, kind))
                position += cost
                continue
            if ids[index:index + len(prefix_ids)] == prefix_ids:
                answer_start = position + len(prefix_ids)
            position += 1
        if answer_start is not None:
            last_answer = (answer_start, position)
        report.tokens.append(position)
        if max_length and position > max_length:
            cut = [kind for start, end, kind in media_spans if end > max_length]
            if cut:
                example.issue("error", "truncation_cuts_media", f"{position} tokens; data.max_length {max_length} "
                              f"would cut {'an image' if cut[0] == 'image' else 'audio'} (media tokens must stay whole)")
            elif last_answer and last_answer[0] >= max_length:
                example.issue("error", "truncation_cuts_answer", f"{position} tokens; data.max_length {max_length} "
                              "would cut the whole last answer: nothing left to train on")
            else:
                kept = max_length - (last_answer[0] if last_answer else 0)
                example.issue("warning", "truncated", f"{position} tokens; data.max_length {max_length} keeps "
                              f"{kept} of the last answer's {position - (last_answer[0] if last_answer else 0)} tokens")


def content_fingerprint(example: Example, cache: MediaCache) -> str:
    digest = hashlib.sha256()
    for turn in example.turns:
        digest.update(turn.role.encode() + b"\0")
        for call in turn.calls:
            digest.update(call.canonical().encode("utf-8", "replace") + b"\0")
        for part in turn.parts:
            digest.update((part if isinstance(part, str) else cache.get(part).sha256).encode("utf-8", "replace") + b"\0")
    return digest.hexdigest()


def load_examples(path: Path, cache: MediaCache) -> list[Example]:
    examples = read_rows(path)  # our JSONL, or a `datasets` folder / JSONL / Parquet file
    cache.inspect_all([m for e in examples for t in e.turns for m in t.media])
    return examples


def validate(path: str | Path, target: Target, *, max_length: int | None = None, val_path: str | Path | None = None,
             workers: int = 4) -> Report:
    cache = MediaCache(workers)
    files = [str(path)] + ([str(val_path)] if val_path else [])
    datasets = [load_examples(Path(path), cache)] + ([load_examples(Path(val_path), cache)] if val_path else [])
    return validate_examples(datasets, files, target, cache, max_length=max_length)


def validate_examples(datasets: list[list[Example]], files: list[str], target: Target, cache: MediaCache | None = None,
                      *, max_length: int | None = None) -> Report:
    """The same checks on rows already read: [train] or [train, validation] (checked for leakage too)."""
    if cache is None:
        cache = MediaCache()
        cache.inspect_all([m for examples in datasets for e in examples for t in e.turns for m in t.media])
    report = Report(files)
    seen: dict[tuple[int, str], Example] = {}
    for which, examples in enumerate(datasets):
        for example in examples:
            check_turns(example)
            check_tools(example)
            if example.turns:
                check_control_tokens(example, target)
            check_media(example, cache, target)
            for turn in example.turns:
                report.media.update(m.kind for m in turn.media)
        usable = [e for e in examples if not any(i.severity == "error" for i in e.issues)]
        count_tokens(usable, cache, target, max_length, report)
        for example in usable:
            mark = content_fingerprint(example, cache)
            first = seen.get((which, mark))
            if first is not None:
                example.issue("warning", "duplicate", f"exact duplicate of line {first.line}")
            else:
                seen[(which, mark)] = example
            if which == 1 and (0, mark) in seen:
                example.issue("error", "leakage", f"also in the training file at line {seen[(0, mark)].line}: "
                              "validation rows must not be trained on")
        report.rows += len(examples)
        report.issues.extend(i for e in examples for i in e.issues)
    report.issues.sort(key=lambda i: (i.file, i.line))
    return report
