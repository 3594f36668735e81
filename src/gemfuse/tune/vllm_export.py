"""A fine-tune for vLLM, the engine for a team on GPUs: the files `vllm serve` takes, checked against what its
loaders read, the command that serves them and the `[models.NAME]` block that puts them behind gemfuse.

Two forms: `vllm` is the merged folder (config, safetensors, tokenizer and chat template: `vllm serve FOLDER`);
`vllm-lora` is the base plus the adapter (`--enable-lora --lora-modules NAME=ADAPTER`), which lets one vLLM
serve several fine-tunes of one base. vLLM applies LoRA to the language model's linear layers only and refuses
DoRA, biases and `modules_to_save`, so an adapter that has them is refused here, naming the way out.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..shapes import RunManifest

# The linear layers of Gemma's decoder that vLLM's LoRA layers wrap (its packed qkv_proj and gate_up_proj
# take the q/k/v and gate/up adapters).
VLLM_LORA_MODULES = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank accepts
TOWERS = ("vision", "audio", "multi_modal_projector", "embed_vision", "embed_audio")


@dataclass
class VLLMServing:
    folder: Path  # what vLLM reads: the merged folder, or the adapter
    command: str
    config: str  # the [models.NAME] block for gemfuse's config


def model_block(name: str) -> str:
    return (f'[models.{name}]\nbackend = "vllm"\nbase_url = "http://127.0.0.1:8000/v1"  # the vLLM server\n'
            f'model = "{name}"\n')


def served_folder_problems(folder: Path) -> list[str]:
    """What vLLM's loaders would miss in a model folder (config, weights, tokenizer, chat template)."""
    problems = []
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    if not config.get("architectures") or not config.get("model_type"):
        problems.append("config.json with architectures and model_type")
    if not list(folder.glob("*.safetensors")):
        problems.append("safetensors weights")
    if not ((folder / "tokenizer.json").is_file() or (folder / "tokenizer.model").is_file()):
        problems.append("a tokenizer (tokenizer.json or tokenizer.model)")
    tokenizer_config = folder / "tokenizer_config.json"
    has_template = (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file() or (
        tokenizer_config.is_file() and "chat_template" in json.loads(tokenizer_config.read_text()))
    if not has_template:
        problems.append("a chat template")
    return problems


def adapter_modules(adapter: Path) -> set[str]:
    """The dotted module names the adapter's weights belong to."""
    from safetensors import safe_open

    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    return {key.split(".lora_")[0] for key in keys if ".lora_" in key}


def lora_problems(adapter: Path) -> tuple[int, list[str]]:
    """The adapter's rank, and what vLLM's LoRA loader would refuse in it."""
    config = json.loads((adapter / "adapter_config.json").read_text())
    problems = []
    if config.get("peft_type", "LORA") != "LORA":
        problems.append(f"peft_type {config.get('peft_type')} (vLLM loads LoRA only)")
    if config.get("use_dora"):
        problems.append("DoRA (use_dora)")
    if config.get("bias", "none") != "none":
        problems.append(f"bias = {config['bias']!r}")
    if config.get("modules_to_save"):
        problems.append(f"modules_to_save {config['modules_to_save']}")
    for module in sorted(adapter_modules(adapter)):
        leaf = module.rsplit(".", 1)[-1]
        if leaf not in VLLM_LORA_MODULES or any(tower in module for tower in TOWERS):
            problems.append(f"a LoRA on {module} (vLLM takes the language model's {', '.join(sorted(VLLM_LORA_MODULES))})")
            break
    return int(config.get("r", 0)), problems


def max_lora_rank(rank: int) -> int:
    return next((r for r in VLLM_LORA_RANKS if r >= rank), rank)


def merged_for_vllm(folder: Path, name: str) -> VLLMServing:
    problems = served_folder_problems(folder)
    if problems:
        raise ConfigError(f"{folder}: vLLM would not load it: missing {'; '.join(problems)}")
    command = f"vllm serve {folder.resolve()} --served-model-name {name}"
    return VLLMServing(folder, command, model_block(name))


def lora_for_vllm(run: Path, manifest: RunManifest, out: Path, name: str) -> VLLMServing:
    from .base import resolve_base

    rank, problems = lora_problems(run / "adapter")
    if problems:
        raise ConfigError(f"{run / 'adapter'}: vLLM's LoRA loader refuses {'; '.join(problems)}; export the merged "
                          "weights instead: gemfuse export RUN --to vllm")
    base = manifest["base_model"]
    folder = resolve_base(base).folder
    problems = served_folder_problems(folder)
    if problems:
        raise ConfigError(f"{folder} (the base): vLLM would not load it: missing {'; '.join(problems)}")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(run / "adapter", out)
    served = base if _hub_id(base) else str(folder.resolve())
    command = (f"vllm serve {served} --enable-lora --lora-modules {name}={out.resolve()} "
               f"--max-lora-rank {max_lora_rank(rank)}")
    return VLLMServing(out, command, model_block(name))


def _hub_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).expanduser().exists()
