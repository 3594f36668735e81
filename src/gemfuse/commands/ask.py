"""`gemfuse ask`: one prompt to one model, streamed to the terminal."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..messages import Message
from ..models.base import Completion, GenerateOptions, Usage
from ..models.registry import Registry


def build_messages(prompt: str, images: Sequence[Path] = (), audio: Sequence[Path] = (),
                   system: str | None = None) -> list[Message]:
    messages = [Message.system(system)] if system else []
    messages.append(Message.user(prompt, images=images, audio=audio))
    return messages


async def stream_answer(registry: Registry, name: str, messages: list[Message], options: GenerateOptions,
                        out=None) -> Completion:
    """Stream to `out` (if given) while collecting the completion and its timings."""
    model = registry.get(name)
    start = time.perf_counter()
    pieces, ttft, finish, usage = [], None, None, None
    try:
        async for chunk in model.stream(messages, options):
            if chunk.text:
                if ttft is None:
                    ttft = time.perf_counter() - start
                pieces.append(chunk.text)
                if out is not None:
                    out.write(chunk.text)
                    out.flush()
            finish = chunk.finish_reason or finish
            usage = chunk.usage or usage
    finally:
        await registry.aclose()
    return Completion(text="".join(pieces), model=name, finish_reason=finish, usage=usage or Usage(estimated=True),
                      latency_s=time.perf_counter() - start, ttft_s=ttft)


def run_ask(prompt: str, *, model: str | None, images, audio, system, config, as_json: bool,
            options: dict[str, Any]) -> Completion:
    registry = Registry.load(config)
    name = model or registry.config.default_model
    registry.get(name)  # unknown names fail before anything loads
    messages = build_messages(prompt, images, audio, system)
    opts = GenerateOptions(**options)
    completion = asyncio.run(stream_answer(registry, name, messages, opts, out=None if as_json else sys.stdout))
    if as_json:
        print(json.dumps(completion.to_dict(), ensure_ascii=False, indent=2))
    else:
        sys.stdout.write("\n")
        u = completion.usage
        rate = u.completion_tokens / completion.latency_s if completion.latency_s else 0.0
        ttft = f", first token {completion.ttft_s:.2f} s" if completion.ttft_s is not None else ""
        print(f"[{name}: {u.prompt_tokens} prompt + {u.completion_tokens} answer tokens{' (estimated)' if u.estimated else ''}"
              f" in {completion.latency_s:.2f} s ({rate:.1f} tok/s{ttft}), finish: {completion.finish_reason}]",
              file=sys.stderr)
    return completion
