"""Sharded LoRA training with FSDP2 (`train.shard = "fsdp"` under torchrun or accelerate): each decoder layer, and
each vision or audio encoder layer, is `fully_shard`ed, so every process holds 1/N of the frozen base and of the
adapters in those layers (the embeddings, the head and the final norm stay whole on every process: the loss
reads the head outside any layer's forward). Gradients of sharded weights are summed by FSDP's reduce-scatter
(divide factor 1, the loop's own convention: each rank's loss is already over the global supervised count); the
few trainable weights outside a layer are all-reduced by the loop as in data-parallel runs.

Checkpoints and the final adapter are gathered to full tensors (adapters and their optimizer state are small),
so a sharded run resumes on any number of processes and its adapter is an ordinary PEFT adapter.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .base import repeated_layers


def wants_sharding(setting: str, base_folder: Any, device: str, world: int) -> bool:
    """Whether to shard: "fsdp" always; "auto" when there are several processes and the base's weights (their
    size on disk) pass what `train.gradient_checkpointing = "auto"` counts as tight on this device."""
    from pathlib import Path

    from ..memory import TIGHT
    from .memory import available_memory

    if setting != "auto":
        return setting == "fsdp"
    if world < 2:
        return False
    weights = sum(f.stat().st_size for f in Path(base_folder).glob("*.safetensors"))
    available, _ = available_memory(device)
    return available is not None and available > 0 and weights > TIGHT * available


def check_shardable(quantize: str, world: int, compiled: bool = False) -> None:
    if quantize != "none":
        raise ConfigError(f"train.shard = 'fsdp' with train.quantize = '{quantize}': FSDP cannot shard bitsandbytes' "
                          "quantised weights here; shard a 16-bit base, or train QLoRA without sharding")
    if compiled:  # FSDP's hooks run inside each layer's call, where the compiled region would begin
        raise ConfigError("train.shard = 'fsdp' with train.compile = true: compiled sharded layers are not tested "
                          "here; set train.compile = false, or train without sharding")
    if world < 2:
        raise ConfigError("train.shard = 'fsdp' needs several processes: start it with torchrun --nproc-per-node N "
                          "(or accelerate launch)")


def shard_model(model: Any, device: str, dtype: Any) -> int:
    """fully_shard each layer of `model` (loaded on the CPU), then move the shards to `device`; how many units."""
    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    # 16-bit compute with the adapters' gradients reduced in fp32; an fp32 run as it is
    mixed = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32) if dtype != torch.float32 \
        else MixedPrecisionPolicy()
    layers = repeated_layers(model)
    for layer in layers:
        fully_shard(layer, mp_policy=mixed)
        layer.set_gradient_divide_factor(1.0)
        layer.set_force_sum_reduction_for_comms(True)  # a plain SUM: gloo has no pre-multiplied sum
    model.to(device)
    return len(layers)


def is_sharded(tensor: Any) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def full_value(value: Any) -> float:
    """A scalar that may be a DTensor (a gradient norm over sharded weights), as a float on every rank."""
    return float(value.full_tensor() if is_sharded(value) else value)


def clip_gradients(params: list, max_norm: float | None) -> float:
    """The gradients' global norm (the same on every rank), and clipped to `max_norm` when it is set. A sharded run
    may mix sharded gradients with whole ones (a tower's projection outside any layer), which torch's own
    clip_grad_norm_ refuses: each kind's norm is taken on its own and the two combined."""
    import math

    import torch

    grads = [p.grad for p in params if p.grad is not None]
    sharded = [g for g in grads if is_sharded(g)]
    if not sharded or len(sharded) == len(grads):  # one kind: torch's own arithmetic
        if max_norm:
            return full_value(torch.nn.utils.clip_grad_norm_(params, max_norm))
        return full_value(torch.nn.utils.get_total_norm(grads))
    whole = [g for g in grads if not is_sharded(g)]
    norm = math.hypot(full_value(torch.nn.utils.get_total_norm(sharded)), float(torch.nn.utils.get_total_norm(whole)))
    if max_norm and math.isfinite(norm):
        scale = min(1.0, max_norm / (norm + 1e-6))  # torch's clipping coefficient
        for grad in grads:
            grad.mul_(scale)
    return norm


def gathered_weights(model: Any) -> dict:
    """The trainable weights as full tensors, by parameter name (a collective: every rank calls it; rank 0 gets
    them, on the CPU)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    found = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True,
                                                                 ignore_frozen_params=True))
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    return {k: v for k, v in found.items() if k in trained}  # a tied head is not a parameter of its own


def gathered_optimizer(model: Any, optimizer: Any) -> dict:
    """The optimizer's state as full tensors, by parameter name (a collective, like gathered_weights)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True,
                                                                               cpu_offload=True))


def load_whole(model: Any, weights: dict) -> None:
    """A checkpoint's full trainable weights into the model before it is sharded (FSDP then cuts them: a weight
    written into a shard before FSDP's first forward would be lost when it sets itself up)."""
    found = model.load_state_dict(weights, strict=False)
    if found.unexpected_keys:
        raise ConfigError(f"the checkpoint holds weights this model lacks: {', '.join(found.unexpected_keys[:3])}")


def restore_optimizer(model: Any, optimizer: Any, optimizer_state: dict) -> None:
    """A full optimizer state (every rank reads it, keyed by parameter name) into the sharded run's optimizer:
    each tensor cut to this rank's shard by its parameter's placement."""
    import torch

    # the optimizer's own parameter objects, by name (FSDP's set-up at the first forward may register new ones
    # over the same storage, so model.named_parameters() can name other objects than the optimizer holds)
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    owned = [p for group in optimizer.param_groups for p in group["params"]]
    if len(names) != len(owned):
        raise ConfigError(f"the optimizer holds {len(owned)} weights, the model trains {len(names)}")
    named = dict(zip(names, owned, strict=True))
    for name, values in optimizer_state["state"].items():
        param = named[name]
        optimizer.state[param] = {key: (local_part(value, param) if value.dim() else value.clone())
                                  if torch.is_tensor(value) else value for key, value in values.items()}
    for group, saved in zip(optimizer.param_groups, optimizer_state["param_groups"], strict=True):
        group.update({k: v for k, v in saved.items() if k != "params"})


def local_part(full: Any, like: Any) -> Any:
    """`full` laid out as the parameter `like` is: this rank's shard of a sharded one, else as it is."""
    from torch.distributed.tensor import distribute_tensor

    if not is_sharded(like):
        return full.to(like.device, copy=True)  # the optimizer updates its state in place
    return distribute_tensor(full.to(like.device), like.device_mesh, like.placements)
