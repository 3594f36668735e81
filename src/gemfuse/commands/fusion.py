"""`gemfuse ask --pool/--preset`: a fusion in the terminal — candidates as they arrive, the fused answer as it
is written, then tokens, cost and timings."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from pathlib import Path
from typing import Any

from ..capture import fusion_name, keep_fusion
from ..fusion.api import afuse
from ..fusion.events import CallDone, Delta, FusionEvent
from ..fusion.trace import Call, FusionResult
from ..models.base import GenerateOptions
from ..registry import Registry
from .ask import print_calls


def _header(title: str) -> str:
    return f"\n── {title} " + "─" * max(4, 60 - len(title))


def describe_call(call: Call) -> str:
    status = f"{call.usage.completion_tokens} tok, {call.latency_s:.2f} s" if call.ok else f"FAILED: {call.error}"
    return f"{call.member} ({status})"


def summary(result: FusionResult) -> str:
    trace = result.trace
    usage = trace.usage
    cost = f"${trace.cost:.6f}" + (f" + unpriced: {', '.join(trace.unpriced)}" if trace.unpriced else "")
    phases = ", ".join(f"{k} {v:.2f} s" for k, v in trace.phases.items())
    lines = [f"[{trace.mode}{' by ' + trace.judge if trace.judge and trace.mode != 'vote' else ''}: "
             f"{len(trace.candidates)} answers, {len(trace.failures)} failed; "
             f"{usage.prompt_tokens} + {usage.completion_tokens} tokens; cost {cost}; {phases}; seed {trace.seed}]"]
    if result.chosen:
        lines.append(f"[chosen: {result.chosen}]")
    for failure in trace.failures:
        lines.append(f"[failed: {failure.member}: {failure.error}: {failure.message}]")
    if trace.tie:
        lines.append(f"[vote tied between: {' | '.join(trace.tied)}]")
    if trace.confidence:
        lines.append("[certainty (mean token log-probability): "
                     + ", ".join(f"{member} {value:.3f}" for member, value in trace.confidence.items()) + "]")
    for tier in trace.tiers:
        lines.append(f"[tier {tier.tier} ({tier.model}): {'accepted' if tier.accepted else 'passed on'}, {tier.why}]")
    if trace.degraded:
        lines.append(f"[degraded: {trace.degraded_reason}]")
    return "\n".join(lines)


async def stream_fusion(registry: Registry, messages, settings: dict[str, Any], show_candidates: bool,
                        out=sys.stdout) -> FusionResult:
    started = {"answer": False}

    async def on_event(event: FusionEvent) -> None:
        if isinstance(event, CallDone) and show_candidates:
            call = event.call
            if call.role in ("member", "revision"):
                label = describe_call(call) + (f", round {call.round}" if call.round else "")
                out.write(_header(label) + "\n" + (call.text.strip() if call.ok else call.message or "") + "\n")
                out.flush()
        elif isinstance(event, Delta):
            if not started["answer"]:
                started["answer"] = True
                if show_candidates:
                    out.write(_header("fused answer") + "\n")
            out.write(event.text)
            out.flush()

    try:
        return await afuse(messages, registry=registry, on_event=on_event, **settings)
    finally:
        await registry.aclose()


def run_fusion_ask(messages, *, registry: Registry, settings: dict[str, Any], show_candidates: bool,
                   as_json: bool, capture: Path | None = None) -> FusionResult:
    writer = registry.capture_writer(capture) if capture else None
    label = fusion_name(settings.get("preset"))
    if as_json:
        result = asyncio.run(stream_fusion(registry, messages, settings, False, out=io.StringIO()))
        print(json.dumps({"model": label, **result.to_dict()}, ensure_ascii=False, indent=2, default=str))
    else:
        result = asyncio.run(stream_fusion(registry, messages, settings, show_candidates))
        print_calls(result.tool_calls)
        sys.stdout.write("\n")
        print(summary(result), file=sys.stderr)
    options = GenerateOptions(**{k: settings[k] for k in ("tools", "json_schema", "json_strict") if k in settings})
    keep_fusion(writer, messages, result, name=label, source="ask", options=options)
    return result

