"""Export a fine-tune: merged safetensors, a GGUF for llama.cpp (optionally quantised), or an Ollama Modelfile
beside that GGUF. Every export ends by generating from the exported artefact itself.

GGUF conversion uses llama.cpp's own `convert_hf_to_gguf.py` and its `gguf-py`, taken from the source
distribution of the installed llama-cpp-python (the llama.cpp it was built from, so converter and runtime
agree); `make setup` unpacks them into the virtual environment, `$GEMFUSE_LLAMA_CPP` may name a llama.cpp
checkout instead. Quantisation is llama.cpp's own, through llama-cpp-python's `llama_model_quantize`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from ..errors import ConfigError, GemfuseError

TARGETS = ("merged", "gguf", "ollama")
LLAMA_CPP_ENV = "GEMFUSE_LLAMA_CPP"


class ExportError(GemfuseError):
    """An export step failed; the message says which and why."""


@dataclass
class Exported:
    path: Path
    sample: str | None = None


def export(run: str | Path, to: str = "merged", *, quant: str | None = None, out: str | Path | None = None,
           check_prompt: str | None = "Hello!") -> Exported:
    from .run_folder import is_run, read_manifest

    run = Path(run).expanduser()
    if to not in TARGETS:
        raise ConfigError(f"--to {to!r}: choose one of {', '.join(TARGETS)}")
    if not is_run(run) or not (run / "adapter" / "adapter_config.json").is_file():
        raise ConfigError(f"{run}: not a finished run folder (no manifest.json and adapter/); train or resume it first")
    manifest = read_manifest(run)
    if to == "merged":
        folder = merge(run, manifest, Path(out) if out else run / "merged")
        return Exported(folder, generate_hf(folder, check_prompt) if check_prompt else None)
    gguf = to_gguf(run, manifest, Path(out) if out and to == "gguf" else None, quant)
    if to == "ollama":
        folder = Path(out) if out else run / "ollama"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / gguf.name
        if target != gguf:
            shutil.copy2(gguf, target)
        (folder / "Modelfile").write_text(modelfile(target.name, manifest))
        return Exported(folder / "Modelfile", generate_gguf(target, check_prompt) if check_prompt else None)
    return Exported(gguf, generate_gguf(gguf, check_prompt) if check_prompt else None)


# -- merged ---------------------------------------------------------------------------------------------------------
def merge(run: Path, manifest: dict, out: Path) -> Path:
    """Base + adapter folded into plain weights, saved in the base's dtype with the trained tokenizer/processor."""
    import torch

    from .._torchvision import import_transformers
    from ..models.transformers import load_processor, modalities_of
    from .base import resolve_base

    transformers = import_transformers()
    from peft import PeftModel

    base = resolve_base(manifest["base_model"])
    multimodal = len(modalities_of(base.config)) > 1
    auto = transformers.AutoModelForImageTextToText if multimodal else transformers.AutoModelForCausalLM
    model = auto.from_pretrained(str(base.folder), dtype=torch.float32)  # merge in fp32, store as the base was
    model = PeftModel.from_pretrained(model, str(run / "adapter")).merge_and_unload()
    stored = str(base.config.get("dtype") or base.config.get("torch_dtype") or "float32").removeprefix("torch.")
    model = model.to(getattr(torch, stored))
    from .checkpoint import publish, staging_dir

    staging = staging_dir(out.parent, out.name)
    try:
        model.save_pretrained(staging)
        processor = load_processor(str(run / "adapter"), modalities_of(base.config))
        processor.save_pretrained(staging)
        publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def generate_hf(folder: Path, prompt: str, max_tokens: int = 16) -> str:
    import asyncio

    from ..messages import Message
    from ..models.base import GenerateOptions
    from ..models.transformers import TransformersModel, TransformersSpec

    model = TransformersModel("export-check", TransformersSpec(path=str(folder)))
    completion = asyncio.run(model.generate([Message.user(prompt)], GenerateOptions(max_tokens=max_tokens,
                                                                                   temperature=0)))
    return completion.text


# -- GGUF -----------------------------------------------------------------------------------------------------------
def llama_cpp_tools(fetch: bool = True) -> Path:
    """A folder with llama.cpp's convert_hf_to_gguf.py and gguf-py: $GEMFUSE_LLAMA_CPP, or the one unpacked from
    the installed llama-cpp-python's source distribution (fetched from the package index on first use)."""
    if os.environ.get(LLAMA_CPP_ENV):
        folder = Path(os.environ[LLAMA_CPP_ENV]).expanduser()
        if not (folder / "convert_hf_to_gguf.py").is_file():
            raise ExportError(f"${LLAMA_CPP_ENV}={folder}: no convert_hf_to_gguf.py there")
        return folder
    try:
        release = version("llama_cpp_python")
    except Exception:
        raise ExportError("GGUF export needs llama-cpp-python: pip install 'gemfuse[llamacpp]'") from None
    folder = Path(sys.prefix) / "share" / "gemfuse" / f"llama.cpp-{release}"
    if (folder / "convert_hf_to_gguf.py").is_file() and (folder / "conversion").is_dir():
        return folder
    shutil.rmtree(folder, ignore_errors=True)  # an unpacking from an older gemfuse that missed a part
    if not fetch:
        raise ExportError(f"llama.cpp's converter is not unpacked at {folder}")
    with tempfile.TemporaryDirectory() as download:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                               f"llama-cpp-python=={release}", "-d", download], capture_output=True, text=True)
        archives = list(Path(download).glob("*.tar.gz"))
        if done.returncode or not archives:
            raise ExportError(f"could not fetch llama-cpp-python {release}'s sources for its GGUF converter "
                              f"(set ${LLAMA_CPP_ENV} to a llama.cpp checkout instead): {done.stderr[-500:]}")
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".llama.cpp-", dir=folder.parent))
        prefix = f"{archives[0].name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
        with tarfile.open(archives[0]) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(prefix) and m.isfile() and (
                m.name == prefix + "convert_hf_to_gguf.py" or m.name.startswith((prefix + "gguf-py/",
                                                                                  prefix + "conversion/")))]
            for member in members:
                member.name = member.name[len(prefix):]
                archive.extract(member, staging, filter="data")
        try:
            os.rename(staging, folder)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def to_gguf(run: Path, manifest: dict, out: Path | None, quant: str | None) -> Path:
    merged = run / "merged"
    if not (merged / "config.json").is_file():
        merge(run, manifest, merged)
    tools = llama_cpp_tools()
    f16 = run / f"{run.name}-f16.gguf"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tools / "gguf-py"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(tools / "convert_hf_to_gguf.py"), str(merged), "--outfile",
                           str(f16), "--outtype", "f16"], capture_output=True, text=True, env=env)
    if done.returncode or not f16.is_file():
        raise ExportError(f"llama.cpp's converter failed on {merged}:\n{done.stderr[-2000:]}")
    if not quant:
        return f16 if out is None else Path(shutil.move(f16, out))
    target = out or run / f"{run.name}-{quant}.gguf"
    quantize(f16, target, quant)
    f16.unlink()
    return target


def quantize(source: Path, target: Path, quant: str) -> None:
    import llama_cpp

    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{quant.upper()}", None)
    if ftype is None:
        known = sorted(n.removeprefix("LLAMA_FTYPE_MOSTLY_") for n in dir(llama_cpp) if n.startswith("LLAMA_FTYPE_MOSTLY_"))
        raise ConfigError(f"--quant {quant!r}: unknown; llama.cpp knows {', '.join(known)}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = os.cpu_count() or 1
    if llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), params) != 0:
        raise ExportError(f"llama.cpp could not quantise {source} to {quant}")


def generate_gguf(path: Path, prompt: str, max_tokens: int = 16) -> str:
    from llama_cpp import Llama

    llm = Llama(model_path=str(path), n_ctx=512, verbose=False)
    reply = llm.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=max_tokens, temperature=0)
    return reply["choices"][0]["message"]["content"]


# Ollama's Go template for Gemma turns (system text folded into the first user turn, as Gemma's template does).
OLLAMA_TEMPLATE = '''{{- $system := "" }}{{- range .Messages }}{{- if eq .Role "system" }}{{ $system = .Content }}
{{- else }}<start_of_turn>{{ if eq .Role "assistant" }}model{{ else }}user{{ end }}
{{ if and $system (eq .Role "user") }}{{ $system }}

{{ $system = "" }}{{ end }}{{ .Content }}<end_of_turn>
{{ end }}{{- end }}<start_of_turn>model
'''


def modelfile(gguf_name: str, manifest: dict) -> str:
    return (f"# gemfuse fine-tune of {manifest['base_model']} ({manifest['family']})\n"
            f"# ollama create my-model -f Modelfile && ollama run my-model\nFROM ./{gguf_name}\n"
            f'TEMPLATE """{OLLAMA_TEMPLATE}"""\nPARAMETER stop "<end_of_turn>"\nPARAMETER temperature 0.7\n')


if __name__ == "__main__":  # `python -m gemfuse.tune.export --fetch-converter`, run by `make setup`
    print(llama_cpp_tools())
