"""The fusion engine: fan one request out to the pool, keep time and money, then hand over to a mode.

Quorum: once `min_answers` members have answered, stragglers get `grace_ms` more, then are cancelled and
recorded as cut; `deadline_ms` is the hard limit. A failed member (error, timeout, empty answer) is recorded
with a typed reason and the rest go on; fewer than `min_answers` answers raise `QuorumError`.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import GemfuseError, ModelError
from ..messages import Message
from ..models.base import Completion, GenerateOptions, Usage, collect
from ..models.certainty import approximate, certainties
from ..models.contract import breach
from ..tool_calls import ToolCall, ToolSet
from .events import CallDone, EventSink, FusionEvent
from .preset import FusionPreset, Member
from .registry import ModelRegistry
from .trace import Call, FusionTrace


class FusionError(GemfuseError):
    """A fusion could not produce an answer."""


class QuorumError(FusionError):
    def __init__(self, message: str, trace: FusionTrace):
        self.trace = trace
        reasons = ", ".join(f"{c.member}: {c.error}" for c in trace.failures) or "none"
        super().__init__(f"{message} (failures: {reasons})")


@dataclass
class Request:
    member: str
    model: str
    messages: Sequence[Message]
    options: GenerateOptions
    timeout_s: float | None = None
    role: str = "member"


class FusionRun:
    """One fusion in progress: the registry, the preset, the trace, the clock and the budget."""

    def __init__(self, registry: ModelRegistry, preset: FusionPreset, messages: Sequence[Message], *, seed: int | None = None,
                 on_event: EventSink | None = None, tools: ToolSet | None = None, json_schema: dict | None = None,
                 json_strict: bool = False, sampling: dict[str, Any] | None = None):
        self.registry = registry
        self.preset = preset
        self.messages = list(messages)
        # the request's contract, asked of every member and kept by the fused answer
        self.tools = tools if tools is not None and tools.tools else None
        self.json_schema, self.json_strict = json_schema, json_strict
        self.sampling = sampling or {}  # the request's top_p (a member's own wins) and stop
        self.answer_calls: list[ToolCall] | None = None  # calls a mode made up itself (the argument vote)
        self.seed = seed if seed is not None else (preset.seed if preset.seed is not None
                                                   else random.SystemRandom().randrange(2**31))
        self.trace = FusionTrace(mode=preset.mode, seed=self.seed, pool=[m.model for m in preset.members()],
                                 judge=preset.judge)
        self.on_event = on_event
        self.t0 = time.perf_counter()

    # -- clock, money, events ---------------------------------------------------------------------------------
    def now(self) -> float:
        return time.perf_counter() - self.t0

    def over_budget(self) -> bool:
        return self.preset.max_cost is not None and self.trace.cost >= self.preset.max_cost

    async def emit(self, event: FusionEvent) -> None:
        if self.on_event is not None:
            result = self.on_event(event)
            if asyncio.iscoroutine(result):
                await result

    def price(self, model: str, usage: Usage) -> float | None:
        spec = self.registry.spec(model)
        return spec.price.cost(usage.prompt_tokens, usage.completion_tokens) if spec.price else None

    # -- one call ---------------------------------------------------------------------------------------------
    def member_requests(self, messages_for: Callable[[Member], Sequence[Message]] | None = None) -> list[Request]:
        """The pool as requests, ids unique (`model#2` when a model appears twice)."""
        members = self.preset.members()
        counts: dict[str, int] = {}
        requests = []
        for member in members:
            counts[member.model] = counts.get(member.model, 0) + 1
            ident = member.model if counts[member.model] == 1 else f"{member.model}#{counts[member.model]}"
            requests.append(Request(ident, member.model, messages_for(member) if messages_for else self.messages,
                                    self.member_options(member), self.timeout_s(member.timeout_ms)))
        return requests

    def member_options(self, member: Member, **override) -> GenerateOptions:
        preset = self.preset
        values: dict[str, Any] = dict(max_tokens=member.max_tokens or preset.max_tokens,
                      temperature=member.temperature if member.temperature is not None else preset.temperature,
                      top_p=member.top_p if member.top_p is not None else self.sampling.get("top_p"),
                      stop=self.sampling.get("stop", ()), seed=member.seed,
                      logprobs=preset.logprobs or preset.mode in ("confidence", "cascade")
                      or preset.vote_weight == "confidence")
        values.update(tools=self.tools, json_schema=self.json_schema, json_strict=self.json_strict)
        values.update(override)
        return GenerateOptions(**values)

    def timeout_s(self, member_ms: int | None = None) -> float | None:
        ms = member_ms or self.preset.member_timeout_ms
        return ms / 1000 if ms else None

    async def call(self, request: Request, round_: int = 0,
                   on_text: Callable[[str], Awaitable[None]] | None = None) -> Call:
        """Run one model call with its concurrency slot and timeout; never raises for model failures."""
        call = Call(role=request.role, member=request.member, model=request.model, round=round_,
                    started_s=self.now())
        self.trace.add(call)
        queued_at = time.perf_counter()
        try:
            model = self.registry.get(request.model)
            async with self.registry.slot(request.model):
                call.queued_s = time.perf_counter() - queued_at
                async with asyncio.timeout(request.timeout_s):
                    completion = await _generate(model, request.messages, request.options, on_text)
            call.text, call.usage, call.latency_s = completion.text, completion.usage, completion.latency_s
            call.tool_calls = completion.tool_calls
            if completion.logprobs:
                preset = self.preset
                call.certainties = certainties(completion.logprobs, preset.certainty_window)
                call.certainty = call.certainties.get(preset.certainty)
                call.certainty_tokens, call.logprobs = len(completion.logprobs), completion.logprobs
                call.certainty_approximate = approximate(completion.logprobs, preset.certainty)
            broken = breach(completion, request.options) if request.role in ("member", "revision") else None
            if not call.text.strip() and not call.tool_calls:
                call.error, call.message = "empty", "the model returned an empty answer"
            elif broken:  # never a candidate: a fused answer keeps the request's tools and schema
                call.error, call.message = "invalid_answer", broken
        except TimeoutError as exc:
            call.error = "timeout"
            call.message = str(exc) or f"no answer within {request.timeout_s:g} s"
        except ModelError as exc:
            call.error, call.message = exc.reason, str(exc)
        except asyncio.CancelledError:
            call.error, call.message = "cut", "cancelled: the quorum was reached or the deadline passed"
            call.ended_s = self.now()
            raise
        except GemfuseError as exc:
            call.error, call.message = "error", str(exc)
        except Exception as exc:  # a backend bug must not sink the other members
            call.error, call.message = "error", f"{type(exc).__name__}: {exc}"
        call.ended_s = self.now()
        if call.latency_s == 0.0:
            call.latency_s = call.ended_s - call.started_s
        call.cost = self.price(request.model, call.usage)
        await self.emit(CallDone(call))
        return call

    # -- fan-out with quorum ----------------------------------------------------------------------------------
    async def fan_out(self, requests: list[Request], round_: int = 0, phase: str = "fan_out") -> list[Call]:
        """Run the requests concurrently under the preset's quorum; returns the successful calls."""
        started = self.now()
        tasks = {asyncio.create_task(self.call(r, round_)): r for r in requests}
        deadline = time.perf_counter() + self.preset.deadline_ms / 1000 if self.preset.deadline_ms else None
        grace_until = None
        done_ok: list[Call] = []
        pending = set(tasks)
        quorum = min(self.preset.min_answers, len(requests))
        try:
            while pending:
                limits = [t for t in (deadline, grace_until) if t is not None]
                timeout = max(0.0, min(limits) - time.perf_counter()) if limits else None
                finished, pending = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    if task.result().ok:
                        done_ok.append(task.result())
                if len(done_ok) >= quorum and grace_until is None and self.preset.grace_ms is not None:
                    grace_until = time.perf_counter() + self.preset.grace_ms / 1000
                if not finished and pending:  # the grace period or the deadline ran out
                    break
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        self.trace.phases[phase if round_ == 0 else f"{phase}_{round_}"] = self.now() - started
        if len(done_ok) < quorum:
            raise QuorumError(f"only {len(done_ok)} of {len(requests)} members answered; "
                              f"min_answers is {self.preset.min_answers}", self.trace)
        order = {r.member: i for i, r in enumerate(requests)}
        return sorted(done_ok, key=lambda c: order[c.member])


async def _generate(model, messages, options, on_text) -> Completion:
    """generate(), or stream() when the caller wants the text as it comes (the judge's final answer)."""
    if on_text is None:
        return await model.generate(messages, options)
    return await collect(model.name, model.stream(messages, options), on_text)
