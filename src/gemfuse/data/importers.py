"""`gemfuse data import`: turn the layouts people already have into our JSONL.

- CSV with `prompt,response` | `image_path,caption` | `image_path,question,answer` | `audio_path,text`
- a folder of images with captions (`metadata.csv`/`metadata.jsonl` with file_name + caption/text, or a .txt
  beside each image), a folder of audio clips with transcripts (the same two ways)
- Alpaca JSON (`instruction`, `input`, `output`) and ShareGPT JSON (`conversations` of `from`/`value`), with
  Hermes-style function calls; xLAM's `query`/`tools`/`answers` (tool_importers.py)

Media paths are written relative to the output file; files outside its folder are copied into `media/`.
A seeded split writes a validation file too. Rows that cannot be converted are reported, never dropped silently.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MessageError, SettingError
from ..paths import output_path
from .tool_importers import from_xlam as xlam_row
from .tool_importers import with_tools

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3"}
CAPTION_INSTRUCTION = "Describe this image."
TRANSCRIBE_INSTRUCTION = "Transcribe this audio clip."
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
                  "chatgpt": "assistant", "bing": "assistant", "system": "system", "tool": "tool",
                  "function_response": "tool", "observation": "tool"}


@dataclass
class ImportResult:
    train: Path
    val: Path | None
    rows: int = 0
    val_rows: int = 0
    skipped: list[str] = field(default_factory=list)  # "source:line: why"


class _Writer:
    """Builds message dicts with media paths relative to the output folder."""

    def __init__(self, out: Path):
        self.root = out.parent.resolve()

    def media_path(self, path: Path) -> str:
        path = path.resolve()
        if not path.is_file():
            raise MessageError(f"file not found: {path}")
        if not path.is_relative_to(self.root):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            target = self.root / "media" / f"{digest}{path.suffix.lower()}"
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                shutil.copy2(path, target)
            path = target
        return os.path.relpath(path, self.root)

    def media_turn(self, kind: str, path: Path, text: str) -> dict:
        return {"role": "user", "content": [{"type": kind, "path": self.media_path(path)}, {"type": "text", "text": text}]}


def _row(messages: list[dict]) -> dict:
    return {"messages": messages}


def from_csv(source: Path, writer: _Writer, instruction: str | None) -> Iterator[dict | str]:
    with open(source, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = {c.strip().lower() for c in reader.fieldnames or []}
        for number, raw in enumerate(reader, 2):
            row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
            try:
                if {"prompt", "response"} <= columns:
                    yield _row([{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row["response"]}])
                elif {"image_path", "question", "answer"} <= columns:
                    yield _row([writer.media_turn("image", source.parent / row["image_path"], row["question"]),
                                {"role": "assistant", "content": row["answer"]}])
                elif {"image_path", "caption"} <= columns:
                    yield _row([writer.media_turn("image", source.parent / row["image_path"],
                                                  instruction or CAPTION_INSTRUCTION),
                                {"role": "assistant", "content": row["caption"]}])
                elif {"audio_path", "text"} <= columns:
                    yield _row([writer.media_turn("audio", source.parent / row["audio_path"],
                                                  instruction or TRANSCRIBE_INSTRUCTION),
                                {"role": "assistant", "content": row["text"]}])
                else:
                    raise MessageError(f"{source}: unknown columns {sorted(columns)}; expected prompt,response | "
                                       "image_path,caption | image_path,question,answer | audio_path,text")
            except MessageError as exc:
                if "unknown columns" in str(exc):
                    raise
                yield f"{source}:{number}: {exc}"


def _metadata(folder: Path) -> dict[str, str]:
    """file name -> caption/transcript from metadata.csv or metadata.jsonl (Hugging Face's folder layout)."""
    found: dict[str, str] = {}
    if (folder / "metadata.jsonl").is_file():
        for line in (folder / "metadata.jsonl").read_text("utf-8").splitlines():
            if line.strip():
                item = json.loads(line)
                found[item["file_name"]] = item.get("caption") or item.get("text") or item.get("transcription") or ""
    elif (folder / "metadata.csv").is_file():
        with open(folder / "metadata.csv", newline="", encoding="utf-8-sig") as handle:
            for item in csv.DictReader(handle):
                found[item["file_name"]] = item.get("caption") or item.get("text") or item.get("transcription") or ""
    return found


def from_folder(source: Path, writer: _Writer, kind: str, instruction: str | None) -> Iterator[dict | str]:
    suffixes = IMAGE_SUFFIXES if kind == "image" else AUDIO_SUFFIXES
    default = CAPTION_INSTRUCTION if kind == "image" else TRANSCRIBE_INSTRUCTION
    metadata = _metadata(source)
    for path in sorted(p for p in source.rglob("*") if p.suffix.lower() in suffixes):
        name = path.relative_to(source).as_posix()
        text = metadata.get(name)
        sidecar = path.with_suffix(".txt")
        if text is None and sidecar.is_file():
            text = sidecar.read_text("utf-8").strip()
        if not text:
            yield f"{path}: no caption or transcript (metadata file or {sidecar.name})"
            continue
        yield _row([writer.media_turn(kind, path, instruction or default), {"role": "assistant", "content": text}])


def from_alpaca(source: Path) -> Iterator[dict | str]:
    for number, item in enumerate(json.loads(source.read_text("utf-8"))):
        if not isinstance(item, dict) or not item.get("instruction") or not item.get("output"):
            yield f"{source}[{number}]: needs 'instruction' and 'output'"
            continue
        prompt = item["instruction"] + (f"\n\n{item['input']}" if item.get("input") else "")
        messages = [{"role": "system", "content": item["system"]}] if item.get("system") else []
        yield _row(messages + [{"role": "user", "content": prompt}, {"role": "assistant", "content": item["output"]}])


def from_sharegpt(source: Path) -> Iterator[dict | str]:
    for number, item in enumerate(json.loads(source.read_text("utf-8"))):
        turns = item.get("conversations") if isinstance(item, dict) else None
        if not isinstance(turns, list):
            yield f"{source}[{number}]: needs a 'conversations' list"
            continue
        messages, problem = [], None
        for turn in turns:
            role = SHAREGPT_ROLES.get(str(turn.get("from", "")).lower())
            if role is None:
                problem = f"unknown speaker {turn.get('from')!r}"
                break
            messages.append({"role": role, "content": turn.get("value", "")})
        if problem:
            yield f"{source}[{number}]: {problem}"
            continue
        try:  # function calling (Hermes): tools, <tool_call> blocks and tool turns made OpenAI's
            yield with_tools(item, messages)
        except MessageError as exc:
            yield f"{source}[{number}]: {exc}"


def from_xlam(source: Path) -> Iterator[dict | str]:
    for number, item in enumerate(json.loads(source.read_text("utf-8"))):
        if not isinstance(item, dict) or not {"query", "tools", "answers"} <= item.keys():
            yield f"{source}[{number}]: needs 'query', 'tools' and 'answers'"
            continue
        try:
            yield xlam_row(item)
        except MessageError as exc:
            yield f"{source}[{number}]: {exc}"


def detect(source: Path) -> str:
    if source.is_dir():
        files = [p.suffix.lower() for p in source.rglob("*")]
        return "images" if any(s in IMAGE_SUFFIXES for s in files) else "audio"
    if source.suffix.lower() in (".csv", ".tsv"):
        return "csv"
    data = json.loads(source.read_text("utf-8"))
    first = data[0] if isinstance(data, list) and data else {}
    if isinstance(first, dict) and {"query", "answers"} <= first.keys():
        return "xlam"
    return "sharegpt" if isinstance(first, dict) and "conversations" in first else "alpaca"


def import_dataset(source: str | Path, out: str | Path, *, format: str = "auto", instruction: str | None = None,
                   val_out: str | Path | None = None, val_fraction: float = 0.0, seed: int = 0) -> ImportResult:
    source, out = Path(source), Path(out)
    if val_out and Path(val_out).resolve().parent != out.resolve().parent:
        raise SettingError("val_out", Path(val_out), "must sit in the same folder as out (media paths are relative to it)")
    out = output_path(out)
    if val_out:
        val_out = output_path(val_out, "val_out")
    writer = _Writer(out)
    kind = detect(source) if format == "auto" else format
    readers = {"csv": lambda: from_csv(source, writer, instruction),
               "images": lambda: from_folder(source, writer, "image", instruction),
               "audio": lambda: from_folder(source, writer, "audio", instruction),
               "alpaca": lambda: from_alpaca(source), "sharegpt": lambda: from_sharegpt(source),
               "xlam": lambda: from_xlam(source)}
    if kind not in readers:
        raise MessageError(f"unknown format {kind!r}; use one of {', '.join(readers)}")
    rows: list[dict] = []
    skipped: list[str] = []
    for item in readers[kind]():
        if isinstance(item, str):
            skipped.append(item)
        else:
            rows.append(item)
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_val = round(len(rows) * val_fraction) if val_out else 0
    val_ids = set(order[:n_val])
    result = ImportResult(out, Path(val_out) if val_out else None, skipped=skipped)
    with open(out, "w", encoding="utf-8") as train:
        for i, row in enumerate(rows):
            if i not in val_ids:
                train.write(json.dumps(row, ensure_ascii=False) + "\n")
                result.rows += 1
    if val_out:
        with open(val_out, "w", encoding="utf-8") as val:
            for i, row in enumerate(rows):
                if i in val_ids:
                    val.write(json.dumps(row, ensure_ascii=False) + "\n")
                    result.val_rows += 1
    return result
