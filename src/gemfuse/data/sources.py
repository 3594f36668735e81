"""Where training rows come from: our JSONL, or what users of TRL and Unsloth already have — a `datasets`
folder (`save_to_disk`) or a JSONL / Parquet file read through `datasets`.

Rows from `datasets` may hold decoded media (PIL images, audio arrays, `{"bytes", "path"}` dicts) inside the
parts, or TRL's layout: `{"type": "image"}` placeholders in the messages and the pictures in an `images` column
(`audios` for sound), in order. Both become inline media, then go through the same parser and checks as JSONL.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from ..errors import ConfigError
from .schema import Example, fingerprint, parse_example, read_jsonl

MEDIA_COLUMNS = {"image": ("images", "image"), "audio": ("audios", "audio")}


def read_rows(source: str | Path, messages_field: str = "messages") -> list[Example]:
    """Every row of `source` as an Example (problems recorded on it, never raised)."""
    path = Path(source).expanduser()
    if not path.exists():
        raise ConfigError(f"data: {source} does not exist")
    if path.is_file() and path.suffix == ".jsonl" and messages_field == "messages" and _is_ours(path):
        return list(read_jsonl(path))
    files = jsonl_files(path) if messages_field == "messages" else []
    if files:  # a folder of our JSONL (a capture folder, say): every file, in name order
        return [example for file in files for example in read_jsonl(file)]
    return list(_from_datasets(path, messages_field))


DATASETS_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")  # what `save_to_disk` writes


def jsonl_files(path: Path) -> list[Path]:
    """The .jsonl files of a folder that is not a `datasets` folder, when every one is ours."""
    if not path.is_dir() or any((path / marker).exists() for marker in DATASETS_MARKERS):
        return []
    files = sorted(path.glob("*.jsonl"))
    return files if files and all(_is_ours(file) for file in files) else []


def _is_ours(path: Path) -> bool:
    """Our JSONL unless its first row carries media objects that only `datasets` can decode."""
    import json

    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError:
                    return True  # let our reader report it with its line number
                return isinstance(row, dict) and "messages" in row and not any(k in row for k in ("images", "audios"))
    return True


def load_table(path: Path):
    """A `datasets` folder or a .jsonl / .parquet / .csv file as one `datasets.Dataset` (its train split)."""
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"data: reading {path} needs the `datasets` package: pip install 'gemfuse[tune]'") from None
    if path.is_dir():
        loaded = datasets.load_from_disk(str(path))
    else:
        kind = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(path.suffix)
        if kind is None:
            raise ConfigError(f"data: {path}: use a .jsonl, .parquet or .csv file, or a `datasets` folder")
        loaded = datasets.load_dataset(kind, data_files=str(path), split="train")
    if isinstance(loaded, datasets.DatasetDict):
        loaded = loaded["train"] if "train" in loaded else next(iter(loaded.values()))
    return loaded


def _from_datasets(path: Path, messages_field: str):
    rows = load_table(path)
    if messages_field not in rows.column_names:
        raise ConfigError(f"data: {path} has no {messages_field!r} column (columns: {', '.join(rows.column_names)}); "
                          "set data.messages_field")
    root = path if path.is_dir() else path.parent
    for index, row in enumerate(rows):
        raw = {"messages": _messages(row, messages_field)}
        example = parse_example(raw, str(path), index + 1, root)
        if not any(i.severity == "error" for i in example.issues):
            example.fingerprint = fingerprint(example)
        yield example


def _messages(row: dict, field: str) -> list:
    pending = {kind: list(_column(row, names)) for kind, names in MEDIA_COLUMNS.items()}
    messages = []
    for message in row[field] or []:
        if not isinstance(message, dict) or not isinstance(message.get("content"), list):
            messages.append(message)
            continue
        content = []
        for part in message["content"]:
            if isinstance(part, dict) and part.get("type") in ("image", "audio"):
                part = _inline(part, pending[part["type"]])
            elif isinstance(part, dict) and part.get("type") == "text" and part.get("text") is None:
                continue  # `datasets` fills absent struct fields with None
            content.append({k: v for k, v in part.items() if v is not None} if isinstance(part, dict) else part)
        messages.append({**message, "content": content})
    return messages


def _column(row: dict, names: tuple[str, ...]):
    for name in names:
        value = row.get(name)
        if value is not None:
            return value if isinstance(value, list) else [value]
    return []


def _inline(part: dict, pending: list) -> dict:
    kind = part["type"]
    value = part.get(kind)
    if value is None and not any(isinstance(part.get(k), str) for k in ("path", "url", "data")):
        value = pending.pop(0) if pending else None  # TRL layout: the next item of the media column
    if value is None or isinstance(value, str):
        return {k: v for k, v in part.items() if v is not None}
    data = _image_bytes(value) if kind == "image" else _audio_bytes(value)
    if kind == "image":
        return {"type": "image", "url": "data:image/png;base64," + base64.b64encode(data).decode()}
    return {"type": "audio", "data": base64.b64encode(data).decode(), "format": "wav"}


def _image_bytes(value) -> bytes:
    if isinstance(value, dict) and value.get("bytes"):
        return value["bytes"]
    if isinstance(value, dict) and value.get("path"):
        return Path(value["path"]).read_bytes()
    buffer = io.BytesIO()
    value.save(buffer, format="PNG")  # a PIL image
    return buffer.getvalue()


def _audio_bytes(value) -> bytes:
    import numpy as np
    import soundfile

    if isinstance(value, dict) and value.get("bytes"):
        return value["bytes"]
    if isinstance(value, dict) and value.get("array") is not None:
        array, rate = np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
    elif hasattr(value, "get_all_samples"):  # a torchcodec AudioDecoder from newer `datasets`
        samples = value.get_all_samples()
        array, rate = samples.data.numpy().mean(axis=0), int(samples.sample_rate)
    elif isinstance(value, dict) and value.get("path"):
        return Path(value["path"]).read_bytes()
    else:
        raise ValueError(f"unreadable audio value of type {type(value).__name__}")
    buffer = io.BytesIO()
    soundfile.write(buffer, array, rate, format="WAV")
    return buffer.getvalue()
