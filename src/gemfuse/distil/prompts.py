"""The prompts a teacher labels, from any of the forms a user has them in:

- our training JSONL, with or without answers (a last assistant turn is kept as the reference a verifier checks);
- an eval set's rows (`{"prompt" | "question" | "messages", "answer"}`), a `datasets` folder, .parquet or .csv;
- a capture folder from `gemfuse serve --capture` (the captured answer is dropped: the teacher answers afresh).

Image and audio parts come along as they are. A prompt found in the held-out eval set is an error naming both
lines, raised before any call is paid.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..capture import capture_files
from ..errors import GemfuseError
from ..evals.datasets import EvalSet, prompt_and_reference, read_rows
from ..messages import AudioPart, ImagePart, Message, TextPart
from ..tool_calls import ToolCall, ToolSet


class PromptError(GemfuseError):
    """The prompts cannot be read, or leak into the eval set; the message names the file and line."""


@dataclass
class Prompt:
    id: str
    where: str  # file:line
    messages: list[Message]  # ends with a user turn (or a tool's result)
    reference: str | None = None  # the answer the row came with, if any
    tools: ToolSet | None = None  # the functions the teacher may call
    schema: dict | None = None  # the JSON schema the teacher's answer keeps to
    reference_calls: list[ToolCall] | None = None  # the calls the row came with, if any

    @property
    def key(self) -> str:
        return prompt_key(self.messages)


def prompt_key(messages: list[Message]) -> str:
    """What makes two prompts the same: the user turns' text (case, spacing and end punctuation aside) and the
    bytes of their media."""
    digest = hashlib.sha256()
    for message in messages:
        if message.role != "user":
            continue
        for part in message.parts:
            if isinstance(part, TextPart):
                digest.update(normal_text(part.text).encode() + b"\0")
            elif isinstance(part, ImagePart):
                digest.update(part.data or (part.url or "").encode())
            elif isinstance(part, AudioPart):
                digest.update(part.data)
    return digest.hexdigest()


def normal_text(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip(" .?!")


def read_prompts(source: str | Path) -> list[Prompt]:
    path = Path(source).expanduser()
    if not path.exists():
        raise PromptError(f"{source}: no such file or folder")
    if path.is_dir() and capture_files(path):
        return [_prompt(row, where, path, f"capture-{i}") for i, (where, row) in enumerate(_captured_rows(path))]
    try:
        rows = read_rows(path)
    except GemfuseError as exc:
        raise PromptError(str(exc)) from None
    root = path.parent if path.is_file() else path
    prompts = [_prompt(row, where, root, f"prompt-{i}") for i, (where, row) in enumerate(rows)]
    if not prompts:
        raise PromptError(f"{source}: no prompts")
    return prompts


def _captured_rows(folder: Path) -> list[tuple[str, dict]]:
    """Every whole row of the capture files (a line still being written by a live server is left for later)."""
    rows = []
    for file in capture_files(folder):
        data = file.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]
        for number, line in enumerate(whole.decode("utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append((f"{file}:{number}", json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise PromptError(f"{file}:{number}: invalid JSON: {exc.msg}") from None
    return rows


def _prompt(row: dict, where: str, root: Path, fallback_id: str) -> Prompt:
    if "choices" in row:
        raise PromptError(f"{where}: choices: multiple-choice rows are eval items; give the options in the prompt")
    try:
        asked = prompt_and_reference(row, where, root)  # the eval's own reader
    except GemfuseError as exc:
        raise PromptError(str(exc)) from None
    reference, calls = asked.answer, asked.calls[0] if asked.calls else None
    if "meta" in row:  # a captured row: its answer was the served model's, not a checked reference
        reference, calls = None, None
    ident = row.get("id")
    return Prompt(str(ident) if ident is not None else fallback_id, where, asked.messages,
                  reference if isinstance(reference, str) and not calls else None, asked.tools, asked.schema,
                  calls or None)


def check_leakage(prompts: list[Prompt], eval_set: EvalSet) -> None:
    """Refuse training prompts that are also eval items: the student would be scored on what it was shown."""
    held = {prompt_key(item.messages): item.where for item in eval_set.items}
    leaks = [f"{p.where} is the same prompt as {held[p.key]}" for p in prompts if p.key in held]
    if leaks:
        more = f"\n... and {len(leaks) - 10} more" if len(leaks) > 10 else ""
        raise PromptError(f"{len(leaks)} training prompt(s) are in the eval set {eval_set.name}; remove them from "
                          "one side:\n" + "\n".join(leaks[:10]) + more)
