"""The frozen-head loss, a guest (guard.py): instead of the model's own forward (logits at every position, then
the loss), the backbone runs once and a frozen LM head is walked in vocabulary slices with a running softmax over
the supervised positions only (loss.py gathers them). It reads the model's parts (backbone, head, final soft-cap)
where transformers keeps them today; before it stands in, its loss on one short row is checked against the
model's own logits' loss."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from .guard import guarded


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


VOCAB_SLICE = 16384  # columns of the head per piece: small enough for the slice's logits to stay in cache


def _online_head(hidden, targets, weight, softcap, rows: int, columns: int, want_grad: bool):
    """(summed cross-entropy, gradient with respect to `hidden` or None) of a frozen head, walking the vocabulary
    in slices with a running max and normaliser (the online softmax of flash attention): each slice of the head is
    read once for all rows of a chunk, its logits used for the normaliser and, scaled as the max moves, for the
    gradient (softmax minus one-hot, times the head), then freed."""
    import torch

    wide = torch.promote_types(hidden.dtype, torch.float32)  # bf16 logits are summed in fp32
    total = torch.zeros((), dtype=wide, device=hidden.device)
    grad = torch.empty_like(hidden) if want_grad else None
    for start in range(0, hidden.shape[0], rows):
        h, picked = hidden[start:start + rows], targets[start:start + rows]
        peak = torch.full((h.shape[0],), float("-inf"), dtype=wide, device=h.device)
        norm = torch.zeros(h.shape[0], dtype=wide, device=h.device)
        acc = torch.zeros(h.shape, dtype=wide, device=h.device) if want_grad else None
        target = torch.zeros(h.shape[0], dtype=wide, device=h.device)  # each row's target logit, as computed
        slope = torch.ones(h.shape[0], dtype=wide, device=h.device)  # and the soft-cap's derivative there
        for first in range(0, weight.shape[0], columns):
            w = weight[first:first + columns]
            logits = (h @ w.T).to(wide)
            squash = None
            if softcap:
                squash = logits.div_(softcap).tanh_()  # in place: one buffer of this slice's width
                logits = squash * softcap
            inside = (picked >= first) & (picked < first + w.shape[0])
            column = (picked - first).clamp_(0, w.shape[0] - 1)[:, None]
            target = torch.where(inside, logits.gather(1, column).squeeze(1), target)
            if squash is not None:
                slope = torch.where(inside, 1 - squash.gather(1, column).squeeze(1).square(), slope)
            new_peak = torch.maximum(peak, logits.amax(1))
            rescale = (peak - new_peak).exp_()
            probabilities = logits.sub_(new_peak[:, None]).exp_()  # unnormalised, against the running max
            norm.mul_(rescale).add_(probabilities.sum(1))
            if acc is not None:
                if squash is not None:  # d(c tanh(z / c)) / dz = 1 - tanh^2
                    probabilities.mul_(squash.square_().neg_().add_(1))
                acc.mul_(rescale[:, None]).add_(probabilities.to(weight.dtype) @ w)
            peak = new_peak
        total += (peak + norm.log() - target).sum()
        if acc is not None and grad is not None:
            grad[start:start + rows] = (acc / norm[:, None] - weight[picked].to(wide) * slope[:, None]).to(hidden.dtype)
    return total, grad


def _frozen_head_loss():
    """An autograd Function: the summed cross-entropy of a *frozen* head, whose gradient with respect to the
    hidden states is computed in the forward pass (`_online_head`), so backward only scales it. Against
    recomputing the logits in backward: a third fewer head FLOPs, and one slice of logits alive at a time."""
    import torch

    class FrozenHeadLoss(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, targets, weight, softcap, rows, columns):
            total, grad = _online_head(hidden, targets, weight, softcap, rows, columns, want_grad=True)
            ctx.save_for_backward(grad)
            return total

        @staticmethod
        def backward(ctx, grad_output):
            (grad,) = ctx.saved_tensors
            return grad * grad_output.to(grad.dtype), None, None, None, None, None

    return FrozenHeadLoss


_FROZEN_HEAD_LOSS: Any = None


def frozen_head_loss(hidden, targets, weight, softcap, rows: int, columns: int):
    """Summed cross-entropy of `hidden` through a frozen head (no bias), `rows` rows and `columns` of the vocabulary
    at a time; differentiable with respect to `hidden` when gradients are on."""
    import torch

    global _FROZEN_HEAD_LOSS
    if torch.is_grad_enabled() and hidden.requires_grad:
        _FROZEN_HEAD_LOSS = _FROZEN_HEAD_LOSS or _frozen_head_loss()
        return _FROZEN_HEAD_LOSS.apply(hidden, targets, weight, softcap, rows, columns)
    return _online_head(hidden, targets, weight, softcap, rows, columns, want_grad=False)[0]


def head_misfit(model, parts: Parts) -> str | None:
    """Why the backbone-then-frozen-head loss would not equal the model's own logits' loss (None: it does), on
    one short row of ordinary text tokens, in the model's dtype."""
    import torch
    import torch.nn.functional as F

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = inner.config.get_text_config() if hasattr(inner.config, "get_text_config") else inner.config
    weight = parts.head.weight
    if parts.head.bias is not None:
        return "the LM head has a bias"
    ids = (config.vocab_size // 2 + torch.arange(8, device=weight.device))[None]  # mid-vocabulary: no special token
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if "token_type_ids" in parts.accepts:
        inputs["token_type_ids"] = torch.zeros_like(ids)
    targets = ids[0, 3:]  # the next tokens of positions 2..6: the first three are prompt
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            hidden = parts.backbone(**inputs, use_cache=False).last_hidden_state[0, 2:-1]
            ours = frozen_head_loss(hidden, targets, weight, parts.softcap, rows=16, columns=weight.shape[0] // 3 + 1)
            logits = model(**inputs, use_cache=False).logits[0, 2:-1]
            theirs = F.cross_entropy(logits.float(), targets, reduction="sum")
    finally:
        model.train(training)
    count = targets.numel()
    tolerance = 1e-4 if weight.dtype == torch.float32 else 2e-2
    if not torch.isclose(ours.float(), theirs.float(), rtol=tolerance):
        return f"loss {float(ours) / count:.5g} against the model's own {float(theirs) / count:.5g}"
    return None


def frozen_head_parts(model) -> Parts | None:
    """The parts the backbone-then-head loss reads, when it may stand in for the model's own head and loss
    (checked once per model class); None: use the model's own forward (loss.full_logits_loss)."""
    kind = type(model.get_base_model() if hasattr(model, "get_base_model") else model)
    fits = guarded("frozen_head_loss", f"{kind.__module__}.{kind.__qualname__}", "transformers",
                   lambda: head_misfit(model, model_parts(model)))  # model_parts inside: it may fail on a new class
    return model_parts(model) if fits else None
