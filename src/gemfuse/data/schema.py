"""The training data format: JSONL, one conversation per line.

    {"messages": [
      {"role": "system", "content": "You describe pictures."},
      {"role": "user", "content": [{"type": "image", "path": "img/cat.jpg"}, {"type": "text", "text": "What is this?"}]},
      {"role": "assistant", "content": "A cat on a sofa."}]}

Content is a string or a list of parts: `{"type": "text", "text"}`, `{"type": "image", "path" | "url"}`
(`url` a data: URL), `{"type": "audio", "path" | "data" (base64), "format"}`, the OpenAI shapes `image_url`
and `input_audio`, and the transformers shapes `{"type": "image", "image": PATH_OR_URL}` and
`{"type": "audio", "audio": PATH_OR_DATA_URL}`. Paths are relative to the JSONL file and must stay inside its folder.
A row may carry `tools` (OpenAI function tools) and `response_format`; assistant turns may make `tool_calls`, and
`tool` turns (with `tool_call_id`) give their results. It is trained in the prompted format the server's local
models read (gemfuse/prompted_tools.py): tools in the system turn, calls written as the assistant's text, results
as a user turn, so the loss covers the calls and text of the assistant only.
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

from pydantic import ValidationError

from ..errors import MessageError
from ..json_schema import JSON_OBJECT, check_schema
from ..messages import CHAT_ROLES
from ..tool_calls import Tool, ToolCall, ToolSet

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
    calls: list[ToolCall] = field(default_factory=list)  # an assistant turn's function calls
    call_id: str | None = None  # a tool turn: the call it answers

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
    tools: ToolSet | None = None  # the functions the row's assistant could call (OpenAI's `tools`)
    schema: dict | None = None  # the JSON schema its last answer keeps to (`response_format`)

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


def _tools_and_schema(raw: dict, example: Example) -> None:
    """The row's `tools` (with its `tool_choice`) and `response_format`, each problem named."""
    if raw.get("tools") is not None:
        if not isinstance(raw["tools"], list):
            example.issue("error", "bad_tool", "tools: must be a list of function tools")
        else:
            tools = []
            for i, given in enumerate(raw["tools"]):
                try:
                    tools.append(Tool.model_validate(given))
                except ValidationError as exc:
                    first = exc.errors()[0]
                    where = ".".join(str(p) for p in first["loc"])
                    example.issue("error", "bad_tool", f"tools[{i}]{'.' + where if where else ''}: "
                                  f"{first['msg'].removeprefix('Value error, ')}")
            try:
                example.tools = ToolSet(tools=tuple(tools), choice=raw.get("tool_choice") or "auto")
            except ValidationError as exc:
                example.issue("error", "bad_tool", exc.errors()[0]["msg"].removeprefix("Value error, "))
    form = raw.get("response_format")
    if isinstance(form, dict) and form.get("type") in ("json_schema", "json_object"):
        schema = (form.get("json_schema") or {}).get("schema") if form["type"] == "json_schema" else JSON_OBJECT
        try:
            check_schema(schema)
            example.schema = schema
        except ValueError as exc:
            example.issue("error", "bad_schema", f"response_format: {exc}")
    elif form is not None and not (isinstance(form, dict) and form.get("type") == "text"):
        example.issue("error", "bad_schema", "response_format: give {\"type\": \"json_schema\", \"json_schema\": "
                      "{\"schema\": {...}}} or {\"type\": \"json_object\"}")


def _calls(message: dict, where: str, example: Example) -> list[ToolCall]:
    given = message.get("tool_calls") or []
    if not isinstance(given, list):
        example.issue("error", "bad_tool_call", f"{where}.tool_calls: must be a list of calls")
        return []
    calls = []
    for j, raw in enumerate(given):
        try:
            calls.append(ToolCall.from_openai(raw, f"{where}.tool_calls[{j}]"))
        except MessageError as exc:
            example.issue("error", "bad_tool_call", str(exc))
    return calls


def parse_example(raw: object, file: str, line: int, root: Path) -> Example:
    example = Example(file, line, [])
    if not isinstance(raw, dict) or not isinstance(raw.get("messages"), list):
        example.issue("error", "no_messages", "each line must be an object with a 'messages' list")
        return example
    _tools_and_schema(raw, example)
    for i, message in enumerate(raw["messages"]):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            example.issue("error", "bad_message", f"{where}: must be an object with 'role' and 'content'")
            continue
        role = message.get("role")
        if role not in CHAT_ROLES:
            example.issue("error", "unknown_role", f"{where}: unknown role {role!r}; use system, user, assistant "
                          "or tool")
            continue
        content = message.get("content")
        calls = _calls(message, where, example) if role == "assistant" else []
        call_id = message.get("tool_call_id") if role == "tool" else None
        if role == "tool" and not (isinstance(call_id, str) and call_id):
            example.issue("error", "unanswered_call_id", f"{where}.tool_call_id: a tool turn names the call it answers")
        parts: list[str | Media] = []
        if content is None and calls:
            pass  # a turn that only calls
        elif isinstance(content, str):
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
        example.turns.append(Turn(role, parts, calls, call_id))
    return example


def fingerprint(example: Example) -> str:
    digest = hashlib.sha256()
    for turn in example.turns:
        digest.update(turn.role.encode() + b"\0")
        for call in turn.calls:
            digest.update(call.canonical().encode("utf-8", "surrogatepass") + b"\0")
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
