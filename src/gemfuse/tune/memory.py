"""A memory estimate made before the first step, so a run that will not fit says so instead of dying an hour in.

weights (as loaded; a sharded run's own shard) + LoRA parameters, gradients and AdamW state (fp32: 16 bytes
each) + activations kept for backward (gemfuse.memory.activation_bytes; with gradient checkpointing only each
layer's input) + the loss's logits piece + on a CPU the process itself (the libraries, as resident now, and the
working memory). Compared with the peak measured from the run's start: the accelerator allocator's, or the
process's resident memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..memory import (
    TIGHT,
    activation_bytes,
    loss_bytes,
    process_peak_bytes,
    reset_peak,
    resident_bytes,
    system_ram,
    training_runtime_bytes,
)
from ..shapes import MemoryEstimate

GiB = 2**30


@dataclass
class Estimate:
    weights: int
    trainable: int
    activations: int
    loss: int
    available: int | None
    where: str
    runtime: int = 0  # what the process holds besides: libraries and working memory (a CPU's)
    longest: int = 0  # the longest row it was made for, in tokens (a batch holds batch_size of them)

    @property
    def total(self) -> int:
        return self.weights + self.trainable + self.activations + self.loss + self.runtime

    def tight(self) -> bool:
        """Too close to what the device has to run without recomputing activations (train.gradient_checkpointing
        = "auto" turns it on then)."""
        return bool(self.available) and self.total > TIGHT * self.available  # type: ignore[operator]

    @property
    def warning(self) -> str | None:
        if self.available and self.total > 0.9 * self.available:
            return (f"this run needs about {self.total / GiB:.1f} GiB but {self.where} has {self.available / GiB:.1f} "
                    "GiB: lower train.batch_size or data.max_length, turn on train.gradient_checkpointing, "
                    "or use train.quantize = '4bit' (QLoRA)")
        return None

    def summary(self) -> str:
        have = f" of {self.available / GiB:.1f} GiB {self.where}" if self.available else ""
        runtime = f", libraries and working memory {self.runtime / GiB:.2f}" if self.runtime else ""
        return (f"{self.total / GiB:.2f} GiB{have} (weights {self.weights / GiB:.2f}, LoRA + optimizer "
                f"{self.trainable / GiB:.2f}, activations {self.activations / GiB:.2f}, loss {self.loss / GiB:.2f}"
                f"{runtime})")

    def as_dict(self) -> MemoryEstimate:
        return {"total_gib": round(self.total / GiB, 3), "weights_gib": round(self.weights / GiB, 3),
                "trainable_gib": round(self.trainable / GiB, 3), "activations_gib": round(self.activations / GiB, 3),
                "loss_gib": round(self.loss / GiB, 3), "runtime_gib": round(self.runtime / GiB, 3),
                "longest_row_tokens": self.longest,
                "available_gib": round(self.available / GiB, 3) if self.available else None}


def available_memory(device: str) -> tuple[int | None, str]:
    import torch

    if device.startswith("cuda"):
        free, total = torch.cuda.mem_get_info()
        return total, "GPU memory"
    if device == "mps":
        return int(torch.mps.recommended_max_memory()), "unified memory for the GPU"
    available = system_ram("MemAvailable")
    return (available, "available RAM") if available else (system_ram("MemTotal"), "RAM")


def estimate(model, config, device: str, dtype, plan, checkpointing: bool | None = None) -> Estimate:
    """The run's memory; `checkpointing` as it will run (default: the config's, if it is not "auto")."""
    import torch

    checkpointing = config.train.gradient_checkpointing is True if checkpointing is None else checkpointing

    text = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    hidden = getattr(text, "hidden_size", 0)
    inter = getattr(text, "intermediate_size", 4 * hidden)
    inter = max(inter) if isinstance(inter, list) else inter
    layers = getattr(text, "num_hidden_layers", 0)
    vocab = getattr(text, "vocab_size", 0)
    from torch.distributed.tensor import DTensor

    held = [p.to_local() if isinstance(p, DTensor) else p for p in model.parameters()]  # a sharded one: its shard
    weights = sum(p.numel() * p.element_size() for p in held)
    trainable = sum(h.numel() for h, p in zip(held, model.parameters(), strict=True) if p.requires_grad) * 16
    lengths = getattr(plan, "lengths", None)
    longest = min(max(lengths), config.data.max_length) if lengths else config.data.max_length
    tokens = config.train.batch_size * longest
    width = torch.tensor([], dtype=dtype).element_size()
    activations = activation_bytes(tokens, layers, hidden, inter, checkpointing, width)
    available, where = available_memory(device)
    resident = resident_bytes() if device == "cpu" else None
    runtime = training_runtime_bytes(device, resident - weights if resident is not None else None)
    return Estimate(weights, trainable, activations, loss_bytes(tokens, vocab), available, where, runtime, longest)


def start_measuring(device: str) -> bool:
    """The peak from here on: this run's own, not what an earlier stage of the same process reached (a distil
    run labels and evaluates in the process that trains). False where the peak cannot be reset."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        return True
    return device == "cpu" and reset_peak()


def peak_used(device: str) -> tuple[int | None, str]:
    """What the run really reached, to set beside the estimate: the accelerator allocator's peak on CUDA, the
    driver's allocation on MPS, the process's peak resident memory on a CPU."""
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated()), "torch.cuda.max_memory_allocated"
    if device == "mps":
        return int(torch.mps.driver_allocated_memory()), "torch.mps.driver_allocated_memory"
    return process_peak_bytes(), "peak resident memory (VmHWM) of the process"


def peak_gib(device: str) -> float | None:
    peak, _ = peak_used(device)
    return None if peak is None else round(peak / GiB, 3)
