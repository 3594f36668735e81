"""One chat message type: a role and a list of text, image and audio parts.

Reads and writes the OpenAI wire shape (`image_url` with http(s) or `data:` URLs, `input_audio` with base64
data and a format) and loads local files. Every error names the part that is wrong.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import MessageError
from .tool_calls import ToolCall

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant")  # the turns that speak
CHAT_ROLES: tuple[str, ...] = (*ROLES, "tool")  # and a tool's result, in a request (OpenAI's `developer` is system)
AUDIO_FORMATS: tuple[str, ...] = ("wav", "mp3", "flac", "ogg")
IMAGE_MIME_TYPES: tuple[str, ...] = ("image/png", "image/jpeg", "image/webp", "image/gif", "image/bmp")

# Magic numbers: catch a mislabelled or garbage payload before a model sees it.
_IMAGE_MAGIC = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF8": "image/gif", b"BM": "image/bmp"}
_AUDIO_MAGIC = {b"RIFF": "wav", b"fLaC": "flac", b"OggS": "ogg", b"ID3": "mp3", b"\xff\xfb": "mp3",
                b"\xff\xf3": "mp3", b"\xff\xf2": "mp3"}


def sniff_image(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((mime for magic, mime in _IMAGE_MAGIC.items() if data.startswith(magic)), None)


def sniff_audio(data: bytes) -> str | None:
    return next((fmt for magic, fmt in _AUDIO_MAGIC.items() if data.startswith(magic)), None)


def _b64decode(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MessageError(f"{where}: data is not valid base64 ({exc})") from None


def _read_file(path: str | Path, kind: str) -> tuple[Path, bytes]:
    path = Path(path)
    try:
        return path, path.read_bytes()
    except OSError as exc:
        raise MessageError(f"{kind} file {path}: cannot read it ({exc.strerror or exc})") from None


@dataclass(frozen=True)
class TextPart:
    text: str
    type: Literal["text"] = field(default="text", init=False)

    def to_openai(self) -> dict[str, Any]:
        return {"type": "text", "text": self.text}


@dataclass(frozen=True)
class ImagePart:
    """An image held as bytes (with its MIME type) or, for remote images, as an http(s) URL."""

    data: bytes | None = None
    mime_type: str | None = None
    url: str | None = None
    type: Literal["image"] = field(default="image", init=False)

    @classmethod
    def from_file(cls, path: str | Path) -> ImagePart:
        path, data = _read_file(path, "image")
        mime = sniff_image(data)
        if mime is None:
            raise MessageError(f"image file {path}: not a PNG, JPEG, WebP, GIF or BMP image")
        return cls(data=data, mime_type=mime)

    @classmethod
    def from_url(cls, url: str, where: str = "image_url") -> ImagePart:
        if url.startswith(("http://", "https://")):
            return cls(url=url)
        if not url.startswith("data:"):
            raise MessageError(f"{where}: url must be http(s) or a data: URL, got {url[:30]!r}")
        header, sep, payload = url[5:].partition(",")
        if not sep or not header.endswith(";base64"):
            raise MessageError(f"{where}: data: URL must be base64 encoded (data:image/png;base64,...)")
        mime = header[: -len(";base64")] or None
        if mime not in IMAGE_MIME_TYPES:
            raise MessageError(f"{where}: unsupported image type {mime!r}; use one of {', '.join(IMAGE_MIME_TYPES)}")
        data = _b64decode(payload, where)
        if sniff_image(data) is None:
            raise MessageError(f"{where}: decoded data is not a {mime} image")
        return cls(data=data, mime_type=mime)

    @property
    def data_url(self) -> str:
        if self.url:
            return self.url
        return f"data:{self.mime_type};base64,{base64.b64encode(self.data or b'').decode()}"

    def to_openai(self) -> dict[str, Any]:
        return {"type": "image_url", "image_url": {"url": self.data_url}}

    def to_pil(self):
        """Decode into a PIL image (RGB). Remote URLs must be fetched by the caller first."""
        if self.data is None:
            raise MessageError(f"image {self.url}: remote images must be downloaded before local decoding")
        from PIL import Image

        try:
            image = Image.open(io.BytesIO(self.data))
            image.load()
        except Exception as exc:  # PIL raises many types for broken files
            raise MessageError(f"image: cannot decode ({exc})") from None
        return image.convert("RGB")


@dataclass(frozen=True)
class AudioPart:
    data: bytes
    format: str
    type: Literal["audio"] = field(default="audio", init=False)

    def __post_init__(self):
        if self.format not in AUDIO_FORMATS:
            raise MessageError(f"audio: unsupported format {self.format!r}; use one of {', '.join(AUDIO_FORMATS)}")

    @classmethod
    def from_file(cls, path: str | Path) -> AudioPart:
        path, data = _read_file(path, "audio")
        fmt = sniff_audio(data) or path.suffix.lower().lstrip(".")
        if fmt not in AUDIO_FORMATS:
            raise MessageError(f"audio file {path}: unsupported format; use one of {', '.join(AUDIO_FORMATS)}")
        return cls(data=data, format=fmt)

    def to_openai(self) -> dict[str, Any]:
        return {"type": "input_audio", "input_audio": {"data": base64.b64encode(self.data).decode(),
                                                       "format": self.format}}

    def to_waveform(self, sampling_rate: int):
        """Decode to a mono float32 numpy array at `sampling_rate` (resampled if needed)."""
        import numpy as np
        import soundfile

        try:
            wave, rate = soundfile.read(io.BytesIO(self.data), dtype="float32", always_2d=True)
        except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError...
            raise MessageError(f"audio ({self.format}): cannot decode ({exc})") from None
        wave = wave.mean(axis=1)
        if rate != sampling_rate:
            import librosa

            wave = librosa.resample(wave, orig_sr=rate, target_sr=sampling_rate)
        return np.ascontiguousarray(wave, dtype=np.float32)


Part = TextPart | ImagePart | AudioPart


def _part_from_openai(raw: Any, where: str) -> Part:
    if isinstance(raw, str):
        return TextPart(raw)
    if not isinstance(raw, dict):
        raise MessageError(f"{where}: a content part must be an object, got {type(raw).__name__}")
    kind = raw.get("type")
    if kind == "text":
        if not isinstance(raw.get("text"), str):
            raise MessageError(f"{where} (text): 'text' must be a string")
        return TextPart(raw["text"])
    if kind == "image_url":
        spec = raw.get("image_url")
        url = spec.get("url") if isinstance(spec, dict) else spec
        if not isinstance(url, str):
            raise MessageError(f"{where} (image_url): needs image_url.url as a string")
        return ImagePart.from_url(url, f"{where} (image_url)")
    if kind == "input_audio":
        spec = raw.get("input_audio")
        if not isinstance(spec, dict) or not isinstance(spec.get("data"), str):
            raise MessageError(f"{where} (input_audio): needs input_audio.data (base64) and input_audio.format")
        fmt = spec.get("format")
        if fmt not in AUDIO_FORMATS:
            raise MessageError(f"{where} (input_audio): unsupported format {fmt!r}; use one of {', '.join(AUDIO_FORMATS)}")
        return AudioPart(data=_b64decode(spec["data"], f"{where} (input_audio)"), format=fmt)
    raise MessageError(f"{where}: unknown part type {kind!r}; expected text, image_url or input_audio")


@dataclass
class Message:
    role: Role
    parts: list[Part]
    tool_calls: list[ToolCall] = field(default_factory=list)  # an assistant turn's function calls
    tool_call_id: str | None = None  # a tool turn: the call it answers

    def __post_init__(self):
        if self.role not in CHAT_ROLES:
            raise MessageError(f"message: unknown role {self.role!r}; expected one of {', '.join(CHAT_ROLES)}")

    @classmethod
    def system(cls, text: str) -> Message:
        return cls("system", [TextPart(text)])

    @classmethod
    def assistant(cls, text: str, calls: Iterable[ToolCall] = ()) -> Message:
        return cls("assistant", [TextPart(text)] if text or not calls else [], list(calls))

    @classmethod
    def tool(cls, call_id: str, result: str) -> Message:
        """A tool's result, answering the call `call_id`."""
        return cls("tool", [TextPart(result)], tool_call_id=call_id)

    @classmethod
    def user(cls, text: str = "", *, images: Iterable[str | Path | ImagePart] = (),
             audio: Iterable[str | Path | AudioPart] = ()) -> Message:
        """A user turn: media first (as Gemma's own examples place them), then the text."""
        parts: list[Part] = [p if isinstance(p, ImagePart) else ImagePart.from_file(p) for p in images]
        parts += [a if isinstance(a, AudioPart) else AudioPart.from_file(a) for a in audio]
        if text:
            parts.append(TextPart(text))
        return cls("user", parts)

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    @property
    def images(self) -> list[ImagePart]:
        return [p for p in self.parts if isinstance(p, ImagePart)]

    @property
    def audio(self) -> list[AudioPart]:
        return [p for p in self.parts if isinstance(p, AudioPart)]

    @classmethod
    def from_openai(cls, raw: Any, where: str = "message") -> Message:
        if not isinstance(raw, dict):
            raise MessageError(f"{where}: must be an object with 'role' and 'content'")
        role: Any = "system" if raw.get("role") == "developer" else raw.get("role")
        if role not in CHAT_ROLES:
            raise MessageError(f"{where}: unknown role {role!r}; expected one of system, developer, user, "
                               "assistant, tool")
        content = raw.get("content")
        if content is None:
            content = ""
        if isinstance(content, str):
            parts: list[Part] = [TextPart(content)] if content or role != "assistant" else []
        elif isinstance(content, list):
            parts = [_part_from_openai(p, f"{where}.content[{i}]") for i, p in enumerate(content)]
        else:
            raise MessageError(f"{where}.content: must be a string or a list of parts")
        calls = raw.get("tool_calls") or []
        if calls and role != "assistant":
            raise MessageError(f"{where}.tool_calls: only an assistant turn makes calls")
        if not isinstance(calls, list):
            raise MessageError(f"{where}.tool_calls: must be a list of calls")
        call_id = raw.get("tool_call_id")
        if role == "tool" and not (isinstance(call_id, str) and call_id):
            raise MessageError(f"{where}.tool_call_id: a tool turn names the call it answers")
        return cls(role, parts, [ToolCall.from_openai(c, f"{where}.tool_calls[{i}]") for i, c in enumerate(calls)],
                   call_id if role == "tool" else None)

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role}
        if all(isinstance(p, TextPart) for p in self.parts):
            out["content"] = self.text if self.parts or not self.tool_calls else None
        else:
            out["content"] = [p.to_openai() for p in self.parts]
        if self.tool_calls:
            out["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out


def parse_messages(raw: Any) -> list[Message]:
    """Parse an OpenAI `messages` array; errors say `messages[i].content[j]`."""
    if not isinstance(raw, list) or not raw:
        raise MessageError("messages: must be a non-empty list")
    messages = [Message.from_openai(m, f"messages[{i}]") for i, m in enumerate(raw)]
    asked: set[str] = set()
    for i, message in enumerate(messages):
        asked.update(call.id for call in message.tool_calls)
        if message.role == "tool" and message.tool_call_id not in asked:
            raise MessageError(f"messages[{i}].tool_call_id: {message.tool_call_id!r} answers no call of an "
                               "earlier assistant turn")
    return messages


def as_messages(prompt: str | Message | Iterable[Message]) -> list[Message]:
    """Accept a plain prompt, one message or a list of them."""
    if isinstance(prompt, str):
        return [Message.user(prompt)]
    if isinstance(prompt, Message):
        return [prompt]
    return list(prompt)

