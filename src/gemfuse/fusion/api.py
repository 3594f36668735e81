"""`afuse()`: one prompt through a pool of models, one answer from a mode, with the full trace. It is handed
the registry it calls models through; `gemfuse.afuse` / `gemfuse.fuse` make the default one from the config."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError
from ..messages import Message, as_messages
from ..tool_calls import ToolSet
from .engine import FusionRun
from .events import Done, EventSink, FusionEvent
from .modes import MODES
from .preset import FusionPreset, Member
from .registry import ModelRegistry
from .trace import FusionResult


def make_preset(preset: FusionPreset | None = None, *, pool: Sequence[str | Member] | None = None,
                judge: str | None = None, mode: str | None = None, **settings) -> FusionPreset:
    """A preset from keyword arguments, or a copy of `preset` with them applied."""
    values = preset.model_dump(exclude_unset=False) if preset else {}
    for key, value in (("pool", list(pool) if pool else None), ("judge", judge), ("mode", mode), *settings.items()):
        if value is not None:
            values[key] = value
    try:
        return FusionPreset.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'preset'}: {e['msg']}"
                             + (f" (got {e['input']!r})" if e["type"] != "missing" and e["loc"] else "")
                             for e in exc.errors())
        raise ConfigError(f"fusion: {problems}") from None


def resolve_preset(registry: ModelRegistry, *, pool: Sequence[str | Member] | None = None, judge: str | None = None,
                   mode: str | None = None, preset: str | FusionPreset | None = None, **settings) -> FusionPreset:
    """The preset a request asks for (a named one or a preset object, with these settings over it), checked
    against the registry: unknown models, a fusion inside a fusion."""
    base = registry.preset(preset) if isinstance(preset, str) else preset
    spec = make_preset(base, pool=pool, judge=judge, mode=mode, **settings)
    registry.check_preset(spec)
    return spec


async def afuse(messages: str | Message | Sequence[Message], *, registry: ModelRegistry,
                pool: Sequence[str | Member] | None = None,
                judge: str | None = None, mode: str | None = None, preset: str | FusionPreset | None = None,
                on_event: EventSink | None = None, seed: int | None = None,
                trace_path: str | Path | None = None, resolved: FusionPreset | None = None,
                tools: ToolSet | Sequence[dict] | None = None, tool_choice: Any = None,
                json_schema: dict | None = None, json_strict: bool = False, sampling: dict | None = None,
                **settings) -> FusionResult:
    """Fuse the answers of `pool` (or of a named preset) to `messages`. Settings are FusionPreset fields;
    `registry` gives the models (get / spec / slot) and presets (preset / check_preset). `resolved`: a preset
    `resolve_preset` already made and checked (the server resolves a request once), used as it is. `tools` and
    `json_schema`: every member is asked under them, and the fused answer keeps them; `sampling`: top_p and stop
    for every member (a member's own top_p wins)."""
    spec = resolved or resolve_preset(registry, pool=pool, judge=judge, mode=mode, preset=preset, **settings)
    if tools is not None and not isinstance(tools, ToolSet):  # OpenAI's list, with its tool_choice beside it
        tools = ToolSet.model_validate({"tools": list(tools), "choice": tool_choice or "auto"})
    run = FusionRun(registry, spec, as_messages(messages), seed=seed, on_event=on_event, tools=tools,
                    json_schema=json_schema, json_strict=json_strict, sampling=sampling)
    started = time.perf_counter()
    text, chosen = await MODES[spec.mode](run)
    run.trace.phases["total"] = time.perf_counter() - started
    calls = run.answer_calls or (chosen.tool_calls if chosen else None)
    result = FusionResult(text="" if calls else text, trace=run.trace, chosen=chosen.member if chosen else None,
                          tool_calls=calls)
    await run.emit(Done(result))
    if trace_path:
        run.trace.write_jsonl(trace_path, answer=text)
    return result


async def fusion_events(messages: str | Message | Sequence[Message], **kwargs) -> AsyncIterator[FusionEvent]:
    """`afuse` as a stream of its events (CallDone, Delta); the last is Done(result).
    A failed fusion raises here; closing the stream early cancels the fusion."""
    queue: asyncio.Queue = asyncio.Queue()
    task = asyncio.create_task(afuse(messages, on_event=queue.put, **kwargs))
    task.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while (event := await queue.get()) is not None:
            yield event
        task.result()
    finally:
        if not task.done():
            task.cancel()
