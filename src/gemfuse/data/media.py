"""Inspect and decode dataset media once each: images and audio are read in a thread pool and cached by content
hash, so a picture used by a thousand rows is decoded once. Broken files become findings, never exceptions."""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .schema import Media

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_IMAGE_PIXELS = 40_000_000  # beyond this, decoding one image costs gigabytes: refuse (decompression bombs)
IMAGE_FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP"}
AUDIO_FORMATS = {"WAV", "FLAC", "OGG", "MP3"}


@dataclass
class MediaInfo:
    kind: str
    sha256: str = ""
    error: str | None = None  # why it cannot be used
    code: str | None = None
    width: int = 0
    height: int = 0
    seconds: float = 0.0
    sampling_rate: int = 0
    format: str = ""


def plain(exc: Exception) -> str:
    """A library's message without the object reprs some put in it (`<_io.BytesIO object at 0x...>`)."""
    return re.sub(r"\s*<[^<>]* at 0x[0-9a-fA-F]+>", "", str(exc)).strip() or type(exc).__name__


def inspect_image(data: bytes, info: MediaInfo) -> None:
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                info.width, info.height, info.format = image.width, image.height, image.format or ""
                if image.width * image.height > MAX_IMAGE_PIXELS:
                    info.code, info.error = "image_too_large", (
                        f"image claims {image.width} x {image.height} pixels; too large to decode safely")
                    return
                if info.format not in IMAGE_FORMATS:
                    info.code, info.error = "unsupported_format", f"unsupported image format {info.format or '?'}"
                    return
                image.load()  # a truncated file fails here, not at open()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            info.code, info.error = "image_too_large", f"image too large to decode safely ({plain(exc)})"
        except Image.UnidentifiedImageError:
            info.code, info.error = "undecodable", "not an image file that can be read (PNG, JPEG, WebP, GIF, ...)"
        except Exception as exc:  # PIL raises many types for broken files
            info.code, info.error = "undecodable", f"cannot decode image: {plain(exc)}"


def inspect_audio(data: bytes, info: MediaInfo) -> None:
    import soundfile

    try:
        with soundfile.SoundFile(io.BytesIO(data)) as sound:
            info.sampling_rate, info.format = sound.samplerate, sound.format
            frames = sound.frames
            sound.read(dtype="float32")  # decode it all: a broken body fails here
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError...
        info.code, info.error = "undecodable", f"cannot decode audio: {plain(exc)}"
        return
    if info.format not in AUDIO_FORMATS:
        info.code, info.error = "unsupported_format", f"unsupported audio format {info.format}"
        return
    info.seconds = frames / info.sampling_rate if info.sampling_rate else 0.0
    if frames == 0:
        info.code, info.error = "empty_media", "the audio has no samples"


def inspect(kind: str, data: bytes) -> MediaInfo:
    info = MediaInfo(kind=kind, sha256=hashlib.sha256(data).hexdigest())
    if not data:
        info.code, info.error = "empty_media", "the file is empty (0 bytes)"
    elif len(data) > MAX_FILE_BYTES:
        info.code, info.error = "file_too_large", f"{len(data) / 1e6:.0f} MB is over the {MAX_FILE_BYTES // 2**20} MB limit"
    elif kind == "image":
        inspect_image(data, info)
    else:
        inspect_audio(data, info)
    return info


class MediaCache:
    """Inspection results by media identity and by content hash."""

    def __init__(self, workers: int = 4):
        self.workers = workers
        self.by_key: dict[str, MediaInfo] = {}
        self.by_hash: dict[str, MediaInfo] = {}

    def _one(self, media: Media) -> MediaInfo:
        try:
            data = media.read()
        except OSError as exc:
            return MediaInfo(kind=media.kind, code="unreadable", error=f"cannot read: {exc.strerror or exc}")
        digest = hashlib.sha256(data).hexdigest()
        cached = self.by_hash.get(digest)
        if cached is not None and cached.kind == media.kind:
            return cached
        info = inspect(media.kind, data)
        self.by_hash[digest] = info
        return info

    def inspect_all(self, items: list[Media]) -> None:
        todo: dict[str, Media] = {}
        for media in items:
            try:
                key = media.key()
            except OSError:
                key = f"unreadable:{media.path}"
            if key not in self.by_key and key not in todo:
                todo[key] = media
        with ThreadPoolExecutor(self.workers) as pool:
            for key, info in zip(todo, pool.map(self._one, todo.values()), strict=True):
                self.by_key[key] = info

    def get(self, media: Media) -> MediaInfo:
        try:
            return self.by_key[media.key()]
        except OSError:
            return self.by_key[f"unreadable:{media.path}"]
