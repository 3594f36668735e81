"""`gemfuse embed`: texts to vectors, one JSON line each."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from ..models.builtin import EMBED, EMBEDDER
from ..registry import Registry


def run_embed(texts: list[str], model: str, config: Path | None) -> None:
    registry = Registry.load(config)
    name = EMBEDDER if model == EMBED else model

    async def embed():
        try:
            return await registry.get(name).embed(texts)
        finally:
            await registry.aclose()

    result = asyncio.run(embed())
    for text, vector in zip(texts, result.vectors, strict=True):
        sys.stdout.write(json.dumps({"text": text, "embedding": [round(x, 6) for x in vector]}, ensure_ascii=False)
                         + "\n")
    print(f"[{name}: {len(texts)} texts, {len(result.vectors[0]) if result.vectors else 0} numbers each, "
          f"{result.prompt_tokens} tokens]", file=sys.stderr)
