"""The base model of a fine-tune: found by folder, hub id or configured name, loaded for training on the
chosen device with one dtype policy (bf16 where the device runs it well, fp32 otherwise; never fp16 with loss
scaling), optionally 4-bit (QLoRA) or 8-bit with bitsandbytes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ModelLoadError

# a transformer layer of the language model or of a vision or audio tower (Gemma 3n's audio blocks are conformers)
LAYER_SUFFIXES = ("DecoderLayer", "EncoderLayer", "AudioConformerBlock", "AudioLayer")


def repeated_layers(model) -> list:
    """The model's transformer layers: the units sharding cuts and compilation traces."""
    return [m for m in model.modules() if type(m).__name__.endswith(LAYER_SUFFIXES)]


@dataclass
class Base:
    name: str  # as the user wrote it, kept in the manifest (a `package:` path stays portable)
    folder: Path  # a local folder with config.json
    config: dict


def resolve_base(model: str) -> Base:
    """A model folder, a configured transformers model (built-ins included), or a hub id (downloaded)."""
    path = Path(model).expanduser()
    if (path / "config.json").is_file():
        return Base(str(path.resolve()), path.resolve(), json.loads((path / "config.json").read_text()))
    from ..config import load_config

    specs = load_config().specs
    if model in specs:
        spec: Any = specs[model]  # a TransformersSpec once the backend is checked
        if spec.backend != "transformers":
            raise ConfigError(f"model {model!r} is a {spec.backend} model; fine-tuning needs transformers weights "
                              f"(try {model}-hf, or a model folder)")
        if spec.adapter:
            raise ConfigError(f"model {model!r} already has an adapter; export it merged first "
                              "(gemfuse export RUN --to merged) and fine-tune that folder")
        return resolve_base(spec.path) if not spec.path.startswith("package:") else _package(spec.path)
    if model.startswith("package:"):
        return _package(model)
    if model.count("/") == 1 and not path.exists():
        return _hub(model)
    raise ConfigError(f"model {model!r}: not a model folder (no config.json), a configured transformers model, "
                      "or a hub id (owner/name)")


def _package(spec_path: str) -> Base:
    from ..files import hf_copy_of_gguf, resolve_path

    folder = hf_copy_of_gguf(resolve_path(spec_path))
    return Base(spec_path, folder, json.loads((folder / "config.json").read_text()))


def _hub(repo_id: str) -> Base:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError

    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt",
                                                                 "*.jinja"]))
    except GatedRepoError:
        raise ConfigError(f"{repo_id} is gated: accept its licence on its hub page, then set HF_TOKEN") from None
    return Base(repo_id, folder, json.loads((folder / "config.json").read_text()))


def load_for_training(base: Base, device: str, dtype, quantize: str = "none"):
    """The model on `device` in `dtype`, inputs' gradients on (for checkpointing through frozen layers)."""
    from .._torchvision import MODEL_LOADING, import_transformers
    from ..devices import bitsandbytes_config
    from ..families import family
    from ..processors import modalities_of

    transformers = import_transformers()
    multimodal = len(modalities_of(base.config)) > 1
    auto = transformers.AutoModelForImageTextToText if multimodal else transformers.AutoModelForCausalLM
    kwargs = {"dtype": dtype}
    if quantize != "none":
        if device.split(":")[0] not in ("cuda", "cpu"):
            raise ConfigError(f"train.quantize = {quantize!r} (bitsandbytes) runs on CUDA or a CPU, not {device}; "
                              "use 'none'")
        try:
            keep = family(base.config.get("model_type", "")).keep_full_precision
            kwargs["quantization_config"] = bitsandbytes_config(quantize, device, dtype, training=True, keep=keep)
        except ModelLoadError as exc:
            raise ConfigError(f"train.quantize: {exc}") from None
        kwargs["device_map"] = {"": device}
    with MODEL_LOADING:
        model = auto.from_pretrained(str(base.folder), **kwargs)
    if quantize != "none":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        model.to(device)
    model.config.use_cache = False
    return model
