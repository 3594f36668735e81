"""What decides an answer, for the keys of cached calls, labels and scored items: a name is never enough. A model
is its resolved spec (what the name points to now) with a fingerprint of its weights on disk; a fusion is its
preset with every member's and judge's identity, and the judge's prompt files. Editing a model in the config,
retraining an adapter in place or swapping the judge asks again; a price or a description edit does not."""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path
from typing import Any

from ..fusion import judge
from ..fusion.preset import FusionPreset
from ..fusion.registry import ModelRegistry
from ..models.spec import ModelSpec

# Fields of a model's spec that do not change its answers: a price or a description edit keeps the cache.
NEUTRAL_SPEC_FIELDS = {"price", "description", "concurrency", "api_key_env", "timeout", "max_retries", "backoff_s",
                       "max_backoff_s", "threads"}
ON_DISK = ("path", "adapter", "lora", "mmproj")  # spec fields that may name local weights


def spec_identity(spec: ModelSpec) -> dict[str, Any]:
    identity = spec.model_dump(mode="json", exclude=NEUTRAL_SPEC_FIELDS & set(type(spec).model_fields))
    engine = getattr(type(spec), "ENGINE", None)  # a backend that changed the library answering under it
    if engine:
        identity["engine"] = engine
    weights = {}
    for field in ON_DISK:
        value = getattr(spec, field, None)
        if isinstance(value, str) and not value.startswith("package:"):  # a package's files change with its version
            path = Path(value).expanduser()
            if path.exists():
                weights[field] = fingerprint(path)
    if weights:
        identity["on_disk"] = weights
    return identity


def fingerprint(path: Path) -> list:
    """Size and modification time of a file, or of each file in a folder and its immediate sub-folders (a model
    folder, a run's adapter/): rewritten weights change it; reading them, or hashing gigabytes, is not needed."""
    if path.is_file():
        found = path.stat()
        return [found.st_size, found.st_mtime_ns]
    prints = []
    for folder in (path, *sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))):
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_file():
                    found = entry.stat()
                    prints.append([str(Path(entry.path).relative_to(path)), found.st_size, found.st_mtime_ns])
    return sorted(prints)


def preset_identity(registry: ModelRegistry, preset: FusionPreset) -> dict[str, Any]:
    """The preset and what each of its models resolves to now; the judge's prompts when a judge is asked."""
    judged = bool(preset.judge or preset.backup_judge) or preset.mode in ("best-of", "merge", "debate", "self")
    return {"preset": preset.model_dump(mode="json"),
            "models": {name: spec_identity(registry.spec(name)) for name in dict.fromkeys(preset.model_names())},
            "prompts": judge_prompts() if judged else None}


def judge_prompts() -> dict[str, dict[str, str]]:
    """The fusion prompts, as the judge reads them, by file: a changed prompt is another judge."""
    folder = importlib.resources.files("gemfuse.fusion").joinpath("prompts")
    names = sorted(entry.name.removesuffix(".toml") for entry in folder.iterdir() if entry.name.endswith(".toml"))
    return {name: {key: template.template for key, template in judge.prompt(name).items()} for name in names}
