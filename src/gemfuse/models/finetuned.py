"""A fine-tune's run folder is a model: its manifest names the base model and the chat template it was trained
with, and its `adapter/` folder holds the LoRA weights. Read here from the files alone (no import of the tuner).

It runs on transformers with its adapter, or, where llama.cpp is the faster runtime (a text model trained on a
CPU, with llama.cpp installed), merged into a GGUF made on first use (`finetune:` paths,
gemfuse/finetune_gguf.py). Either way the spec carries its base, ready to run beside it on the same runtime."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from ..files import adapter_folder, adapter_sha256
from ..processors import declared_modalities
from ..shapes import MANIFEST, RunManifest, read_manifest
from .llamacpp import LlamaCppSpec
from .spec import LocalSpec, Price
from .transformers import TransformersSpec

Runtime = Literal["auto", "llamacpp", "transformers"]
FREE = Price(input=0, output=0)


def pick_runtime(info: RunManifest, wanted: Runtime) -> Literal["llamacpp", "transformers"]:
    if wanted != "auto":
        return wanted
    base_folder = Path(info.get("base_folder") or "")
    text_only = declared_modalities(base_folder / "config.json") == {"text"}
    llama_cpp = importlib.util.find_spec("xllamacpp") is not None and importlib.util.find_spec("llama_cpp") is not None
    return "llamacpp" if info.get("device") == "cpu" and text_only and llama_cpp else "transformers"


def run_spec(name: str, runtime: Runtime = "auto") -> LocalSpec | None:
    """The spec of the run folder `name`, or None when `name` is not a finished run folder."""
    folder = Path(name).expanduser()
    if not (folder / MANIFEST).is_file() or not (adapter_folder(folder) / "adapter_config.json").is_file():
        return None
    info = read_manifest(folder)
    written = info.get("config", {}).get("model") or info["base_model"]  # the base as the user named it
    template = info.get("chat_template")
    run = str(folder.resolve())
    weights = adapter_sha256(folder)
    if pick_runtime(info, runtime) == "llamacpp":
        base: LocalSpec = LlamaCppSpec(path=f"finetune-base:{run}", chat_template=template, n_ctx=4096,
                                       price=FREE, description=f"{written}, as its fine-tune runs")
        return LlamaCppSpec(path=f"finetune:{run}", chat_template=template, n_ctx=4096, price=FREE,
                            finetune_of=info["base_model"], base=base, trained_weights=weights,
                            description=f"LoRA fine-tune of {written} ({folder}), merged, on llama.cpp")
    base = TransformersSpec(path=info["base_model"], chat_template=template, concurrency=1, price=FREE,
                            description=f"{written}, as its fine-tune runs")
    return TransformersSpec(path=info["base_model"], adapter=str(adapter_folder(folder).resolve()),
                            chat_template=template, concurrency=1, price=FREE, finetune_of=info["base_model"],
                            base=base, trained_weights=weights, description=f"LoRA fine-tune of {written} ({folder})")
