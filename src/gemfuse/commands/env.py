"""`gemfuse env`: what a bug report needs. Versions of Python, gemfuse and the libraries it reaches into, the
device and its bf16 support, llama.cpp's build, which of gemfuse's library patches fit the installed libraries
(each checked now on a tiny random model built from a config; no weights are loaded), and the paths in use."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import platform
import sys
from functools import partial
from typing import Any

# what the code reaches into, most telling first
PACKAGES = ("torch", "transformers", "peft", "accelerate", "tokenizers", "huggingface-hub", "safetensors",
            "bitsandbytes", "torchao", "torchvision", "timm", "datasets", "trl", "llama-cpp-python", "gguf",
            "numpy", "pillow", "soundfile", "librosa", "pydantic", "httpx", "aiohttp", "fastapi", "uvicorn", "openai")


def versions() -> dict[str, str | None]:
    from ..tune.run_folder import package_versions

    found = package_versions(PACKAGES)
    return {name: found.get(name) for name in PACKAGES}


def device() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"torch": "not installed"}
    from ..devices import cpu_has_fast_bf16

    info: dict[str, Any] = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(),
                            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                            "cpu_fast_bf16": cpu_has_fast_bf16(), "threads": torch.get_num_threads(),
                            "torch_cuda": torch.version.cuda}
    if info["cuda"]:
        info["gpus"] = [{"name": torch.cuda.get_device_name(i),
                         "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
                        for i in range(torch.cuda.device_count())]
        info["cuda_bf16"] = torch.cuda.is_bf16_supported()
    return info


def llama_cpp() -> dict[str, Any] | None:
    try:
        import llama_cpp
    except ImportError:
        return None
    except Exception as exc:  # an installed but broken build is worth reporting
        return {"error": f"{type(exc).__name__}: {exc}"}
    features = llama_cpp.llama_print_system_info().decode(errors="replace")
    return {"version": llama_cpp.__version__, "system_info": " ".join(features.split()),
            "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload())}


def patches() -> list[dict]:
    """Install each training patch on a tiny random Gemma 3 (as a run would) and report what fit."""
    from .._torchvision import import_transformers

    try:
        transformers = import_transformers()
        import peft
        import torch
    except ImportError:
        return []
    from ..tune import guests as registry

    registry.forget()  # what is checked now, not what an earlier run in this process found
    with torch.random.fork_rng(devices=[]):  # the caller's random numbers are left as they were
        torch.manual_seed(0)
        _check_on_a_tiny_model(transformers, peft)
    return [o.as_dict() for o in registry.outcomes()]


def _check_on_a_tiny_model(transformers, peft) -> None:
    import torch

    from ..tune.guests import frozen_head_parts
    from ..tune.guests.grouped_attention import use_grouped_attention
    from ..tune.guests.guard import guarded
    from ..tune.guests.lean_norms import SCALES, lean_norms
    from ..tune.guests.lora_matmuls import fuse_lora_layers
    from ..tune.guests.row_attention import use_row_attention

    config = transformers.Gemma3TextConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                           sliding_window=4, layer_types=["sliding_attention", "full_attention"])
    model = transformers.Gemma3ForCausalLM(config).float()
    norms = []
    for name in SCALES:  # the norm classes of the families not in this tiny model, built alone
        family = name.removesuffix("RMSNorm").lower()
        try:
            norms.append(getattr(importlib.import_module(f"transformers.models.{family}.modeling_{family}"), name)(8))
        except Exception as exc:
            guarded("lean_norms", name, "transformers", partial(str, f"cannot build one: {exc}"))
    lean_norms(torch.nn.ModuleList([model, *norms]))
    use_grouped_attention(model)
    use_row_attention(transformers.Gemma3ForCausalLM(config).float())
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    fuse_lora_layers(wrapped)
    frozen_head_parts(wrapped)


def report() -> dict[str, Any]:
    from ..paths import cache_dir, config_path
    from ..quiet import log_file

    return {"gemfuse": importlib.metadata.version("gemfuse"), "python": sys.version.split()[0],
            "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
            "packages": versions(), "device": device(), "llama_cpp": llama_cpp(), "patches": patches(),
            "paths": {"config": str(config_path()), "cache": str(cache_dir()), "libraries_log": str(log_file())}}


def show(as_json: bool) -> None:
    data = report()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    print(f"gemfuse {data['gemfuse']}, Python {data['python']}, {data['platform']}")
    print("\npackages:")
    for name, version in data["packages"].items():
        print(f"  {name:18} {version or '-'}")
    print("\ndevice:")
    for key, value in data["device"].items():
        print(f"  {key:18} {value}")
    print("\nllama.cpp:", "not installed" if data["llama_cpp"] is None else "")
    for key, value in (data["llama_cpp"] or {}).items():
        print(f"  {key:18} {value}")
    print("\ntraining patches (each checked against the installed library):")
    for patch in data["patches"]:
        state = "on" if patch["on"] else f"library's own kept: {patch['reason']}"
        print(f"  {patch['patch']:18} {patch['target']} ({patch['library']}): {state}")
    print("\npaths:")
    for key, value in data["paths"].items():
        print(f"  {key:18} {value}")
