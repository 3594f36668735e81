"""The training data format: JSONL, one conversation per line.

    {"messages": [
      {"role": "system", "content": "You describe pictures."},
      {"role": "user", "content": [{"type": "image", "path": "img/cat.jpg"}, {"type": "text", "text": "What is this?"}]},
      {"role": "assistant", "content": "A cat on a sofa."}]}

Content is a string or a list of parts: `{"type": "text", "text"}`, `{"type": "image", "path" | "url"}`
(`url` a data: URL), `{"type": "audio", "path" | "data" (base64), "format"}`, the OpenAI shapes `image_url`
and `input_audio`, and the transformers shapes `{"type": "image", "image": PATH_OR_URL}` and
`{"type": "audio", "audio": PATH_OR_DATA_URL}`. Paths are relative to the JSONL file and must stay inside its folder.
Reading never raises on bad data: every problem becomes an `Issue` with file and line.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..messages import ROLES

Severity = Literal["error", "warning"]


@dataclass
class Issue:
    severity: Severity
    file: str
    line: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.severity}: {self.message} [{self.code}]"


@dataclass
class Media:
    """A media part: a file inside the dataset folder, or inline bytes."""

    kind: Literal["image", "audio"]
    where: str  # messages[i].content[j]
    path: Path | None = None
    data: bytes | None = None
    format: str | None = None

    def read(self) -> bytes:
        return self.data if self.data is not None else self.file.read_bytes()

    @property
    def file(self) -> Path:
        if self.path is None:
            raise ValueError(f"{self.where}: inline media has no file")
        return self.path

    def key(self) -> str:
        """A stable identity: the file's path and stat, or the hash of inline bytes."""
        if self.data is not None:
            return "sha256:" + hashlib.sha256(self.data).hexdigest()
        stat = self.file.stat()
        return f"file:{self.path}:{stat.st_size}:{stat.st_mtime_ns}"


@dataclass
class Turn:
    role: str
    parts: list[str | Media]

    @property
    def text(self) -> str:
        return "".join(p for p in self.parts if isinstance(p, str))

    @property
    def media(self) -> list[Media]:
        return [p for p in self.parts if isinstance(p, Media)]


@dataclass
class Example:
    file: str
    line: int
    turns: list[Turn]
    fingerprint: str = ""  # for duplicate and leakage checks: the content, media by identity
    issues: list[Issue] = field(default_factory=list)

    def issue(self, severity: Severity, code: str, message: str) -> None:
        self.issues.append(Issue(severity, self.file, self.line, code, message))


def _media_part(raw: dict, where: str, root: Path, example: Example) -> Media | None:
    kind: Any = raw.get("type")
    spec: Any
    if kind == "image_url":
        spec = raw.get("image_url")
        raw = {"type": "image", "url": spec.get("url") if isinstance(spec, dict) else spec}
        kind = "image"
    elif kind == "input_audio":
        spec = raw.get("input_audio") if isinstance(raw.get("input_audio"), dict) else {}
        raw = {"type": "audio", "data": spec.get("data"), "format": spec.get("format")}
        kind = "audio"
    elif isinstance(raw.get(kind), str) or (kind == "audio" and isinstance(raw.get("url"), str)):
        # transformers-style parts, as Gemma's model cards, TRL and Unsloth write them: a path or a URL
        value = raw[kind] if isinstance(raw.get(kind), str) else raw["url"]
        if kind == "audio" and value.startswith("data:") and ";base64," in value:
            raw = {"type": "audio", "data": value.split(",", 1)[1], "format": _data_url_format(value)}
        elif value.startswith(("data:", "http://", "https://")):
            raw = {"type": kind, "url": value}
        else:
            raw = {"type": kind, "path": value}
    if kind == "audio" and isinstance(raw.get("url"), str):
        example.issue("error", "remote_media", f"{where}: remote audio URLs are not read during training; "
                      "download the file and give its path")
        return None
    if raw.get("path") is not None:
        return _local_media(kind, raw["path"], where, root, example)
    inline = raw.get("url") if kind == "image" else raw.get("data")
    if not isinstance(inline, str):
        example.issue("error", "media_missing", f"{where}: {article(kind)} {kind} part needs a 'path' or inline data")
        return None
    if kind == "image":
        if inline.startswith(("http://", "https://")):
            example.issue("error", "remote_media", f"{where}: remote image URLs are not read during training; "
                          "download the file and give its path")
            return None
        if not inline.startswith("data:") or ";base64," not in inline:
            example.issue("error", "bad_data_url", f"{where}: image url must be a base64 data: URL")
            return None
        inline = inline.split(",", 1)[1]
    try:
        data = base64.b64decode(inline, validate=True)
    except (binascii.Error, ValueError):
        example.issue("error", "bad_base64", f"{where}: inline {kind} data is not valid base64")
        return None
    return Media(kind, where, data=data, format=raw.get("format"))


def _data_url_format(url: str) -> str | None:
    mime = url[5:].split(";", 1)[0]
    return mime.split("/", 1)[1].removeprefix("x-") if "/" in mime else None


def _local_media(kind: Any, relative: object, where: str, root: Path, example: Example) -> Media | None:
    if not isinstance(relative, str) or not relative:
        example.issue("error", "bad_path", f"{where}: 'path' must be a non-empty string")
        return None
    path = (root / relative)
    try:
        resolved = path.resolve(strict=False)
    except (OSError, RuntimeError):  # symlink loops
        example.issue("error", "bad_path", f"{where}: cannot resolve {relative}")
        return None
    if not resolved.is_relative_to(root.resolve()):
        example.issue("error", "path_escapes", f"{where}: {relative} resolves outside the dataset folder "
                      f"{root} (through '..' or a symlink); copy the file into the folder")
        return None
    if not resolved.exists():
        example.issue("error", "media_missing", f"{where}: {kind} file not found: {relative}")
        return None
    if not resolved.is_file():
        example.issue("error", "media_missing", f"{where}: {relative} is not a file")
        return None
    return Media(kind, where, path=resolved, format=resolved.suffix.lower().lstrip(".") or None)


def parse_example(raw: object, file: str, line: int, root: Path) -> Example:
    example = Example(file, line, [])
    if not isinstance(raw, dict) or not isinstance(raw.get("messages"), list):
        example.issue("error", "no_messages", "each line must be an object with a 'messages' list")
        return example
    for i, message in enumerate(raw["messages"]):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            example.issue("error", "bad_message", f"{where}: must be an object with 'role' and 'content'")
            continue
        role = message.get("role")
        if role not in ROLES:
            example.issue("error", "unknown_role", f"{where}: unknown role {role!r}; use system, user or assistant")
            continue
        content = message.get("content")
        parts: list[str | Media] = []
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                here = f"{where}.content[{j}]"
                if isinstance(part, str):
                    parts.append(part)
                elif isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str):
                    parts.append(part["text"])
                elif isinstance(part, dict) and part.get("type") in ("image", "audio", "image_url", "input_audio"):
                    media = _media_part(part, here, root, example)
                    if media is not None:
                        parts.append(media)
                else:
                    kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                    example.issue("error", "unknown_part", f"{here}: unknown part {kind!r}; use text, image or audio")
        else:
            example.issue("error", "bad_content", f"{where}: content must be a string or a list of parts")
            continue
        example.turns.append(Turn(role, parts))
    return example


def fingerprint(example: Example) -> str:
    digest = hashlib.sha256()
    for turn in example.turns:
        digest.update(turn.role.encode() + b"\0")
        for part in turn.parts:
            digest.update((part if isinstance(part, str) else part.key()).encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()


def article(word: str) -> str:
    return "an" if word[:1] in ("a", "e", "i", "o", "u") else "a"


def read_jsonl(path: str | Path) -> Iterator[Example]:
    """Every line as an Example; unreadable lines come back as Examples holding only their issues."""
    path = Path(path)
    root = path.parent
    with open(path, "rb") as handle:
        for number, raw_line in enumerate(handle, 1):
            if not raw_line.strip():
                continue
            try:
                text = raw_line.decode("utf-8")
            except UnicodeDecodeError as exc:
                example = Example(str(path), number, [])
                example.issue("error", "bad_utf8", f"not UTF-8 text (byte {exc.start}); re-save the file as UTF-8")
                yield example
                continue
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as exc:
                example = Example(str(path), number, [])
                example.issue("error", "invalid_json", f"invalid JSON: {exc.msg} at column {exc.colno}")
                yield example
                continue
            example = parse_example(raw, str(path), number, root)
            if not any(i.severity == "error" for i in example.issues):
                example.fingerprint = fingerprint(example)
            yield example
