"""gemfuse's replacements of a library's code are guests: before one is installed, it checks that what it
replaces is what it was written for (the attributes it reads, and one forward and backward on a tiny input
equal to the library's own within a tolerance). Where that fails, the library's code is kept, the run goes on
with the library's numbers, and the reason is logged once to libraries.log. `outcomes()` says what happened in
this process (`gemfuse env` shows it; the run manifest keeps it)."""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

LOG = logging.getLogger("gemfuse.patches")  # routed to libraries.log by the command line (quiet.py)


@dataclass(frozen=True)
class Outcome:
    patch: str  # lean_norms, grouped_attention, row_attention, lora_matmuls, frozen_head_loss
    target: str  # the class or function it replaces
    library: str  # "transformers 5.25.0": the library that class comes from, as installed
    on: bool
    reason: str = ""  # why the library's own code was kept

    def as_dict(self) -> dict:
        return asdict(self)


_OUTCOMES: dict[tuple[str, str], Outcome] = {}


def library_version(name: str) -> str:
    try:
        return f"{name} {importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{name} (not installed)"


def guarded(patch: str, target: str, library: str, misfit: Callable[[], str | None]) -> bool:
    """Whether `patch` may replace `target`: `misfit()` returns None when it fits, else the reason; an exception
    in it counts as a misfit. Checked once per process for each (patch, target)."""
    import torch

    key = (patch, target)
    if key not in _OUTCOMES:
        try:
            with torch.random.fork_rng(devices=[]):  # a check draws no number a seeded run would have drawn
                reason = misfit()
        except Exception as exc:  # a library that moved under us: its own code stays, the run goes on
            reason = f"{type(exc).__name__}: {exc}"
        outcome = Outcome(patch, target, library_version(library), reason is None, reason or "")
        _OUTCOMES[key] = outcome
        if not outcome.on:
            LOG.warning("%s left %s as it is (%s): %s", patch, target, outcome.library, outcome.reason)
    return _OUTCOMES[key].on


def outcomes() -> list[Outcome]:
    return list(_OUTCOMES.values())


def forget() -> None:
    """Check again at the next install (tests that change a library's class under a patch)."""
    _OUTCOMES.clear()


def differs(ours: Sequence, theirs: Sequence, names: Sequence[str], rtol: float = 1e-6, atol: float = 1e-8) -> str | None:
    """None when each pair of tensors is close, else which one differs and by how much."""
    import torch

    for name, a, b in zip(names, ours, theirs, strict=True):
        if (a is None) != (b is None):
            return f"{name}: one side has none"
        if a is None:
            continue
        if a.shape != b.shape:
            return f"{name}: shape {tuple(a.shape)} against the library's {tuple(b.shape)}"
        a, b = a.detach().double(), b.detach().double()
        if not torch.allclose(a, b, rtol=rtol, atol=atol):
            return f"{name} differs from the library's by up to {float((a - b).abs().max()):.3g}"
    return None
