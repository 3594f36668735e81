"""The guests: gemfuse's code that stands in for a library's own inside a model being trained (attention, RMSNorm,
PEFT's LoRA layer, the head and loss). Each checks, before it is installed, that what it replaces is what it was
written for, and otherwise steps aside with the reason logged (guard.py). The rest of tune/ comes in by this door:

    before_lora(model, device, rows_end_to_end)   # the attention: grouped on a CPU, row by row for packed rows
    after_lora(model)                             # the fused LoRA matmuls and the lean norms
    frozen_head_parts(model)                      # the loss's parts, when the frozen-head loss may stand in
    frozen_head_loss(...)                         # which loss.py calls for a frozen head
    outcomes()                                    # what fitted and what stepped aside, in this process
"""

from __future__ import annotations

from . import lean_norms as norms  # the module, not its function of the same name: patchable by its path
from .frozen_head import VOCAB_SLICE, Parts, frozen_head_loss, frozen_head_parts, model_parts
from .grouped_attention import use_grouped_attention
from .guard import Outcome, forget, outcomes
from .lora_matmuls import fuse_lora_layers
from .row_attention import use_row_attention

__all__ = ["VOCAB_SLICE", "Outcome", "Parts", "after_lora", "before_lora", "forget", "frozen_head_loss", "frozen_head_parts",
           "model_parts", "outcomes"]


def before_lora(model, device: str, rows_end_to_end: bool) -> None:
    """On a CPU the grouped attention (CUDA and MPS keep their fused kernels); elsewhere, for rows laid end to end
    (padding-free batches, packing), the row attention."""
    if device == "cpu":
        use_grouped_attention(model)
    elif rows_end_to_end:
        use_row_attention(model)


def after_lora(model) -> None:
    """Each plain LoRA Linear's fused forward, then each Gemma RMSNorm's lean one."""
    fuse_lora_layers(model)
    norms.lean_norms(model)
