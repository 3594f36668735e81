"""The short way in: a model by name, and a fusion with the default registry (the config file, or `config`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ._sync import run_sync
from .capture import fusion_name, keep_fusion
from .fusion.api import afuse as afuse_with
from .fusion.trace import FusionResult
from .messages import Message, as_messages
from .models.base import Model
from .registry import Registry


def get_model(name: str, config=None) -> Model:
    """A configured model by name (built-ins need no config)."""
    return Registry.load(config).get(name)


async def afuse(messages: str | Message | Sequence[Message], *, registry: Registry | None = None, config=None,
                capture: str | Path | None = None, **settings) -> FusionResult:
    """Fuse `messages` with `pool=` / `preset=` and any fusion setting (see gemfuse.fusion.afuse). Without a
    registry, one is made from the config and closed afterwards. `capture`: a folder where the answer is kept
    as a training row with its provenance (for gemfuse distil)."""
    own = None if registry is not None else Registry.load(config)
    used = registry or own
    assert used is not None
    try:
        result = await afuse_with(messages, registry=used, **settings)
        if capture is not None:
            keep_fusion(used.capture_writer(capture), as_messages(messages), result,
                        name=fusion_name(settings.get("preset")), source="fuse")
        return result
    finally:
        if own is not None:
            await own.aclose()


def fuse(messages: str | Message | Sequence[Message], **settings) -> FusionResult:
    """Synchronous `afuse`, for scripts and notebooks."""
    return run_sync(afuse(messages, **settings))


async def aevaluate(dataset, settings=None, *, config=None, **options):
    """Evaluate on the configured models (`gemfuse eval` in Python): `gemfuse.evals.arun` with the default
    registry, made from the config and closed afterwards. Keywords: EvalSettings fields, cache, progress, out."""
    from .evals import arun

    registry = Registry.load(config)
    try:
        report = await arun(dataset, settings, registry=registry, **options)
    finally:
        await registry.aclose()
    save_calibrated_cascade(report, registry)
    return report


def save_calibrated_cascade(report, registry: Registry) -> None:
    """With `write_preset`, the cascade calibrated on dev becomes a preset of the user's config."""
    from .errors import ConfigError
    from .paths import config_path
    from .weights.pull import register

    settings = report.settings
    calibrated = (report.data.get("frontier") or {}).get("calibrated") or {}
    if not settings.write_preset:
        return
    if calibrated.get("threshold") is None:
        raise ConfigError(f"eval: no cascade threshold meets {calibrated.get('goal', 'the goal')}; "
                          f"the preset {settings.write_preset} was not written")
    register(registry.config.path or config_path(), settings.write_preset, {
        "pool": report.data["frontier"]["pool"], "mode": "cascade", "threshold": calibrated["threshold"],
        "max_tokens": settings.max_tokens, "temperature": settings.temperature,
        "description": f"cascade calibrated for {calibrated['goal']} on {report.data['dataset']}"}, section="presets")


def evaluate(dataset, settings=None, **options):
    """Synchronous `aevaluate`: `gemfuse.evaluate("builtin:arithmetic", models=["smollm2-135m"], n=40)`."""
    return run_sync(aevaluate(dataset, settings, **options))


def gguf_accuracy(paths: Sequence[Path], items: int) -> list[float]:
    """Accuracy of each GGUF on the built-in arithmetic set (same items, temperature 0)."""
    from .evals import arun
    from .models.llamacpp import LlamaCppSpec

    names = [f"quantize-check-{i}" for i in range(len(paths))]

    async def score():
        registry = Registry.load()
        for name, path in zip(names, paths, strict=True):
            registry.add_spec(name, LlamaCppSpec(path=str(path), n_ctx=2048, concurrency=1, repeat_penalty=1.1))
        try:
            return await arun("builtin:arithmetic", registry=registry, models=names, n=items, cache="off",
                              dev_fraction=0.0)
        finally:
            await registry.aclose()

    report = run_sync(score())
    by_name = {s["name"]: s for s in report.data["systems"]}
    return [by_name[name]["accuracy"] for name in names]
