"""Quantise a model for llama.cpp and say what it cost: a transformers folder (or a configured model) is turned
into an F16 GGUF by llama.cpp's own converter, then quantised by llama.cpp's own quantiser; a GGUF is
quantised directly. Quality is measured, not assumed: perplexity on a fixed text (and, on request, accuracy on
the built-in eval set) for the source and the result, beside size and decode speed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ConfigError, SettingError
from ..paths import output_path

TARGET_PREFIX = "gguf:"


@dataclass
class Measured:
    """One model file's figures."""

    path: Path
    bytes: int
    perplexity: float
    tokens_per_s: float
    accuracy: float | None = None


@dataclass
class Quantized:
    quant: str
    source: Measured
    result: Measured
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        def one(m: Measured) -> dict:
            return {"path": str(m.path), "bytes": m.bytes, "perplexity": round(m.perplexity, 3),
                    "tokens_per_s": round(m.tokens_per_s, 1), "accuracy": m.accuracy}

        return {"quant": self.quant, "source": one(self.source), "result": one(self.result),
                "size_ratio": round(self.result.bytes / self.source.bytes, 3),
                "perplexity_ratio": round(self.result.perplexity / self.source.perplexity, 4),
                "speed_ratio": round(self.result.tokens_per_s / self.source.tokens_per_s, 3), "notes": self.notes}


def fixed_text() -> str:
    return resources.files("gemfuse.weights").joinpath("perplexity.txt").read_text(encoding="utf-8")


def parse_target(to: str) -> str:
    from ..gguf_tools import quant_types

    if not to.lower().startswith(TARGET_PREFIX):
        raise SettingError("to", to, "name a llama.cpp quant type as gguf:TYPE, e.g. gguf:Q4_K_M or gguf:Q8_0 (8-bit / "
                           "4-bit transformers loading is a model setting: quantize = 'int8' | '8bit' | '4bit')")
    quant = to[len(TARGET_PREFIX):].upper()
    if quant not in quant_types():
        raise SettingError("to", to, f"unknown quant type; llama.cpp knows {', '.join(quant_types())}")
    return quant


def source_of(model: str) -> tuple[Path, str]:
    """(a GGUF file or a transformers folder, a short name) for a path or a configured model."""
    path = Path(model).expanduser()
    if not path.exists():
        from ..config import load_config
        from ..files import hf_copy_of_gguf, resolve_path
        from ..models.spec import LocalSpec

        spec = load_config().specs.get(model)
        if not isinstance(spec, LocalSpec):
            raise ConfigError(f"{model}: not a file, a folder or a configured local model")
        path = resolve_path(spec.path)
        if spec.backend == "transformers" and path.suffix == ".gguf":
            path = hf_copy_of_gguf(path)  # the built-in -hf twins: the 16-bit folder made from the GGUF
        return path, model
    if path.is_dir() and not (path / "config.json").is_file():
        raise ConfigError(f"{path}: a folder without config.json; pass its GGUF file instead")
    return path, path.stem if path.suffix == ".gguf" else path.name


def quantize(model: str, to: str, *, out: str | Path | None = None,
             accuracy: Callable[[list[Path]], list[float]] | None = None) -> Quantized:
    """Quantise `model` for llama.cpp and measure both sides; `accuracy` (given the source and the result GGUF)
    scores each, e.g. `gemfuse.api.gguf_accuracy` on built-in arithmetic (`gemfuse quantize --eval N`)."""
    from ..gguf_tools import convert_to_gguf, quantize_gguf
    from .pull import models_dir

    quant = parse_target(to)
    source, name = source_of(model)
    target = output_path(out if out else models_dir() / f"{name}-{quant}.gguf")
    notes = []
    if source.is_dir():
        baseline = target.with_name(f"{name}-F16.gguf")
        if not baseline.is_file():
            convert_to_gguf(source, baseline)
        notes.append(f"measured against the F16 GGUF of {source} ({baseline})")
    else:
        baseline = source
        kind = gguf_file_type(source)
        if kind not in ("F32", "F16", "BF16", "ALL_F32"):
            notes.append(f"the source is already quantised ({kind}): quantising again stacks both errors")
    if quant == "F16" and source.is_dir():  # the converter's own output is the answer
        target = baseline
    else:
        quantize_gguf(baseline, target, quant, allow_requantize=True)
    before, after = measure_gguf(baseline), measure_gguf(target)
    if accuracy is not None:
        before.accuracy, after.accuracy = accuracy([baseline, target])
    return Quantized(quant, before, after, notes)


def gguf_file_type(path: Path) -> str:
    from .shape import from_gguf

    return from_gguf(path).file_type or "unknown"


def measure_gguf(path: Path, decode_tokens: int = 64) -> Measured:
    return Measured(path, path.stat().st_size, perplexity_gguf(path), decode_speed_gguf(path, decode_tokens))


def perplexity_gguf(path: Path, text: str | None = None, window: int = 256) -> float:
    """exp(mean negative log-likelihood) of the fixed text, in independent windows of `window` tokens."""
    import numpy as np

    from ..gguf_tools import open_gguf

    llm = open_gguf(path, n_ctx=window, n_batch=window, logits_all=True)
    tokens = llm.tokenize((text or fixed_text()).encode("utf-8"), add_bos=True)
    total, count = 0.0, 0
    for start in range(0, len(tokens) - 1, window - 1):
        chunk = tokens[start: start + window]
        if len(chunk) < 2:
            break
        llm.reset()
        llm.eval(chunk)
        logits = np.asarray(llm.scores[: len(chunk) - 1], dtype=np.float64)
        top = logits.max(axis=1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
        chosen = logits[np.arange(len(chunk) - 1), chunk[1:]]
        total += float((log_norm - chosen).sum())
        count += len(chunk) - 1
    del llm
    return math.exp(total / count)


def decode_speed_gguf(path: Path, tokens: int = 64) -> float:
    from ..gguf_tools import open_gguf

    llm = open_gguf(path, n_ctx=512)
    llm.create_completion("Once upon a time", max_tokens=4, temperature=0)  # warm the caches
    started = time.perf_counter()
    done: Any = llm.create_completion("The history of the printing press", max_tokens=tokens, temperature=0)
    return done["usage"]["completion_tokens"] / (time.perf_counter() - started)


def perplexity_hf(model, tokenizer, text: str | None = None, window: int = 256) -> float:
    """The same measure for a transformers model: windows of `window` tokens, each scored on its own."""
    import torch

    ids = tokenizer((text or fixed_text()), return_tensors="pt")["input_ids"][0]
    total, count = 0.0, 0
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in range(0, len(ids) - 1, window - 1):
            chunk = ids[start: start + window].unsqueeze(0).to(device)
            if chunk.shape[1] < 2:
                break
            logits = model(chunk).logits[0, :-1].float()
            total += float(torch.nn.functional.cross_entropy(logits, chunk[0, 1:], reduction="sum"))
            count += chunk.shape[1] - 1
    return math.exp(total / count)
