"""Each model's load as the server sees it, and the gate in front of it: a model takes its slots (`concurrency`)
plus `max_queue` waiting requests; past that a request is answered 429. What passed the gate is counted for
/v1/gemfuse/stats: requests in flight and waiting, and the recent completion tokens/s and latencies."""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ..config import ServerSettings
from ..fusion.preset import FUSION_PREFIX
from ..fusion.registry import ModelRegistry
from .errors import QueueFull

WINDOW_S = 60.0  # tokens/s and latencies are read over the last minute
KEPT = 2048  # finished requests remembered per model


@dataclass
class Finished:
    at: float
    latency_s: float
    completion_tokens: int
    ok: bool


@dataclass
class Held:
    """One request through the gate; the handler fills in its tokens and outcome."""

    completion_tokens: int = 0
    ok: bool = False


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@dataclass
class ModelLoad:
    slots: int | None  # None: no limit set
    in_flight: int = 0
    served: int = 0
    unfinished: int = 0  # errors and clients that left before the answer ended
    finished: deque[Finished] = field(default_factory=lambda: deque(maxlen=KEPT))
    since: float = field(default_factory=time.monotonic)

    def snapshot(self, now: float) -> dict:
        running = self.in_flight if self.slots is None else min(self.in_flight, self.slots)
        recent = [f for f in self.finished if now - f.at <= WINDOW_S]
        latencies = [f.latency_s for f in recent if f.ok]
        span = max(1e-9, min(WINDOW_S, now - self.since))
        return {"slots": self.slots, "in_flight": running, "queued": self.in_flight - running,
                "served": self.served, "unfinished": self.unfinished,
                "completion_tokens_per_s": round(sum(f.completion_tokens for f in recent) / span, 2),
                "latency_p50_s": round(percentile(latencies, 0.5), 4) if latencies else None,
                "latency_p95_s": round(percentile(latencies, 0.95), 4) if latencies else None}


class QueueGate:
    """Bounds the requests in flight per model: its concurrency plus `max_queue` waiting; beyond that, 429."""

    def __init__(self, registry: ModelRegistry, settings: ServerSettings):
        self.registry = registry
        self.settings = settings
        self.loads: dict[str, ModelLoad] = {}

    def slots(self, name: str) -> int | None:
        if name.startswith(FUSION_PREFIX) or name not in self.registry.specs():
            return None
        return self.registry.spec(name).concurrency

    def load(self, name: str) -> ModelLoad:
        if name not in self.loads:
            self.loads[name] = ModelLoad(self.slots(name))
        return self.loads[name]

    @contextlib.asynccontextmanager
    async def held(self, name: str) -> AsyncIterator[Held]:
        """Past the gate, a request waits for the model's own slot, the one fusion members take too: the model
        never runs more than its concurrency at once, however its calls come."""
        load = self.load(name)
        if load.slots is not None and load.in_flight >= load.slots + self.settings.max_queue:
            raise QueueFull(f"model {name} has {load.in_flight} requests in flight or waiting; retry later")
        load.in_flight += 1
        started, held = time.monotonic(), Held()
        try:
            async with self.registry.slot(name) if load.slots is not None else contextlib.nullcontext():
                yield held
        finally:
            load.in_flight -= 1
            now = time.monotonic()
            load.finished.append(Finished(now, now - started, held.completion_tokens, held.ok))
            if held.ok:
                load.served += 1
            else:
                load.unfinished += 1

    def stats(self) -> dict:
        now = time.monotonic()
        return {"object": "gemfuse.stats", "window_s": WINDOW_S,
                "models": {name: load.snapshot(now) for name, load in sorted(self.loads.items())}}
