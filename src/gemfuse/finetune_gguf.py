"""A fine-tune run on llama.cpp, the runtime's side of a run folder: on a CPU, llama.cpp decodes a small Gemma
several times faster than transformers, so an evaluated or served run folder may run as its adapter merged into
the base (by the trainer's own merge) and converted to a 16-bit GGUF, beside its base converted the same way
(same runtime, same precision: a fair comparison).

Both are made once, by the export's own merge and llama.cpp's converter, and cached: the fine-tune by the hash of
its adapter, the base by its folder's identity. Before a merged GGUF is kept, its next-token predictions on a
fixed text are checked against the adapter's on transformers; one that disagrees is refused, never served.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from .errors import ModelLoadError
from .files import adapter_sha256
from .gguf_tools import convert_to_gguf, open_gguf
from .paths import cache_dir
from .shapes import read_manifest

AGREEMENT = 0.9  # share of positions where both runtimes predict the same next token
PROBE = ("The quick brown fox jumps over the lazy dog. Paris is the capital of France, and the Seine runs "
         "through it. Two plus two is four; seven times six is forty-two.")


def folder() -> Path:
    return cache_dir() / "finetunes-gguf"


def adapter_hash(run: Path) -> str:
    """The merged file's key: the trained weights, their LoRA config and the base they were trained from."""
    digest = hashlib.sha256(str(adapter_sha256(run)).encode())
    digest.update((run / "adapter" / "adapter_config.json").read_bytes())
    digest.update(json.dumps(read_manifest(run).get("base_model")).encode())
    return digest.hexdigest()[:16]


def merged_gguf(run_path: str) -> Path:
    """The run folder's fine-tune as a 16-bit GGUF, made (and checked) once."""
    run = Path(run_path).expanduser().resolve()
    target = folder() / f"{run.name}-{adapter_hash(run)}.gguf"
    if target.is_file():
        return target
    from .tune.export import merge

    manifest = read_manifest(run)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".merging-") as work:
        merged = merge(run, manifest, Path(work) / "merged")
        staging = Path(work) / target.name  # another process making the same file writes its own, then replaces
        convert_to_gguf(merged, staging)
        agreement = next_token_agreement(staging, run)
        if agreement < AGREEMENT:  # the staging file goes with the temporary folder
            raise ModelLoadError(f"{run}: the merged GGUF predicts the adapter's next token at only "
                                 f"{agreement:.0%} of positions; run it on transformers instead "
                                 "(finetune_runtime = \"transformers\" in the config)")
        os.replace(staging, target)
    return target


def base_gguf(run_path: str) -> Path:
    """The run's base model as a 16-bit GGUF, made once per base folder."""
    from .tune.base import resolve_base

    base = resolve_base(read_manifest(Path(run_path).expanduser())["base_model"])
    config = base.folder / "config.json"
    stat = config.stat()
    key = hashlib.sha256(f"{base.folder.resolve()}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = folder() / f"base-{base.folder.name}-{key}.gguf"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".converting-") as work:
            convert_to_gguf(base.folder, Path(work) / target.name)
            os.replace(Path(work) / target.name, target)
    return target


def next_token_agreement(gguf: Path, run: Path) -> float:
    """Share of positions of a fixed text where llama.cpp on `gguf` and transformers with the run's adapter
    predict the same next token."""
    import numpy as np
    import torch
    from peft import PeftModel

    from ._torchvision import MODEL_LOADING, import_transformers
    from .tune.base import resolve_base

    transformers = import_transformers()
    base = resolve_base(read_manifest(run)["base_model"])
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(run / "adapter"))
    ids = tokenizer(PROBE, return_tensors="pt")["input_ids"]
    with MODEL_LOADING:
        model = transformers.AutoModelForCausalLM.from_pretrained(str(base.folder), dtype=torch.float32)
        model = PeftModel.from_pretrained(model, str(run / "adapter")).eval()
    with torch.inference_mode():
        expected = model(ids).logits[0].argmax(-1).numpy()
    del model
    llm = open_gguf(gguf, n_ctx=max(64, ids.shape[1] + 8), logits_all=True)
    llm.eval(ids[0].tolist())
    got = np.asarray(llm.scores[: ids.shape[1]]).argmax(-1)
    del llm
    return float((got == expected).mean())
