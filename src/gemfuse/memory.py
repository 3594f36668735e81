"""Memory arithmetic shared by the tuner's estimate before a run (tune/memory.py) and `gemfuse plan`
(weights/plan.py): the machine's RAM, what training keeps per token, and what the process itself holds.

The constants were measured on a CPU (VmHWM from the run's start): Gemma 3 270M at batch 1, 8 and 16 and the
tiny Gemma 3 and 3n models came within 8% of their peaks with them (BENCHMARKS.md, "Memory estimate").
"""

from __future__ import annotations

import os


def system_ram(field: str = "MemTotal") -> int | None:
    """Bytes of RAM from /proc/meminfo (`MemTotal`, `MemAvailable`); elsewhere the physical total."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


MiB = 2**20
TIGHT = 0.8  # of the device's memory: beyond it an "auto" run recomputes activations instead of keeping them
LOGITS_BUDGET = 32 * MiB  # bytes of fp32 logits one piece of the loss may hold (the loss walks them so)
LIBRARIES = 464 * MiB  # resident once torch, transformers and PEFT are imported
CPU_WORKING = 150 * MiB  # a CPU run's working memory beyond the terms below: allocator arenas, autograd, threads


def activation_bytes(tokens: int, layers: int, hidden: int, inter: int, checkpointing: bool, width: int) -> int:
    """What backward keeps: with checkpointing each layer's input; without, what a Gemma layer with LoRA saves
    (norm inputs, projections' inputs and outputs, the MLP's four intermediate-wide tensors, LoRA's rank-wide
    ones: about 16 hidden-wide and 6 intermediate-wide values a token)."""
    per_token_layer = 2 * hidden if checkpointing else 16 * hidden + 6 * inter
    return tokens * layers * per_token_layer * width


def loss_bytes(tokens: int, vocab: int) -> int:
    """The loss's logits: one piece at a time, never over LOGITS_BUDGET, with its exponent and gradient."""
    return 3 * min(tokens * vocab * 4, LOGITS_BUDGET)


def training_runtime_bytes(device: str, resident_besides_weights: int | None = None) -> int:
    """What the training process holds besides the model and what it trains: on a CPU the libraries (what is
    resident besides the weights when known, at least LIBRARIES) and the working memory; an accelerator's
    allocator peak counts tensors only."""
    if device != "cpu":
        return 0
    return max(resident_besides_weights or 0, LIBRARIES) + CPU_WORKING


def resident_bytes() -> int | None:
    """This process's resident memory now (VmRSS), None where /proc has none."""
    return _status_bytes("VmRSS")


def reset_peak() -> bool:
    """Start this process's peak resident memory afresh (Linux: clear_refs 5), so a peak read later is what
    came after, not what an earlier stage of the same process reached. False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def process_peak_bytes() -> int | None:
    """This process's own peak resident memory: VmHWM from /proc (ru_maxrss would carry a parent's peak across
    exec); elsewhere ru_maxrss (bytes on macOS, KiB on Linux)."""
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
    except (ImportError, OSError):
        return None
