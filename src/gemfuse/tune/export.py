"""Export a fine-tune: merged safetensors, a GGUF for llama.cpp (optionally quantised), an Ollama Modelfile
beside that GGUF, or what `vllm serve` takes (merged, or the base plus the adapter: tune/vllm_export.py). Every
export but the vLLM adapter ends by generating from the exported artefact itself.

GGUF conversion and quantisation are llama.cpp's own (gemfuse.gguf_tools).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, SettingError
from ..gguf_tools import convert_to_gguf, open_gguf, quantize_gguf
from ..paths import output_path, published_folder
from ..shapes import RunManifest
from .vllm_export import lora_for_vllm, merged_for_vllm

TARGETS = ("merged", "gguf", "ollama", "vllm", "vllm-lora")


@dataclass
class Exported:
    path: Path
    sample: str | None = None
    command: str | None = None  # what serves it, where another program does (vLLM)
    config: str | None = None  # the [models] block that puts it behind gemfuse


def export(run: str | Path, to: str = "merged", *, quant: str | None = None, out: str | Path | None = None,
           check_prompt: str | None = "Hello!") -> Exported:
    from ..shapes import read_manifest
    from .run_folder import is_run

    run = Path(run).expanduser()
    if to not in TARGETS:
        raise SettingError("to", to, f"choose one of {', '.join(TARGETS)}")
    if not is_run(run) or not (run / "adapter" / "adapter_config.json").is_file():
        raise ConfigError(f"{run}: not a finished run folder (no manifest.json and adapter/); train or resume it first")
    manifest = read_manifest(run)
    if out is not None:  # made (or refused in one line) before any work is done
        out = output_path(out, folder=to != "gguf")
    if to == "vllm-lora":
        served = lora_for_vllm(run, manifest, out or run / "vllm-lora", run.name)
        return Exported(served.folder, None, served.command, served.config)
    if to in ("merged", "vllm"):
        folder = merge(run, manifest, out or run / to)
        sample = generate_hf(folder, check_prompt) if check_prompt else None
        if to == "merged":
            return Exported(folder, sample)
        served = merged_for_vllm(folder, run.name)
        return Exported(folder, sample, served.command, served.config)
    gguf = to_gguf(run, manifest, out if to == "gguf" else None, quant)
    if to == "ollama":
        folder = out or run / "ollama"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / gguf.name
        if target != gguf:
            shutil.copy2(gguf, target)
        (folder / "Modelfile").write_text(modelfile(target.name, manifest))
        return Exported(folder / "Modelfile", generate_gguf(target, check_prompt) if check_prompt else None)
    return Exported(gguf, generate_gguf(gguf, check_prompt) if check_prompt else None)


# -- merged ---------------------------------------------------------------------------------------------------------
def merge(run: Path, manifest: RunManifest, out: Path) -> Path:
    """Base + adapter folded into plain weights, saved in the base's dtype with the trained tokenizer/processor."""
    import torch

    from .._torchvision import MODEL_LOADING, import_transformers
    from ..processors import load_processor, modalities_of
    from .base import resolve_base

    transformers = import_transformers()
    from peft import PeftModel

    base = resolve_base(manifest["base_model"])
    multimodal = len(modalities_of(base.config)) > 1
    auto = transformers.AutoModelForImageTextToText if multimodal else transformers.AutoModelForCausalLM
    with MODEL_LOADING:
        model = auto.from_pretrained(str(base.folder), dtype=torch.float32)  # merge in fp32, store as the base was
        model = PeftModel.from_pretrained(model, str(run / "adapter")).merge_and_unload()
    stored = str(base.config.get("dtype") or base.config.get("torch_dtype") or "float32").removeprefix("torch.")
    model = model.to(getattr(torch, stored))
    with published_folder(out) as staging:
        model.save_pretrained(staging)
        processor = load_processor(str(run / "adapter"), modalities_of(base.config))
        processor.save_pretrained(staging)
    return out


def generate_hf(folder: Path, prompt: str, max_tokens: int = 16) -> str:
    from .._sync import run_sync
    from ..messages import Message
    from ..models.base import GenerateOptions
    from ..models.transformers import TransformersModel, TransformersSpec

    model = TransformersModel("export-check", TransformersSpec(path=str(folder)))
    completion = run_sync(model.generate([Message.user(prompt)], GenerateOptions(max_tokens=max_tokens,
                                                                                   temperature=0)))
    return completion.text


# -- GGUF -----------------------------------------------------------------------------------------------------------
def to_gguf(run: Path, manifest: RunManifest, out: Path | None, quant: str | None) -> Path:
    merged = run / "merged"
    if not (merged / "config.json").is_file():
        merge(run, manifest, merged)
    f16 = run / f"{run.name}-f16.gguf"
    convert_to_gguf(merged, f16)
    if not quant:
        return f16 if out is None else Path(shutil.move(f16, out))
    target = out or run / f"{run.name}-{quant}.gguf"
    quantize_gguf(f16, target, quant)
    f16.unlink()
    return target


def generate_gguf(path: Path, prompt: str, max_tokens: int = 16) -> str:
    llm = open_gguf(path, n_ctx=512)
    reply: Any = llm.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=max_tokens,
                                            temperature=0)
    return reply["choices"][0]["message"]["content"] or ""


# Ollama's Go template for Gemma turns (system text folded into the first user turn, as Gemma's template does).
OLLAMA_TEMPLATE = '''{{- $system := "" }}{{- range .Messages }}{{- if eq .Role "system" }}{{ $system = .Content }}
{{- else }}<start_of_turn>{{ if eq .Role "assistant" }}model{{ else }}user{{ end }}
{{ if and $system (eq .Role "user") }}{{ $system }}

{{ $system = "" }}{{ end }}{{ .Content }}<end_of_turn>
{{ end }}{{- end }}<start_of_turn>model
'''


def modelfile(gguf_name: str, manifest: RunManifest) -> str:
    return (f"# gemfuse fine-tune of {manifest['base_model']} ({manifest['family']})\n"
            f"# ollama create my-model -f Modelfile && ollama run my-model\nFROM ./{gguf_name}\n"
            f'TEMPLATE """{OLLAMA_TEMPLATE}"""\nPARAMETER stop "<end_of_turn>"\nPARAMETER temperature 0.7\n')
