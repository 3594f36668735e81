"""`gemfuse.distil`'s stages as functions: keywords are DistilSettings fields (or `settings=` / `file=` a distil
TOML). Without a `registry`, one is made from the config (`config=`) and closed afterwards."""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from .._sync import run_sync
from ..registry import Registry
from ..shapes import DistilReport
from .filter import FilterReport, filter_rows
from .label import LabelReport
from .label import alabel as label_with
from .pipeline import adistil
from .prompts import Prompt
from .settings import DistilSettings, distil_settings

T = TypeVar("T")
Prompts = str | Path | builtins.list[Prompt]


async def _with_registry(registry: Registry | None, config: Any, work: Callable[[Registry], Awaitable[T]]) -> T:
    own = None if registry is not None else Registry.load(config)
    used = registry or own
    assert used is not None
    try:
        return await work(used)
    finally:
        if own is not None:
            await own.aclose()


async def alabel(prompts: Prompts, *, out: str | Path, registry: Registry | None = None, config: Any = None,
                 cache: str | Path | None = None, settings: DistilSettings | None = None,
                 file: str | Path | None = None, on_label: Callable[[int, int], None] | None = None,
                 **changes: Any) -> LabelReport:
    """Label `prompts` with the teacher into the folder `out` (labelled.jsonl, media, label.json);
    `on_label(done, total)` after each prompt."""
    chosen = distil_settings(settings, file=file, **changes)
    return await _with_registry(registry, config, lambda r: label_with(prompts, out, chosen, registry=r, cache=cache,
                                                                       on_label=on_label))


def label(prompts: Prompts, **options: Any) -> LabelReport:
    """Synchronous `alabel`."""
    return run_sync(alabel(prompts, **options))


def filter(folder: str | Path, *, settings: DistilSettings | None = None, file: str | Path | None = None,
           **changes: Any) -> FilterReport:
    """Apply the filter rules to folder/labelled.jsonl: train.jsonl, val.jsonl, dropped.jsonl, filter.json."""
    return filter_rows(folder, distil_settings(settings, file=file, **changes))


async def arun(prompts: Prompts, *, out: str | Path = "distil", registry: Registry | None = None, config: Any = None,
               cache: str | Path | None = None, settings: DistilSettings | None = None, file: str | Path | None = None,
               console: Any = None, on_label: Callable[[int, int], None] | None = None,
               **changes: Any) -> DistilReport:
    """label -> filter -> tune -> eval -> register; the report (also `out`/report.json)."""
    chosen = distil_settings(settings, file=file, **changes)
    return await _with_registry(registry, config, lambda r: adistil(prompts, chosen, out=out, registry=r, cache=cache,
                                                                     console=console, on_label=on_label))


def run(prompts: Prompts, **options: Any) -> DistilReport:
    """Synchronous `arun`."""
    return run_sync(arun(prompts, **options))
