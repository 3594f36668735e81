"""`gemfuse data import | validate | preview`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..data.sources import read_rows


def run_import(source: Path, out: Path, fmt: str, instruction: str | None, val_out: Path | None,
               val_fraction: float, seed: int) -> int:
    from ..data.importers import import_dataset
    from ..errors import MessageError

    try:
        result = import_dataset(source, out, format=fmt, instruction=instruction, val_out=val_out,
                                val_fraction=val_fraction, seed=seed)
    except ValueError as exc:  # a JSON file that does not parse, a CSV with a broken row: say which file
        if isinstance(exc, MessageError):
            raise
        raise MessageError(f"{source}: {exc}") from None
    for line in result.skipped:
        print(f"skipped: {line}", file=sys.stderr)
    print(f"wrote {result.rows} rows to {result.train}" + (f" and {result.val_rows} to {result.val}" if result.val
                                                            else ""))
    return 1 if result.skipped and not result.rows else 0


def as_flags(message: str) -> str:
    """The data layer names its settings as a tune config does (data.max_length); here they are flags."""
    return message.replace("data.max_length", "--max-length")


def data_target(model: str):
    """The tokenizer and processor data is checked with: a family name, a model folder, or a configured
    transformers model (the built-ins included), as `gemfuse tune` takes it."""
    from ..data.target import KNOWN, load_target

    if model not in KNOWN and not (Path(model).expanduser() / "config.json").is_file():
        from ..config import load_config

        if model in load_config().specs:
            from ..tune.base import resolve_base

            return load_target(str(resolve_base(model).folder))
    return load_target(model)


def run_validate(path: Path, model: str, max_length: int | None, val: Path | None, as_json: bool) -> int:
    from ..data.validate import validate

    report = validate(path, data_target(model), max_length=max_length, val_path=val)
    if as_json:
        issues = [{**vars(i), "message": as_flags(i.message)} for i in report.issues]
        print(json.dumps({"summary": report.summary(), "issues": issues}, indent=2))
    else:
        for issue in report.issues:
            print(as_flags(str(issue)))
        s = report.summary()
        print(f"{s['rows']} rows, {s['rows_with_errors']} with errors; {s['errors']} errors, {s['warnings']} warnings; "
              f"{s['images']} images, {s['audio']} audio clips; tokens median {s['tokens']['median']}, "
              f"max {s['tokens']['max']}", file=sys.stderr)
    return 0 if report.ok else 1


def run_preview(path: Path, model: str, count: int, max_length: int | None) -> int:
    from ..data.collate import IGNORE, Collator
    from ..errors import MessageError

    target = data_target(model)
    collator = Collator(target, max_length)
    color = sys.stdout.isatty()
    shown = 0
    for example in read_rows(path):
        if shown >= count:
            break
        if any(i.severity == "error" for i in example.issues):
            print(f"{example.file}:{example.line}: skipped (run `gemfuse data validate` for its errors)")
            continue
        try:
            batch = collator([example])
        except MessageError as exc:
            raise MessageError(as_flags(str(exc))) from None
        ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
        print(f"── {example.file}:{example.line} ({len(ids)} tokens, {sum(1 for x in labels if x != IGNORE)} trained)")
        print(render_marked(target.tokenizer, ids, labels, collator.media_ids, color))
        print(media_counts(batch, ids, target))
        calls = [call for turn in example.turns for call in turn.calls]
        if calls:
            print("calls: " + "; ".join(f"{call.name} {call.arguments}" for call in calls))
        shown += 1
    return 0


def render_marked(tokenizer, ids, labels, media_ids, color: bool) -> str:
    """Decoded text with trained tokens marked, and runs of media tokens collapsed."""
    out: list[str] = []
    run: list[int] = []
    media_run = 0
    trained = None

    def flush():
        if run:
            text = tokenizer.decode(run)
            out.append((f"\033[32m{text}\033[0m" if color else f"[[{text}]]") if trained else text)
            run.clear()

    for token, label in zip(ids, labels, strict=True):
        if token in media_ids and label == -100:
            media_run += 1
            continue
        if media_run:
            flush()
            out.append(f"<{media_run} media tokens>")
            media_run = 0
        is_trained = label != -100
        if is_trained != trained:
            flush()
            trained = is_trained
        run.append(token)
    flush()
    if media_run:
        out.append(f"<{media_run} media tokens>")
    return "".join(out)


def media_counts(batch, ids, target) -> str:
    tokenizer = target.tokenizer
    parts = []
    for name, feature in (("image", "pixel_values"), ("audio", "input_features")):
        token = getattr(tokenizer, f"{name}_token", None)
        if token is None or feature not in batch:
            continue
        token_id = tokenizer.convert_tokens_to_ids(token)
        parts.append(f"{name}: {ids.count(token_id)} placeholder tokens, {feature} {tuple(batch[feature].shape)}")
    return "   " + ("; ".join(parts) if parts else "text only")
