"""The whole loop in one call: label -> filter -> tune -> eval, then the student registered in the config.

Every stage resumes: labels come back from the cache, a finished training is reused (an interrupted one resumes
from its checkpoint), and the eval re-reads its scored items. The report adds what the issue of distillation is:
how much of the teacher's gain over the student's base the student kept, with a bootstrap interval, and what it
costs and how long it takes per item next to the teacher.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._json import finite
from ..errors import ConfigError, SettingError
from ..evals.datasets import load_eval_set
from ..evals.harness import arun as run_eval
from ..evals.render import Report
from ..evals.scorers import default_scorer
from ..fusion.preset import FUSION_PREFIX
from ..models.finetuned import run_spec
from ..paths import config_path, output_path
from ..prompted_tools import call_text
from ..registry import Registry
from ..shapes import REPORT, DistilReport, read_manifest
from ..tool_calls import ToolCall
from ..tune.checkpoint import checkpoints
from ..tune.config import TuneConfig, load_tune_config
from ..tune.run_folder import is_run
from ..tune.train import train
from ..weights.pull import read_document, register
from .filter import TRAIN, VAL, FilterReport, filter_rows
from .gain import gain_kept, per_item_fraction
from .label import LabelReport, alabel, teacher_members
from .prompts import Prompt
from .settings import DistilSettings

# The tested rule for how long to train (see docs/distil.md): at least 3 passes and 60 optimizer steps, at most 20
# passes, at a learning rate that taught the built-in Gemma 3 270M made-up facts it then answered in unseen words.
MIN_EPOCHS, MIN_STEPS, MAX_EPOCHS = 3, 60, 20
RULE_LR, RULE_BATCH = 2e-3, 8


def training_plan(rows: int, val_rows: int) -> dict[str, Any]:
    epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(MIN_STEPS * RULE_BATCH / max(rows, 1))))
    steps = math.ceil(rows / RULE_BATCH) * epochs
    plan: dict[str, Any] = {"train": {"epochs": epochs, "batch_size": RULE_BATCH, "lr": RULE_LR,
                                      "warmup_steps": max(5, steps // 10)},
                            "run": {"save_every": max(10, steps // 4), "eval_every": max(10, steps // 5) if val_rows else 0}}
    return plan


def media_kinds(rows_file: Path) -> set[str]:
    """The media the training rows hold: their towers are trained too."""
    kinds: set[str] = set()
    for line in rows_file.read_text(encoding="utf-8").splitlines():
        for message in json.loads(line)["messages"]:
            if isinstance(message["content"], list):
                kinds.update(p.get("type") for p in message["content"] if p.get("type") in ("image", "audio"))
    return kinds


def lora_targets(kinds: set[str]) -> str:
    if kinds == {"image"}:
        return "language+vision"
    if kinds == {"audio"}:
        return "language+audio"
    return "all" if kinds else "language"


def tune_config(settings: DistilSettings, folder: Path, data: Path, rows: int, val_rows: int) -> TuneConfig:
    base = {"model": settings.student, "out": str(folder / "student"),
            "data": {"train": str(data / TRAIN), **({"val": str(data / VAL)} if val_rows else {})},
            "lora": {"targets": lora_targets(media_kinds(data / TRAIN))}, **training_plan(rows, val_rows)}
    base["train"]["seed"] = settings.seed
    return load_tune_config(None, settings.set, base=base)


def train_student(config: TuneConfig, console=None) -> dict[str, Any]:
    """Train, or reuse a finished run of the same config, or resume an interrupted one."""
    run = Path(config.out)
    wanted = config.model_dump(mode="json")
    if is_run(run):
        manifest = read_manifest(run)
        if manifest.get("config") != wanted:
            raise ConfigError(f"{run} holds a student trained with other data or settings; remove that folder to "
                              "train again, or give another --out")
        if manifest.get("status") == "done":
            return {"reused": True, **(manifest.get("result") or {})}
        if checkpoints(run):
            result = train(config, resume=True, console=console)
            return {"reused": False, "resumed": True, "steps": result.steps, "train_loss": result.train_loss,
                    "best_val_loss": result.best_val_loss, "seconds": result.seconds}
    if run.exists():
        shutil.rmtree(run)  # a start that saved nothing: begin again
    result = train(config, console=console)
    if result.interrupted:
        raise ConfigError(f"training stopped at step {result.steps}; run the same command again to resume")
    return {"reused": False, "steps": result.steps, "train_loss": result.train_loss,
            "best_val_loss": result.best_val_loss, "seconds": result.seconds}


def student_name(settings: DistilSettings, folder: Path) -> str:
    return settings.name or f"distil-{folder.resolve().name}"


async def adistil(prompts: str | Path | list[Prompt], settings: DistilSettings, *, out: str | Path,
                  registry: Registry, cache: str | Path | None = None, console=None,
                  on_label: Callable[[int, int], None] | None = None) -> DistilReport:
    if not settings.teacher:
        raise SettingError("teacher", None, "distil needs a teacher: fusion/NAME or a model name")
    if not settings.eval:
        raise SettingError("eval", None, "distil run needs the held-out eval set (its prompts are never trained on)")
    folder = output_path(out, folder=True)
    name = student_name(settings, folder)
    _check_registrable(registry, name, folder / "student")
    timings: dict[str, float] = {}

    started = time.perf_counter()
    labelled: LabelReport = await alabel(prompts, folder / "data", settings, registry=registry, cache=cache,
                                         on_label=on_label)
    timings["label"] = time.perf_counter() - started

    started = time.perf_counter()
    filtered: FilterReport = filter_rows(folder / "data", settings)
    timings["filter"] = time.perf_counter() - started
    if filtered.train == 0:
        raise ConfigError(f"distil: no rows left to train on ({filtered.rows} labelled, dropped: "
                          f"{filtered.dropped}); see {folder / 'data' / 'dropped.jsonl'} and loosen the filter")

    started = time.perf_counter()
    config = tune_config(settings, folder, folder / "data", filtered.train, filtered.val)
    training = train_student(config, console)
    timings["tune"] = time.perf_counter() - started
    chosen = {"epochs": config.train.epochs, "max_steps": config.train.max_steps, "lr": config.train.lr,
              "batch_size": config.train.batch_size, "rows": filtered.train, "val_rows": filtered.val,
              "lora_targets": config.lora.targets,
              "rule": f"at least {MIN_EPOCHS} passes and {MIN_STEPS} steps, at most {MAX_EPOCHS} passes "
                      f"(lr {RULE_LR:g}, batch {RULE_BATCH}); overrides set: {', '.join(settings.set) or 'none'}"}

    started = time.perf_counter()
    answer_length = eval_max_tokens(settings, folder / "data" / TRAIN)
    spec = run_spec(config.out, registry.config.file.finetune_runtime)
    assert spec is not None, "a finished run folder is a model"
    registry.add_spec(name, spec)
    members = teacher_members(registry, settings.teacher)
    report: Report = await run_eval(settings.eval, registry=registry, cache=cache, out=folder / "eval",
                                    models=[name, *members], systems=["members", settings.teacher],
                                    dev_fraction=0.0, seed=settings.seed,
                                    max_tokens=answer_length,
                                    concurrency=settings.concurrency, scorer=eval_scorer(settings),
                                    pattern=settings.pattern)
    timings["eval"] = time.perf_counter() - started

    student = report.system(name)
    base = student.get("base")
    teacher = report.system(settings.teacher)
    result: DistilReport = {
        "kind": "distil", "teacher": settings.teacher, "members": members,
        "student": {"name": name, "model": settings.student, "base": base, "run": str(Path(config.out).resolve())},
        "label": labelled.to_dict(), "filter": filtered.to_dict(), "training": {**chosen, **training},
        "eval": {"dataset": settings.eval, "folder": str(folder / "eval"), "items": report.data["test"],
                 "max_tokens": answer_length, "accuracy": {s["name"]: s["accuracy"] for s in report.data["systems"]}},
        "gain_kept": gain_kept(report, student=name, base=base, teacher=settings.teacher, seed=settings.seed),
        "cost_fraction": per_item_fraction(student, teacher, "cost"),
        "latency_fraction": per_item_fraction(student, teacher, "latency_p50_s"),
        "stage_seconds": {k: round(v, 2) for k, v in timings.items()},
        "registered": None,
    }
    if settings.add_to_config:
        result["registered"] = _register(registry, name, Path(config.out))
    (folder / REPORT).write_text(json.dumps(finite(result), indent=2, default=str, allow_nan=False) + "\n")
    return result


def _config_file(registry: Registry) -> Path:
    return registry.config.path or config_path()


def eval_max_tokens(settings: DistilSettings, train: Path) -> int:
    """The eval's answer length: what was set, else a margin over the longest labelled answer (about two
    characters a token, plus 16), so a rambling base is not waited on for hundreds of tokens an item."""
    if "max_tokens" in settings.model_fields_set:
        return settings.max_tokens
    longest = 0
    for line in train.read_text(encoding="utf-8").splitlines():
        last = json.loads(line)["messages"][-1]
        content = last.get("content") or ""
        text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
        calls = [ToolCall.from_openai(c) for c in last.get("tool_calls") or []]
        longest = max(longest, len(text) + (len(call_text(calls)) if calls else 0))  # as the student writes them
    return min(settings.max_tokens, longest // 2 + 16)


def eval_scorer(settings: DistilSettings) -> str:
    """The filter's `auto` rule for the eval too: numbers by value, choices by letter, text by the reference
    appearing in the answer (the eval's own `auto` wants text answers exact, and a sentence is never exact)."""
    if settings.scorer != "auto" or not settings.eval:
        return settings.scorer
    eval_set = load_eval_set(settings.eval, dev_fraction=0.0)
    if any(item.tools is not None or item.schema is not None for item in eval_set.items):
        return "auto"  # calls and JSON answers are scored by each item's shape
    chosen = default_scorer(eval_set.kind)
    return "contains" if chosen == "exact" else chosen


def _check_registrable(registry: Registry, name: str, run: Path) -> None:
    """Before any work: the student's name must be free in the config (or already this student's)."""
    from ..models.builtin import builtin_specs

    if name in builtin_specs() or name.startswith(FUSION_PREFIX):
        raise SettingError("name", name, "a built-in or fusion name; give the student another name")
    if name in registry.config.presets:  # the student would be asked as the preset and every item would fail
        raise SettingError("name", name, f"a fusion preset of {_config_file(registry)} ([presets.{name}]); give the "
                           "student another name")
    entry = read_document(_config_file(registry)).get("models", {}).get(name)
    if entry is not None and Path(str(entry.get("run", ""))).expanduser().resolve() != run.resolve():
        raise SettingError("name", name, f"models.{name} exists already in {_config_file(registry)}; give the student "
                           "another name")


def _register(registry: Registry, name: str, run: Path) -> str:
    file = _config_file(registry)
    register(file, name, {"run": str(run.resolve()), "description": f"distilled student ({run.parent})"})
    return str(file)
