"""`gemfuse ask`: one prompt to one model, streamed to the terminal."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..capture import keep_model
from ..errors import ConfigError
from ..json_schema import check_schema
from ..messages import Message
from ..models.base import Completion, GenerateOptions, collect
from ..registry import Registry
from .options import flag


def read_contract(schema: Path | None, tools: Path | None, tool_choice: str | None) -> dict[str, Any]:
    """The answer's JSON schema and the tools from their files (OpenAI's shapes), as GenerateOptions fields."""
    from ..tool_calls import ToolSet

    contract: dict[str, Any] = {}
    if schema is not None:
        given = _json_file(schema, "--schema")
        inner = given.get("schema") if isinstance(given, dict) and isinstance(given.get("schema"), dict) else given
        try:
            check_schema(inner)
        except ValueError as exc:
            raise ConfigError(f"--schema {schema}: {exc}") from None
        contract.update(json_schema=inner, json_strict=bool(given.get("strict")) if inner is not given else False)
    if tools is not None:
        given = _json_file(tools, "--tools")
        listed = given.get("tools") if isinstance(given, dict) else given
        if not isinstance(listed, list):
            raise ConfigError(f"--tools {tools}: give a JSON list of function tools (or {{\"tools\": [...]}})")
        flat = [t if "function" in t else {"type": "function", "function": {k: v for k, v in t.items()
                                                                         if k != "type"}}
                for t in listed if isinstance(t, dict)]
        choice: Any = tool_choice or "auto"
        if choice not in ("auto", "required", "none"):
            choice = {"type": "function", "function": {"name": choice}}
        try:
            contract["tools"] = ToolSet.model_validate({"tools": flat, "choice": choice})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"--tools {tools}: {where + ': ' if where else ''}"
                              f"{first['msg'].removeprefix('Value error, ')}") from None
    elif tool_choice:
        raise ConfigError("--tool-choice: give the tools with --tools FILE")
    return contract


def _json_file(path: Path, option: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ConfigError(f"{option} {path}: not JSON ({exc})") from None


def print_calls(calls, out=sys.stdout) -> None:
    """Each call on its own line: {"name": ..., "arguments": {...}}."""
    for call in calls or ():
        out.write(json.dumps({"name": call.name, "arguments": json.loads(call.arguments)}, ensure_ascii=False) + "\n")


def build_messages(prompt: str, images: Sequence[Path] = (), audio: Sequence[Path] = (),
                   system: str | None = None) -> list[Message]:
    messages = [Message.system(system)] if system else []
    messages.append(Message.user(prompt, images=images, audio=audio))
    return messages


async def stream_answer(registry: Registry, name: str, messages: list[Message], options: GenerateOptions,
                        out=None) -> Completion:
    """Stream to `out` (if given) while collecting the completion and its timings."""
    def write(text: str) -> None:
        out.write(text)
        out.flush()

    try:
        return await collect(name, registry.get(name).stream(messages, options), write if out is not None else None)
    finally:
        await registry.aclose()


def run_ask(prompt: str, *, model: str | None, images, audio, system, config, as_json: bool,
            options: dict[str, Any], capture: Path | None = None) -> Completion:
    registry = Registry.load(config)
    name = model or registry.config.default_model
    registry.get(name)  # unknown names fail before anything loads
    writer = registry.capture_writer(capture) if capture else None  # a bad folder is said before the model runs
    messages = build_messages(prompt, images, audio, system)
    try:
        opts = GenerateOptions(**options)
    except ValidationError as exc:  # a bound the command line could not check itself (top_p above 0)
        first = exc.errors()[0]
        raise ConfigError(f"{flag('.'.join(str(p) for p in first['loc']))}: {first['msg']}") from None
    completion = asyncio.run(stream_answer(registry, name, messages, opts, out=None if as_json else sys.stdout))
    keep_model(writer, messages, completion, name=name, price=registry.spec(name).price, source="ask", options=opts)
    if as_json:
        print(json.dumps(completion.to_dict(), ensure_ascii=False, indent=2))
    else:
        print_calls(completion.tool_calls)
        for note in completion.notes:
            print(f"note: {note}", file=sys.stderr)
        sys.stdout.write("\n")
        u = completion.usage
        rate = u.completion_tokens / completion.latency_s if completion.latency_s else 0.0
        ttft = f", first token {completion.ttft_s:.2f} s" if completion.ttft_s is not None else ""
        print(f"[{name}: {u.prompt_tokens} prompt + {u.completion_tokens} answer tokens{' (estimated)' if u.estimated else ''}"
              f" in {completion.latency_s:.2f} s ({rate:.1f} tok/s{ttft}), finish: {completion.finish_reason}]",
              file=sys.stderr)
    return completion
