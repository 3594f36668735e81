"""The loss, computed only where a label is supervised.

A Gemma vocabulary is 262k wide: the usual `model(..., labels=...)` builds logits for every position (prompt,
media and padding included) and keeps them for backward. Here the backbone runs once, the hidden states of
the positions whose next token is supervised are gathered, and the LM head and cross-entropy run on those
alone, in chunks that are recomputed in backward, so no full-width logits tensor ever lives long.

The loss is a *sum* over supervised tokens; the trainer divides by the supervised tokens of the whole
accumulated batch, so gradient accumulation equals one big batch.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

IGNORE = -100


@dataclass
class Parts:
    backbone: Any  # a torch module returning last_hidden_state
    head: Any  # the LM head (a Linear, tied to the embeddings)
    softcap: float | None
    accepts: frozenset[str] = field(default_factory=frozenset)  # the backbone's input names


def model_parts(model) -> Parts:
    """Backbone, head and final logit soft-cap of a causal or conditional-generation Gemma (PEFT-wrapped or not)."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = inner.config.get_text_config() if hasattr(inner.config, "get_text_config") else inner.config
    backbone = inner.model
    accepts = frozenset(inspect.signature(backbone.forward).parameters) - {"labels", "use_cache"}
    return Parts(backbone, inner.get_output_embeddings(), getattr(config, "final_logit_softcapping", None), accepts)


def _chunk_loss(hidden, targets, weight, bias, softcap):
    import torch.nn.functional as F

    logits = F.linear(hidden, weight, bias).float()
    if softcap:
        logits = (logits / softcap).tanh() * softcap
    return F.cross_entropy(logits, targets, reduction="sum")


def supervised_loss(model, batch: dict, chunk: int = 1024, parts: Parts | None = None):
    """(sum of token losses, supervised token count) for one micro-batch."""
    import torch
    from torch.utils.checkpoint import checkpoint

    parts = parts or model_parts(model)
    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k in parts.accepts}
    # Packed rows carry a 4-D boolean block mask: pass it as the attention mask itself.
    hidden = parts.backbone(**inputs, use_cache=False).last_hidden_state
    targets = labels[:, 1:]
    where = targets != IGNORE
    picked = hidden[:, :-1][where]
    targets = targets[where]
    count = int(targets.numel())
    if count == 0:
        return hidden.sum() * 0.0, 0
    weight, bias = parts.head.weight, parts.head.bias
    total = None
    for start in range(0, count, chunk):
        piece = (picked[start:start + chunk], targets[start:start + chunk], weight, bias, parts.softcap)
        value = (checkpoint(_chunk_loss, *piece, use_reentrant=False) if torch.is_grad_enabled()
                 else _chunk_loss(*piece))
        total = value if total is None else total + value
    return total, count
