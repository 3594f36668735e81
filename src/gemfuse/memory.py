"""Memory arithmetic shared by the tuner's estimate before a run (tune/memory.py) and `gemfuse plan`
(weights/plan.py): the machine's RAM, and what training keeps per token."""

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


def activation_bytes(tokens: int, layers: int, hidden: int, inter: int, checkpointing: bool, width: int) -> int:
    per_token_layer = 2 * hidden if checkpointing else 10 * hidden + 3 * inter
    return tokens * layers * per_token_layer * width


def loss_bytes(tokens: int, vocab: int) -> int:
    return min(tokens, 1024) * vocab * 4 * 3


def process_peak_bytes() -> int | None:
    """This process's own peak resident memory: VmHWM from /proc (ru_maxrss would carry a parent's peak across
    exec); elsewhere ru_maxrss (bytes on macOS, KiB on Linux)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
    except (ImportError, OSError):
        return None
