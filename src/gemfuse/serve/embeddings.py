"""POST /v1/embeddings: the built-in model (`embed`), any GGUF model, or an OpenAI-compatible endpoint's own."""

from __future__ import annotations

import base64
import math
import struct
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..models.builtin import EMBED, EMBEDDER


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str
    input: str | list[str] = Field(description="a text or a list of texts (token ids are not taken)")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None  # accepted, no effect

    @field_validator("input", mode="before")
    @classmethod
    def _texts(cls, value: Any) -> Any:
        if isinstance(value, list) and (not value or not all(isinstance(v, str) for v in value)):
            raise ValueError("give a text or a non-empty list of texts (token ids are not taken)")
        return value

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)

    def model_name(self) -> str:
        return EMBEDDER if self.model == EMBED else self.model


def shortened(vector: list[float], dimensions: int | None) -> list[float]:
    """The leading `dimensions` numbers, at unit length again (how OpenAI shortens a v3 embedding)."""
    if dimensions is None or dimensions >= len(vector):
        return vector
    head = vector[:dimensions]
    norm = math.sqrt(sum(x * x for x in head)) or 1.0
    return [x / norm for x in head]


def encoded(vector: list[float], encoding: str) -> list[float] | str:
    """float: the numbers; base64: little-endian float32 bytes, as OpenAI sends them."""
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def embeddings_body(request: EmbeddingRequest, vectors: list[list[float]], tokens: int) -> dict[str, Any]:
    return {"object": "list", "model": request.model,
            "data": [{"object": "embedding", "index": i,
                      "embedding": encoded(shortened(v, request.dimensions), request.encoding_format)}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
