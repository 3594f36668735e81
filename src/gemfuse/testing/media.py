"""Small valid media files made on the fly: a PNG and a WAV (a sine tone)."""

from __future__ import annotations

import io
import math
import struct
import wave
from pathlib import Path


def png_bytes(size: int = 48, color=(200, 30, 30)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def wav_bytes(seconds: float = 0.5, rate: int = 16_000, freq: float = 440.0) -> bytes:
    frames = b"".join(struct.pack("<h", int(12_000 * math.sin(2 * math.pi * freq * i / rate)))
                      for i in range(int(seconds * rate)))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return buffer.getvalue()


def write_png(path: str | Path, **kwargs) -> Path:
    Path(path).write_bytes(png_bytes(**kwargs))
    return Path(path)


def write_wav(path: str | Path, **kwargs) -> Path:
    Path(path).write_bytes(wav_bytes(**kwargs))
    return Path(path)
