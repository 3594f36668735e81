"""Nothing paid twice: every model call of an eval is kept in SQLite (WAL) under a hash of what decides its
answer (the model as its name resolves now, weights on disk included, messages, sampling options and seed: see
identity.py), and so is every scored item.

An interrupted eval resumes where it stopped; a re-run with another judge or mode re-uses the members' answers;
two systems asking the same question at the same moment share one call. Failed calls are not kept, so a re-run
tries them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..fusion.model import FusionModel
from ..fusion.preset import FUSION_PREFIX, FusionPreset
from ..fusion.registry import ModelRegistry
from ..messages import Message
from ..models.base import Completion, GenerateOptions, Model, StreamChunk, TokenLogprob, Usage
from ..models.spec import ModelSpec
from ..tool_calls import ToolCall
from .identity import spec_identity

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, model TEXT, text TEXT, finish TEXT, prompt_tokens INTEGER,
    completion_tokens INTEGER, estimated INTEGER, latency_s REAL, created REAL, logprobs TEXT, tool_calls TEXT);
CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, system TEXT, item TEXT, record TEXT, created REAL);
"""


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def stored_token(token: str, logprob: float, top: list, confidence: float | None = None,
                 self_certainty: float | None = None, approximate: bool = False) -> TokenLogprob:
    """A token as the cache keeps it (rows from before the certainty figures have three fields)."""
    return TokenLogprob(token, logprob, [tuple(a) for a in top], confidence, self_certainty, approximate)


class EvalCache:
    """The SQLite file: model calls and scored items. One writer (the eval's event loop)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: safe against a killed process
        self.db.executescript(SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(calls)")}
        for column in ("logprobs", "tool_calls"):  # a cache from before they were kept
            if column not in columns:
                self.db.execute(f"ALTER TABLE calls ADD COLUMN {column} TEXT")

    def close(self) -> None:
        self.db.close()

    # -- model calls --------------------------------------------------------------------------------------------
    def get_call(self, key: str) -> Completion | None:
        row = self.db.execute("SELECT model, text, finish, prompt_tokens, completion_tokens, estimated, latency_s, "
                              "logprobs, tool_calls FROM calls WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        model, text, finish, prompt, completion, estimated, latency, logprobs, calls = row
        tokens = [stored_token(*row) for row in json.loads(logprobs)] if logprobs else None
        return Completion(text=text, model=model, finish_reason=finish, usage=Usage(prompt, completion, bool(estimated)),
                          latency_s=latency, logprobs=tokens,
                          tool_calls=[ToolCall.from_openai(c) for c in json.loads(calls)] if calls else None)

    def put_call(self, key: str, completion: Completion) -> None:
        usage = completion.usage
        logprobs = (json.dumps([[t.token, t.logprob, t.top, t.confidence, t.self_certainty, t.approximate]
                                for t in completion.logprobs], ensure_ascii=False)
                    if completion.logprobs is not None else None)
        calls = json.dumps([c.to_openai() for c in completion.tool_calls]) if completion.tool_calls else None
        self.db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (key, completion.model, completion.text, completion.finish_reason, usage.prompt_tokens,
                         usage.completion_tokens, int(usage.estimated), completion.latency_s, time.time(), logprobs,
                         calls))

    # -- scored items -------------------------------------------------------------------------------------------
    def get_result(self, key: str) -> dict | None:
        row = self.db.execute("SELECT record FROM results WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def get_results(self, keys: list[str]) -> dict[str, dict]:
        """Every stored record among `keys`, in one query per 500 keys (SQLite's parameter limit)."""
        found: dict[str, dict] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            rows = self.db.execute(f"SELECT key, record FROM results WHERE key IN ({','.join('?' * len(chunk))})",
                                   chunk).fetchall()
            found.update((key, json.loads(record)) for key, record in rows)
        return found

    def put_result(self, key: str, system: str, item: str, record: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?)",
                        (key, system, item, json.dumps(record, ensure_ascii=False), time.time()))


def call_key(name: str, spec, messages: Sequence[Message], options: GenerateOptions) -> str:
    return digest({"v": 2, "model": name, "spec": spec_identity(spec), "messages": [m.to_openai() for m in messages],
                   "options": options.model_dump(mode="json", exclude_defaults=True)})  # a new option keeps old keys


class CachedModel(Model):
    """A model whose calls go through the cache; a miss waits for the model's own concurrency slot."""

    def __init__(self, inner: Model, registry: CachingRegistry, name: str | None = None):
        super().__init__(name or inner.name)
        self.inner = inner
        self.registry = registry
        self.modalities = inner.modalities

    async def generate(self, messages: Sequence[Message], options: GenerateOptions | None = None) -> Completion:
        options = options or GenerateOptions()
        key = call_key(self.name, self.registry.spec(self.name), messages, options)
        return await self.registry.cached_call(key, self.name, lambda: self._call(messages, options))

    async def _call(self, messages: Sequence[Message], options: GenerateOptions) -> Completion:
        async with self.registry.inner.slot(self.registry.inner_name(self.name)):
            return await self.inner.generate(messages, options)

    async def stream(self, messages: Sequence[Message], options: GenerateOptions | None = None
                     ) -> AsyncIterator[StreamChunk]:
        completion = await self.generate(messages, options)
        yield StreamChunk(text=completion.text, tool_calls=completion.tool_calls)
        yield StreamChunk(finish_reason=completion.finish_reason or "stop", usage=completion.usage,
                          latency_s=completion.latency_s, logprobs=completion.logprobs)

    async def check(self) -> tuple[bool, str]:
        return await self.inner.check()


class CachingRegistry:
    """The registry an eval runs on (a ModelRegistry): the same models and presets, every call through the
    cache. Specs added here (a fine-tune's base) stay in this eval: one whose name the registry already gives
    to other weights is kept there under a private alias, so the caller's registry is unchanged."""

    def __init__(self, inner: ModelRegistry, cache: EvalCache | None):
        self.inner = inner
        self.cache = cache
        self._models: dict[str, Model] = {}
        self.inflight: dict[str, asyncio.Future] = {}
        self.made: Counter = Counter()  # calls that reached a model, by model
        self.reused: Counter = Counter()  # calls answered from the cache or by a call already in flight
        self.aliases: dict[str, str] = {}  # name in this eval -> name in the inner registry

    def inner_name(self, name: str) -> str:
        return self.aliases.get(name, name)

    def get(self, name: str) -> Model:
        if name not in self._models:
            if name.startswith(FUSION_PREFIX):
                self._models[name] = FusionModel(name, self.preset(name), self)
            else:
                self._models[name] = CachedModel(self.inner.get(self.inner_name(name)), self, name)
        return self._models[name]

    def spec(self, name: str) -> ModelSpec:
        return self.inner.spec(self.inner_name(name))

    def specs(self) -> Mapping[str, ModelSpec]:
        inner = self.inner.specs()
        hidden = {alias for name, alias in self.aliases.items() if alias != name}
        return {**{n: s for n, s in inner.items() if n not in hidden},
                **{name: inner[alias] for name, alias in self.aliases.items()}}

    def add_spec(self, name: str, spec: ModelSpec) -> None:
        alias = name
        if name in self.inner.specs() and self.inner.specs()[name] != spec:
            alias = f"{name}@eval-{digest(spec.model_dump(mode='json'))[:12]}"
        self.inner.add_spec(alias, spec)
        self.aliases[name] = alias
        self._models.pop(name, None)

    def preset(self, name: str) -> FusionPreset:
        return self.inner.preset(name)

    def check_preset(self, preset: FusionPreset) -> None:
        self.inner.check_preset(preset)

    def slot(self, name: str):
        """No slot here: a cached answer needs none, and a miss takes the model's own (CachedModel._call)."""
        return contextlib.nullcontext()

    async def cached_call(self, key: str, model: str, call) -> Completion:
        if self.cache is not None and (hit := self.cache.get_call(key)) is not None:
            self.reused[model] += 1
            return hit
        if key in self.inflight:
            self.reused[model] += 1
            return await asyncio.shield(self.inflight[key])
        future = asyncio.get_running_loop().create_future()
        self.inflight[key] = future
        try:
            completion = await call()
            self.made[model] += 1
            if self.cache is not None and (completion.text.strip() or completion.tool_calls):
                self.cache.put_call(key, completion)
            future.set_result(completion)
            return completion
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # marked as retrieved: nobody else may be waiting
            raise
        finally:
            del self.inflight[key]

    async def aclose(self) -> None:
        self._models.clear()
        await self.inner.aclose()
