"""The eval loop: every system on its items, concurrently (bounded overall and per model), each scored item kept
in the cache as soon as it is done, so a killed eval resumes and a finished one re-reports for free.

    report = gemfuse.evaluate("builtin:arithmetic", models=["smollm2-135m", "gemma-3-270m"],
                              pool=["smollm2-135m", "gemma-3-270m"], judge="smollm2-135m",
                              systems=["members", "vote", "best-of"], n=60, out="evals/first")
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._sync import run_sync
from ..errors import ConfigError, GemfuseError, SettingError
from ..fusion.api import afuse
from ..fusion.engine import QuorumError
from ..fusion.registry import ModelRegistry
from ..fusion.trace import FusionTrace
from ..messages import Message
from ..models.base import GenerateOptions
from ..paths import cache_dir, output_path
from ..prompted_tools import call_text
from ..tool_calls import ToolCall
from .cache import CachingRegistry, EvalCache, digest
from .calibration import NEVER, calibrate_cascade
from .call_scorers import CALL_SCORERS, item_scorer, score_structured
from .datasets import EvalItem, EvalSet, load_eval_set
from .identity import preset_identity
from .records import ItemResult, JudgeRecord, VerdictRecord
from .report import Report, build_report
from .scorers import DEFAULT_RUBRIC, Score, rubric, scorer_for
from .settings import EvalSettings, eval_settings
from .systems import System, build_systems

EXTRACTOR_FOR_KIND = {"number": "number", "choice": "letter", "text": "auto"}


@dataclass
class Progress:
    """What a progress display needs; each listener is called after every scored item."""

    total: int = 0
    done: int = 0
    from_cache: int = 0  # items whose scored result was already in the cache
    correct: int = 0
    cost: float = 0.0
    listeners: list[Callable[[Progress], None]] = field(default_factory=list)

    def add(self, record: ItemResult) -> None:
        self.done += 1
        self.correct += bool(record.correct)
        self.cost += record.cost or 0.0
        for listener in self.listeners:
            listener(self)


def item_seed(seed: int, item: EvalItem) -> int:
    return seed_for(seed, item.id)


def seed_for(seed: int, ident: str) -> int:
    """One item's own seed: fixed by the run's seed and the item's id, whatever order items run in."""
    return int(hashlib.sha256(f"{seed}:{ident}".encode()).hexdigest()[:8], 16)


def item_digest(item: EvalItem) -> str:
    found: dict[str, Any] = {"id": item.id, "messages": [m.to_openai() for m in item.messages],
                             "answer": item.answer, "choices": item.choices}
    if item.tools is not None or item.schema is not None:  # items without them keep their old keys
        found |= {"tools": item.tools.model_dump(mode="json") if item.tools else None, "schema": item.schema,
                  "calls": [[c.canonical() for c in answer] for answer in item.calls or []]}
    return digest(found)


class Evaluator:
    """Scores replies: a plain scorer, or the rubric through the evaluator model (its calls cached too)."""

    def __init__(self, settings: EvalSettings, kind: str, registry: CachingRegistry):
        self.settings = settings
        self.name = settings.scorer_id(kind)["scorer"]
        self.registry = registry
        self.per_item = settings.scorer == "auto"  # an item with tools or a schema is scored by its shape
        if self.name in CALL_SCORERS:
            self.plain = None
        elif self.name == "rubric":
            if not settings.evaluator:
                raise SettingError("evaluator", None, "the rubric scorer needs an evaluator model")
            registry.spec(settings.evaluator)
            self.plain = None
        else:
            try:
                self.plain = scorer_for(self.name, tolerance=settings.tolerance, pattern=settings.pattern)
            except Exception as exc:
                raise ConfigError(f"eval: scorer {self.name}: {exc}") from None

    def scorer_of(self, item: EvalItem) -> str:
        return (self.per_item and item_scorer(item)) or self.name

    async def score(self, item: EvalItem, reply: str, calls: list[ToolCall] | None = None) -> tuple[Score, float]:
        """(score, what the evaluator's calls cost)."""
        name = self.scorer_of(item)
        if name in CALL_SCORERS:
            return score_structured(name, item, reply, calls), 0.0
        if calls:  # a call where an answer in words was due
            return Score(False, 0.0, call_text(calls)), 0.0
        if self.plain is not None:
            return self.plain(item, reply), 0.0
        spent = 0.0

        evaluator = self.settings.evaluator
        assert evaluator is not None  # the rubric scorer was refused without one in __init__

        async def ask(system: str, user: str) -> str:
            nonlocal spent
            model = self.registry.get(evaluator)
            completion = await model.generate([Message.system(system), Message.user(user)],
                                              GenerateOptions(max_tokens=64, temperature=0, seed=self.settings.seed))
            spec = self.registry.spec(evaluator)
            if spec.price:
                spent += spec.price.cost(completion.usage.prompt_tokens, completion.usage.completion_tokens)
            return completion.text

        score = await rubric(item, reply, ask, self.settings.rubric or DEFAULT_RUBRIC)
        return score, spent


def modelled_latency(trace: FusionTrace) -> float:
    """The fusion's latency from each call's own measured time: per round, the slowest member; then every
    judge call in turn. Independent of queueing inside the eval and of which answers came from the cache."""
    rounds: dict[int, float] = {}
    judging = 0.0
    for call in trace.calls:
        if call.role in ("member", "revision"):
            rounds[call.round] = max(rounds.get(call.round, 0.0), call.latency_s)
        else:
            judging += call.latency_s
    return sum(rounds.values()) + judging


async def run_one(system: System, item: EvalItem, registry: CachingRegistry, evaluator: Evaluator,
                  seed: int) -> ItemResult:
    """One system on one item: the reply, its score, what it cost, and for fusions what the judge did."""
    record = ItemResult(system=system.name, item=item.id, split=item.split, scorer=evaluator.scorer_of(item))
    trace: FusionTrace | None = None
    calls: list[ToolCall] | None = None
    try:
        result = await afuse(item.messages, preset=system.preset, registry=registry, seed=item_seed(seed, item),
                             tools=item.tools, json_schema=item.schema)
        trace, record.text, record.chosen, calls = result.trace, result.text, result.chosen, result.tool_calls
        if calls:
            record.tool_calls = [call.to_openai() for call in calls]
    except QuorumError as exc:
        trace = exc.trace
        record.error = f"no answer: {'; '.join(f'{c.error}: {c.message}' for c in trace.failures)}"[:500]
    except GemfuseError as exc:
        record.error = str(exc)[:500]
    score, record.eval_cost = (await evaluator.score(item, record.text, calls) if record.text or calls
                               else (Score(False, 0.0, None), 0.0))
    record.correct, record.value, record.extracted = score.correct, score.value, score.extracted
    if trace is None:
        return record
    usage = trace.usage
    record.prompt_tokens, record.completion_tokens = usage.prompt_tokens, usage.completion_tokens
    record.cost, record.unpriced, record.calls = trace.cost, trace.unpriced, len(trace.calls)
    record.latency_s, record.degraded = modelled_latency(trace), trace.degraded_reason
    if system.kind == "member" and trace.candidates:
        record.certainty = trace.candidates[0].certainties.get("mean")
        record.certainties = dict(trace.candidates[0].certainties)
    if system.kind == "fusion":
        for call in (c for c in trace.calls if c.role == "member" and c.ok):
            record.candidates[call.member] = (await evaluator.score(item, call.text, call.tool_calls))[0].correct
        if trace.judge_choice is not None:
            record.judge = JudgeRecord(trace.judge_choice, trace.shown_order, trace.swap_check == "disagreed")
        record.verdicts = [VerdictRecord(v.choice, len(v.order), v.read_as) for v in trace.verdicts]
        record.tie, record.tiers = trace.tie, [t.to_record() for t in trace.tiers]
    return record


async def run_systems(eval_set: EvalSet, systems: Sequence[System], registry: CachingRegistry,
                      settings: EvalSettings, progress: Progress | None = None) -> list[ItemResult]:
    """Every (system, item) pair's record, from the cache when already done. Member systems run on dev and
    test (dev picks the best member); fusions on test only. A cascade without a threshold, in an eval with dev
    items, waits for the members and is calibrated on their dev answers first."""
    evaluator = Evaluator(settings, eval_set.kind, registry)
    progress = progress or Progress()
    progress.total = sum(len(eval_set.items) if s.kind == "member" else len(eval_set.test) for s in systems)
    calibrated = [s for s in systems if needs_calibration(s, eval_set)]
    records = await run_batch(eval_set, [s for s in systems if s not in calibrated], registry, settings, evaluator,
                              progress)
    if calibrated:
        for system in calibrated:
            progress.total += len(eval_set.dev)
            await calibrate_system(system, eval_set, registry, settings, evaluator, progress)
        records += await run_batch(eval_set, calibrated, registry, settings, evaluator, progress)
    order = {s.name: i for i, s in enumerate(systems)}
    return sorted(records, key=lambda r: order[r.system])


def needs_calibration(system: System, eval_set: EvalSet) -> bool:
    """A cascade left without a threshold, in an eval with dev items."""
    return (system.kind == "fusion" and system.preset.mode == "cascade" and system.preset.threshold is None
            and bool(eval_set.dev))


async def calibrate_system(system: System, eval_set: EvalSet, registry: CachingRegistry, settings: EvalSettings,
                           evaluator: Evaluator, progress: Progress) -> None:
    """The cascade run once on the dev items with a threshold nothing reaches, replayed at every threshold
    (evals/calibration.py); the one chosen is the system's from then on."""
    preset = system.preset
    probe = System(system.name, "fusion", preset.model_copy(update={"threshold": NEVER}))
    records = await run_batch(eval_set, [probe], registry, settings, evaluator, progress, items=eval_set.dev)
    found = calibrate_cascade(records, preset.certainty, settings.target_accuracy, settings.target_cost)
    system.calibration = found
    if found and found.get("threshold") is not None:
        system.preset = preset.model_copy(update={"threshold": found["threshold"]})


async def run_batch(eval_set: EvalSet, systems: Sequence[System], registry: CachingRegistry, settings: EvalSettings,
                    evaluator: Evaluator, progress: Progress,
                    items: Sequence[EvalItem] | None = None) -> list[ItemResult]:
    """`systems` on `items` (default: members on every item, fusions on the test items)."""
    scorer_key = settings.scorer_id(eval_set.kind)
    jobs = []
    for system in systems:
        resolved = preset_identity(registry, system.preset)  # what its names point to now, not the names
        chosen = items if items is not None else eval_set.items if system.kind == "member" else eval_set.test
        for item in chosen:
            jobs.append((system, item, digest({"system": system.key, "resolved": resolved, "item": item_digest(item),
                                               "seed": settings.seed, "scorer": scorer_key})))
    records: dict[int, ItemResult] = {}
    todo = []
    for index, (_, _, key) in enumerate(jobs):
        cached = registry.cache.get_result(key) if registry.cache else None
        if cached is not None:
            records[index] = found = ItemResult.from_dict(cached)
            progress.from_cache += 1
            progress.add(found)
        else:
            todo.append(index)
    gate = asyncio.Semaphore(settings.concurrency)

    async def work(index: int) -> None:
        system, item, key = jobs[index]
        async with gate:
            record = await run_one(system, item, registry, evaluator, settings.seed)
        if registry.cache is not None and record.error is None:
            registry.cache.put_result(key, system.name, item.id, record.to_dict())
        records[index] = record
        progress.add(record)

    # jobs list members first, so they take the gate first; a fusion asking the same call meanwhile shares it
    await asyncio.gather(*(work(i) for i in todo))
    return [records[i] for i in range(len(jobs))]


def open_cache(cache: str | Path | None) -> EvalCache | None:
    if cache == "off":
        return None
    if cache is not None:
        return EvalCache(cache)
    return EvalCache(cache_dir() / "eval-cache.sqlite")


def run(dataset: str | Path | EvalSet, settings: EvalSettings | None = None, *, registry: ModelRegistry,
        **options: Any) -> Report:
    """`arun` from synchronous code (a notebook included)."""
    return run_sync(arun(dataset, settings, registry=registry, **options))


async def arun(dataset: str | Path | EvalSet, settings: EvalSettings | None = None, *, registry: ModelRegistry,
               cache: str | Path | None = None, progress: Progress | None = None, out: str | Path | None = None,
               **changes: Any) -> Report:
    """Run an eval of `dataset` on the models of `registry` and return its Report (written to `out` as JSON,
    Markdown, records and a PNG when given). `settings` (EvalSettings) with any of its fields changed by
    keyword: `arun(data, registry=r, models=["a"], n=40)`. `cache`: the SQLite file, "off", or None for the
    user cache. The registry stays open: it is the caller's (`gemfuse.evaluate` makes and closes one)."""
    settings = eval_settings(settings, **changes)
    if out is not None:
        output_path(out, folder=True)  # a bad --out is said before any call is paid
    eval_set = (dataset if isinstance(dataset, EvalSet)
                else load_eval_set(dataset, settings.n, settings.seed, settings.dev_fraction))
    caching = CachingRegistry(registry, open_cache(cache))
    try:
        chosen = build_systems(caching, models=settings.models, pool=settings.pool, judge=settings.judge,
                               systems=settings.systems, max_tokens=settings.max_tokens,
                               judge_max_tokens=settings.judge_max_tokens, temperature=settings.temperature,
                               seed=settings.seed, extractor=EXTRACTOR_FOR_KIND[eval_set.kind],
                               swap_check=settings.swap_check, certainty=settings.certainty,
                               threshold=settings.threshold)
        if settings.evaluator:
            judges = {j for s in chosen for j in (s.preset.judge, s.preset.backup_judge) if j}
            if settings.evaluator in judges:
                raise ConfigError(f"eval: the evaluator {settings.evaluator!r} is also a fusion judge; an evaluator "
                                  "must not grade its own choices: pick another --evaluator")
        progress = progress or Progress()
        records = await run_systems(eval_set, chosen, caching, settings, progress)
        report = build_report(eval_set, chosen, records, settings, calls_made=dict(caching.made),
                              calls_reused=dict(caching.reused), results_reused=progress.from_cache)
    finally:
        if caching.cache is not None:
            caching.cache.close()
    if out is not None:
        report.write(out)
    return report
