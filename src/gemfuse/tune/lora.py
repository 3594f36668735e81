"""Which modules get LoRA, and the PEFT wrapping.

Targets are chosen from the model itself, not from per-family name lists: every linear layer (`nn.Linear`, or
bitsandbytes' 4-bit and 8-bit kinds for QLoRA) under the language model whose leaf name is one of the family's
layer names, plus every linear layer inside the vision or audio tower when asked. Gemma 4 wraps its tower
projections in `Gemma4ClippableLinear` (a module PEFT cannot adapt); picking the plain `nn.Linear` inside it is
what makes its towers trainable.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import ConfigError
from ..families import Family

TOWERS = {"vision": ("vision_tower", "embed_vision", "multi_modal_projector"),
          "audio": ("audio_tower", "embed_audio")}
PRESETS = {"language": (), "language+vision": ("vision",), "language+audio": ("audio",),
           "all": ("vision", "audio")}


def tower_of(name: str) -> str | None:
    parts = name.split(".")
    for tower, markers in TOWERS.items():
        if any(marker in parts for marker in markers):
            return tower
    return None


def linear_kinds() -> tuple[type, ...]:
    """The linear layers a base may be loaded as that PEFT adapts: torch's own (not its subclasses, such as
    MultiheadAttention's projection) and bitsandbytes' 4-bit and 8-bit ones (QLoRA)."""
    import importlib.util

    import torch

    kinds: list[type] = [torch.nn.Linear]
    if importlib.util.find_spec("bitsandbytes") is not None:
        import bitsandbytes as bnb

        kinds += [bnb.nn.Linear4bit, bnb.nn.Linear8bitLt]
    return tuple(kinds)


def target_modules(model, family: Family, targets: str, layers: str) -> list[str]:
    """Full module names to adapt, for a preset name or a regex over module names."""
    kinds = linear_kinds()
    linear = [name for name, module in model.named_modules() if type(module) in kinds]
    linear = [n for n in linear if not n.endswith("lm_head")]
    if targets in PRESETS:
        towers = PRESETS[targets]
        leaves = set(family.lora_targets.get(layers) or family.lora_targets["all-linear"])
        chosen = []
        for name in linear:
            tower = tower_of(name)
            if tower is None and name.split(".")[-1] in leaves:
                chosen.append(name)
            elif tower in towers:
                chosen.append(name)
        missing = [t for t in towers if not any(tower_of(n) == t for n in chosen)]
        if missing:
            raise ConfigError(f"lora.targets = {targets!r}: this model has no {' or '.join(missing)} tower; "
                              f"use one of: {', '.join(p for p in PRESETS if set(PRESETS[p]) <= present_towers(linear))}")
    else:
        try:
            pattern = re.compile(targets)
        except re.error as exc:
            raise ConfigError(f"lora.targets: {targets!r} is neither a preset ({', '.join(PRESETS)}) "
                              f"nor a valid regex: {exc}") from None
        chosen = [n for n in linear if pattern.search(n)]
    if not chosen:
        raise ConfigError(f"lora.targets = {targets!r} matches no linear layer of this model")
    return chosen


def present_towers(names: list[str]) -> set[str]:
    return {t for t in (tower_of(n) for n in names) if t}


PROJECTORS = {"vision": ("multi_modal_projector", "embed_vision"), "audio": ("embed_audio",)}


def projectors_to_train(model, towers: set[str]) -> list[str]:
    """The small projectors between a trained tower and the language model are trained whole (Gemma 3's is a
    bare weight matrix LoRA cannot reach; a low-rank update of the others learned nothing in our tests)."""
    present = {name.split(".")[-1] for name, _ in model.named_modules()}
    return [p for tower in sorted(towers) for p in PROJECTORS[tower] if p in present]


def apply_lora(model, family: Family, lora) -> tuple[Any, list[str]]:
    """Wrap `model` with PEFT LoRA per the config's `[lora]` section; returns (peft model, module names)."""
    from peft import LoraConfig, get_peft_model

    modules = target_modules(model, family, lora.targets, lora.layers)
    projectors = projectors_to_train(model, present_towers(modules))
    modules = [m for m in modules if not set(m.split(".")) & set(projectors)]
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=modules,
                        modules_to_save=projectors or None,
                        use_dora=lora.dora, bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, config), modules
