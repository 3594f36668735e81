"""Training rows on disk, in gemfuse's JSONL format: the conversation, the answer as the assistant's turn, media
saved as files beside the rows (named by their content, so a picture asked about twice is kept once), and the
provenance under `meta`.

A capture folder is append-only: `capture-00001.jsonl`, then `-00002` once a file reaches its size cap. Each row
is one write() of one whole line under a lock shared by the server's processes; a file left with a torn last line
by a killed process is cut back to its last whole row when the folder is next opened, and readers skip such a
line. Secrets (the values of the configured API-key variables, and anything shaped like a key or a bearer token)
are replaced before a row is written.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..messages import AudioPart, ImagePart, Message, TextPart
from ..models.base import GenerateOptions
from ..paths import write_file
from ..shapes import CapturedRow, RowMeta
from ..tool_calls import ToolCall

MEDIA = "media"
PREFIX = "capture-"
REDACTED = "[secret]"
KEY_SHAPES = re.compile(r"\b(?:sk|rk|pk)-[A-Za-z0-9_\-]{16,}|\bBearer\s+[A-Za-z0-9._~+/\-]{8,}=*", re.IGNORECASE)
IMAGE_SUFFIX = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif", "image/bmp": "bmp"}


class Scrubber:
    """Replaces secret values (at least 8 characters long: shorter ones would blank ordinary words) and
    key-shaped strings in every text of a row."""

    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets = sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True)

    @classmethod
    def from_env(cls, names: Iterable[str]) -> Scrubber:
        return cls(os.environ.get(name, "") for name in names)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            value = value.replace(secret, REDACTED)
        return KEY_SHAPES.sub(REDACTED, value)

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self(k) if isinstance(k, str) else k: self(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        return value


def save_media(folder: Path, data: bytes, suffix: str) -> str:
    """The file for these bytes under folder/media (written once, atomically); its path relative to folder."""
    name = f"{hashlib.sha256(data).hexdigest()[:24]}.{suffix}"
    target = folder / MEDIA / name
    if not target.exists():
        write_file(target, data)
    return f"{MEDIA}/{name}"


def message_row(message: Message, folder: Path) -> dict[str, Any]:
    """One message in the training format; media parts become files under `folder`."""
    parts: list[dict[str, Any]] = []
    for part in message.parts:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            if part.data is None:  # a remote image the server did not fetch: kept as its URL, flagged on validation
                parts.append({"type": "image", "url": part.url})
            else:
                suffix = IMAGE_SUFFIX.get(part.mime_type or "", "png")
                parts.append({"type": "image", "path": save_media(folder, part.data, suffix)})
        elif isinstance(part, AudioPart):
            parts.append({"type": "audio", "path": save_media(folder, part.data, part.format)})
    row: dict[str, Any] = {"role": message.role}
    if len(parts) == 1 and parts[0]["type"] == "text":
        row["content"] = parts[0]["text"]
    else:
        row["content"] = parts if parts or not message.tool_calls else None
    if message.tool_calls:
        row["tool_calls"] = [call.to_openai() for call in message.tool_calls]
    if message.tool_call_id is not None:
        row["tool_call_id"] = message.tool_call_id
    return row


def training_row(messages: Sequence[Message], answer: str | None, meta: RowMeta, folder: Path,
                 calls: Sequence[ToolCall] = (), options: GenerateOptions | None = None) -> CapturedRow:
    """The row: the turns, the answer (its text or its calls), and the tools and schema it was asked under."""
    turns = [message_row(m, folder) for m in messages]
    if answer is not None or calls:
        turns.append(message_row(Message.assistant(answer or "", calls), folder))
    row: dict[str, Any] = {"messages": turns}
    if options is not None and options.tools is not None and options.tools.tools:
        row["tools"] = [tool.to_openai() for tool in options.tools.tools]
        if options.tools.choice != "auto":
            row["tool_choice"] = options.tools.choice if isinstance(options.tools.choice, str) \
                else options.tools.choice.model_dump()
    if options is not None and options.json_schema is not None:
        row["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "answer", "schema": options.json_schema, "strict": options.json_strict}}
    row["meta"] = meta
    return row  # type: ignore[return-value]


class CaptureWriter:
    """Appends one row per answered request to the capture files in `folder`."""

    def __init__(self, folder: str | Path, *, max_mb: float = 100.0, models: Sequence[str] = (),
                 scrubber: Scrubber | None = None):
        self.folder = Path(folder).expanduser()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"capture folder {self.folder}: cannot create it ({exc.strerror or exc})") from None
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.models = list(models)
        self.scrub = scrubber or Scrubber()
        with self._locked():
            for file in capture_files(self.folder):
                repair_tail(file)
        self.written = 0

    def wants(self, model: str) -> bool:
        """Is `model` (a name or fusion/<preset>) captured? All are, unless `models` lists name patterns."""
        return not self.models or any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)

    def add(self, messages: Sequence[Message], answer: str, meta: RowMeta, calls: Sequence[ToolCall] = (),
            options: GenerateOptions | None = None) -> None:
        row = self.scrub(training_row(messages, answer, meta, self.folder, calls, options))
        line = (json.dumps(row, ensure_ascii=False) + "\n").encode()
        with self._locked():
            target = self._current(len(line))
            descriptor = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(descriptor, view):]
            finally:
                os.close(descriptor)
        self.written += 1

    def _current(self, incoming: int) -> Path:
        files = capture_files(self.folder)
        if files:
            size = files[-1].stat().st_size
            if size == 0 or size + incoming <= self.max_bytes:
                return files[-1]
        number = int(files[-1].stem.removeprefix(PREFIX)) + 1 if files else 1
        return self.folder / f"{PREFIX}{number:05d}.jsonl"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock on the folder across processes (several server workers write one folder)."""
        try:
            import fcntl
        except ImportError:  # Windows: one process per folder
            yield
            return
        with open(self.folder / ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def capture_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"{PREFIX}[0-9]*.jsonl"))


def repair_tail(file: Path) -> int:
    """Cut a torn last line (a process killed mid-write) so the file holds whole rows only; bytes removed."""
    size = file.stat().st_size
    if size == 0:
        return 0
    with open(file, "rb+") as handle:
        handle.seek(-1, os.SEEK_END)
        if handle.read(1) == b"\n":
            return 0
        position = size
        while position > 0:
            step = min(65536, position)
            handle.seek(position - step)
            block = handle.read(step)
            newline = block.rfind(b"\n")
            if newline >= 0:
                position = position - step + newline + 1
                break
            position -= step
        handle.truncate(position)
        return size - position
