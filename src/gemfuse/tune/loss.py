"""The loss, computed only where a label is supervised.

A Gemma vocabulary is 262k wide: the usual `model(..., labels=...)` builds logits for every position (prompt,
media and padding included) and keeps them for backward. Here the backbone runs once, the hidden states of
the positions whose next token is supervised are gathered, and the LM head and cross-entropy run on those
alone, a chunk at a time. With the head frozen (LoRA) each chunk's gradient is taken in the forward pass and
its logits freed at once; a trained head recomputes its chunks in backward. No full-width logits tensor
ever lives long.

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


LOGITS_BUDGET = 32 * 2**20  # bytes of fp32 logits one chunk of the frozen-head loss may hold


def _frozen_head_loss():
    """An autograd Function: the summed cross-entropy of a *frozen* head, whose gradient with respect to the
    hidden states is computed in the forward pass, chunk by chunk (softmax minus one-hot, times the head), so
    backward only scales it. Against recomputing the logits in backward: a third fewer head FLOPs, and one chunk
    of logits alive at a time instead of a forward's and a backward's."""
    import torch
    import torch.nn.functional as F

    class FrozenHeadLoss(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, targets, weight, bias, softcap, chunk):
            wide = torch.promote_types(hidden.dtype, torch.float32)  # bf16 logits are summed in fp32
            total = torch.zeros((), dtype=wide, device=hidden.device)
            grad = torch.empty_like(hidden)
            for start in range(0, hidden.shape[0], chunk):
                logits = F.linear(hidden[start:start + chunk], weight, bias).to(wide)
                squash = None
                if softcap:
                    squash = logits.div_(softcap).tanh_()  # in place: one buffer of this chunk's width
                    logits = squash * softcap
                picked = targets[start:start + chunk]
                normaliser = torch.logsumexp(logits, dim=-1)
                total += (normaliser - logits.gather(1, picked[:, None]).squeeze(1)).sum()
                probabilities = logits.sub_(normaliser[:, None]).exp_()
                probabilities[torch.arange(picked.shape[0], device=picked.device), picked] -= 1
                if squash is not None:  # d(c tanh(z / c)) / dz = 1 - tanh^2
                    probabilities.mul_(squash.square_().neg_().add_(1))
                grad[start:start + chunk] = probabilities.to(weight.dtype) @ weight
            ctx.save_for_backward(grad)
            return total

        @staticmethod
        def backward(ctx, grad_output):
            (grad,) = ctx.saved_tensors
            return grad * grad_output.to(grad.dtype), None, None, None, None, None

    return FrozenHeadLoss


_FROZEN_HEAD_LOSS: Any = None


def head_loss(hidden, targets, weight, bias, softcap, chunk: int | None = None):
    """Summed cross-entropy of `hidden` (supervised positions only) through the LM head, never holding more than
    a chunk of logits."""
    import torch
    from torch.utils.checkpoint import checkpoint

    global _FROZEN_HEAD_LOSS
    count = int(targets.numel())
    chunk = chunk or max(16, min(4096, LOGITS_BUDGET // (4 * weight.shape[0])))
    if torch.is_grad_enabled() and hidden.requires_grad and not weight.requires_grad and bias is None:
        _FROZEN_HEAD_LOSS = _FROZEN_HEAD_LOSS or _frozen_head_loss()
        return _FROZEN_HEAD_LOSS.apply(hidden, targets, weight, bias, softcap, chunk)
    total = None  # a trained head, or no gradient wanted: the chunks recomputed in backward
    for start in range(0, count, chunk):
        piece = (hidden[start:start + chunk], targets[start:start + chunk], weight, bias, softcap)
        value = (checkpoint(_chunk_loss, *piece, use_reentrant=False) if torch.is_grad_enabled()
                 else _chunk_loss(*piece))
        total = value if total is None else total + value
    return total


def supervised_loss(model, batch: dict, chunk: int | None = None, parts: Parts | None = None):
    """(sum of token losses, supervised token count) for one micro-batch."""
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
    return head_loss(picked, targets, parts.head.weight, parts.head.bias, parts.softcap, chunk), count
