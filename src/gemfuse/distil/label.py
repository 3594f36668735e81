"""Label: every prompt through the teacher (a fusion preset or one model), with bounded concurrency, each call
through the eval's SQLite cache, and each finished label kept there too: a killed run resumes, pays no call
twice and writes the same rows. The rows go to `labelled.jsonl` in the prompts' order, media beside them, the
provenance under `meta`; prompts the teacher could not answer are listed in `label.json` with the reason."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..capture import fusion_meta, training_row
from ..errors import GemfuseError, SettingError
from ..evals.cache import CachingRegistry, digest
from ..evals.datasets import load_eval_set
from ..evals.harness import open_cache, seed_for
from ..evals.identity import preset_identity
from ..fusion.api import afuse
from ..fusion.engine import QuorumError
from ..fusion.preset import FUSION_PREFIX, FusionPreset, Member
from ..fusion.registry import ModelRegistry
from ..models.base import GenerateOptions
from ..paths import output_path, published_file
from ..shapes import LABELLED, RowMeta
from ..tool_calls import ToolCall
from .prompts import Prompt, check_leakage, read_prompts
from .settings import DistilSettings


@dataclass
class LabelReport:
    folder: str
    teacher: str
    prompts: int = 0
    labelled: int = 0
    from_cache: int = 0  # labels found finished in the cache
    failed: list[dict[str, str]] = field(default_factory=list)  # prompt, where, why
    calls_made: dict[str, int] = field(default_factory=dict)
    calls_reused: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def teacher_preset(registry: ModelRegistry, teacher: str, settings: DistilSettings) -> FusionPreset:
    """A preset as configured, or one model as a one-member vote (so every teacher gives a trace)."""
    if teacher.startswith(FUSION_PREFIX):
        preset = registry.preset(teacher)
    else:
        registry.spec(teacher)  # unknown names fail here, with the known ones listed
        preset = FusionPreset(pool=[Member(model=teacher, seed=settings.seed)], mode="vote",
                              max_tokens=settings.max_tokens, temperature=settings.temperature)
    registry.check_preset(preset)
    return preset


def teacher_members(registry: ModelRegistry, teacher: str) -> list[str]:
    if not teacher.startswith(FUSION_PREFIX):
        return []
    return list(dict.fromkeys(m.model for m in registry.preset(teacher).members()))


async def alabel(prompts: str | Path | list[Prompt], out: str | Path, settings: DistilSettings, *,
                 registry: ModelRegistry, cache: str | Path | None = None,
                 on_label: Callable[[int, int], None] | None = None) -> LabelReport:
    """Label `prompts` with `settings.teacher` into the folder `out`. `cache`: the SQLite file, "off", or None
    for the user's eval cache. `on_label(done, total)` after every prompt."""
    if not settings.teacher:
        raise SettingError("teacher", None, "distil needs a teacher: fusion/NAME or a model name")
    started = time.perf_counter()
    folder = output_path(out, folder=True)
    items = prompts if isinstance(prompts, list) else read_prompts(prompts)
    if settings.eval:  # before any call is paid
        check_leakage(items, load_eval_set(settings.eval, dev_fraction=0.0))
    preset = teacher_preset(registry, settings.teacher, settings)
    report = LabelReport(str(folder), settings.teacher, prompts=len(items))
    caching = CachingRegistry(registry, open_cache(cache))
    identity = digest({"teacher": settings.teacher, "resolved": preset_identity(registry, preset), "seed": settings.seed})
    answers: dict[int, dict[str, Any]] = {}
    gate = asyncio.Semaphore(settings.concurrency)
    keys = [digest({"distil-label": 1, "teacher": identity, "messages": [m.to_openai() for m in p.messages],
                    **asked_under(p)}) for p in items]
    finished = caching.cache.get_results(keys) if caching.cache else {}  # one query, not one a prompt

    async def label(index: int) -> None:
        prompt, key = items[index], keys[index]
        found = finished.get(key)
        if found is not None:
            report.from_cache += 1
        else:
            async with gate:
                found = await _ask(prompt, preset, caching, settings)
            if caching.cache is not None and "error" not in found:
                caching.cache.put_result(key, "distil-label", prompt.id, found)
        answers[index] = found
        if on_label:
            on_label(len(answers), len(items))

    try:
        await asyncio.gather(*(label(i) for i in range(len(items))))
    finally:
        if caching.cache is not None:
            caching.cache.close()
    rows = []
    for index, prompt in enumerate(items):
        found = answers[index]
        if "error" in found:
            report.failed.append({"prompt": prompt.id, "where": prompt.where, "why": found["error"]})
            continue
        meta: RowMeta = {**found["meta"], "prompt": prompt.id, "where": prompt.where, "reference": prompt.reference}
        if prompt.reference_calls:
            meta["reference_calls"] = [call.to_openai() for call in prompt.reference_calls]
        calls = [ToolCall.from_openai(c) for c in found.get("tool_calls") or []]
        options = GenerateOptions(tools=prompt.tools, json_schema=prompt.schema)
        rows.append(training_row(prompt.messages, found["text"] or None, meta, folder, calls, options))
    write_jsonl(folder / LABELLED, rows)
    report.labelled = len(rows)
    report.calls_made, report.calls_reused = dict(caching.made), dict(caching.reused)
    report.seconds = round(time.perf_counter() - started, 3)
    (folder / "label.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return report


async def _ask(prompt: Prompt, preset: FusionPreset, registry: CachingRegistry,
               settings: DistilSettings) -> dict[str, Any]:
    """The teacher's answer and its provenance, or {"error": why}."""
    try:
        result = await afuse(prompt.messages, preset=preset, registry=registry, seed=seed_for(settings.seed, prompt.id),
                             tools=prompt.tools, json_schema=prompt.schema)
    except QuorumError as exc:
        return {"error": "no answer: " + "; ".join(f"{c.member}: {c.error}: {c.message}" for c in exc.trace.failures)}
    except GemfuseError as exc:
        return {"error": str(exc)[:500]}
    if not result.text.strip() and not result.tool_calls:
        return {"error": "the teacher's answer was empty"}
    meta = fusion_meta(result, model=settings.teacher or "", extractor=preset.extractor, source="label",
                       json_answers=prompt.schema is not None)
    calls = [call.to_openai() for call in result.tool_calls or []]
    return {"text": result.text, "meta": meta, **({"tool_calls": calls} if calls else {})}


def asked_under(prompt: Prompt) -> dict[str, Any]:
    """The tools and schema a prompt is labelled under (none: nothing, so older labels keep their keys)."""
    found: dict[str, Any] = {}
    if prompt.tools is not None:
        found["tools"] = prompt.tools.model_dump(mode="json")
    if prompt.schema is not None:
        found["schema"] = prompt.schema
    return found


def write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """All rows, replacing the file at once (a killed write leaves the old file)."""
    with published_file(path) as staging, open(staging, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
