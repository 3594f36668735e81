"""Which device and precision a model runs or trains on, and how it is quantised on load: one policy for the
transformers backend and the tuner, below both."""

from __future__ import annotations

import os

from .errors import ModelLoadError


def cpu_threads() -> int:
    """The CPU threads a computation may use: OMP_NUM_THREADS where it is set (the budget torch keeps to as well,
    so llama.cpp and torch in one process, or processes sharing a machine, do not fight for cores), else every core
    this process may run on."""
    budget = os.environ.get("OMP_NUM_THREADS", "").strip()
    if budget.isdigit() and int(budget) > 0:
        return int(budget)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pick_device(preference: str = "auto") -> str:
    import torch

    if preference != "auto":
        return preference
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(device: str, preference: str = "auto"):
    """bf16 where the device runs it natively, fp16 on MPS, fp32 otherwise."""
    import torch

    if preference != "auto":
        return getattr(torch, preference)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


def cpu_has_fast_bf16() -> bool:
    import torch

    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None) or getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe and probe()) or torch.backends.cpu.get_cpu_capability() in ("AVX512", "AVX512_BF16")
    except Exception:  # private probes may vanish in later torch releases
        return False


def training_dtype(device: str, preference: str):
    """bf16 where the device trains in it, fp32 otherwise (fp16 would need loss scaling)."""
    import torch

    if preference != "auto":
        return getattr(torch, preference)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device == "mps":
        return torch.bfloat16 if torch.backends.mps.is_macos_or_newer(14, 0) else torch.float32
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


def bitsandbytes_config(kind: str, device: str, dtype, training: bool = False, keep: tuple[str, ...] = ()):
    """bitsandbytes LLM.int8 ('8bit') or NF4 with double quantisation ('4bit', QLoRA's): on CUDA, and on a CPU
    for training (bitsandbytes runs there; slower than bf16 for serving, where int8 and GGUF are the CPU's way)."""
    import importlib.util

    from ._torchvision import import_transformers

    if device.split(":")[0] != "cuda" and not (training and device == "cpu"):
        raise ModelLoadError(f"quantize = '{kind}' (bitsandbytes) needs a CUDA GPU; on the CPU use 'int8', or a "
                             "GGUF quant on llama.cpp (gemfuse quantize MODEL --to gguf:Q4_K_M)")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError(f"quantize = '{kind}' needs bitsandbytes: pip install 'gemfuse[cuda]'")
    transformers = import_transformers()
    skip = {"llm_int8_skip_modules": ["lm_head", *keep]} if keep else {}  # `keep`: modules left unquantised
    if kind == "8bit":
        return transformers.BitsAndBytesConfig(load_in_8bit=True, **skip)
    return transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                           bnb_4bit_compute_dtype=dtype, **skip)
