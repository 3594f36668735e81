"""What a fusion tells its listener while it runs (`afuse(on_event=...)`, `fusion_events()`): each member's or
judge's call as it lands, the fused answer's text as it is written, and the result at the end."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .trace import Call, FusionResult


@dataclass(frozen=True)
class CallDone:
    """A member, revision or judge call finished (or failed: `call.error`)."""

    call: Call


@dataclass(frozen=True)
class Delta:
    """More of the fused answer's text."""

    text: str


@dataclass(frozen=True)
class Done:
    """The fusion finished; always the last event."""

    result: FusionResult


FusionEvent = CallDone | Delta | Done
EventSink = Callable[[FusionEvent], Awaitable[None] | None]
