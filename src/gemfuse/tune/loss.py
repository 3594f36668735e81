"""The loss, computed only where a label is supervised.

A Gemma vocabulary is 262k wide: the usual `model(..., labels=...)` builds logits for every position (prompt,
media and padding included) and keeps them for backward. Here the backbone runs once, the hidden states of
the positions whose next token is supervised are gathered, and the LM head and cross-entropy run on those
alone, a piece at a time. With the head frozen (LoRA) the vocabulary is walked in slices with a running softmax,
each slice of the head read once for all rows and its gradient taken in the forward pass; a trained head
recomputes its row chunks in backward. No full-width logits tensor ever lives long.

The loss is a *sum* over supervised tokens; the trainer divides by the supervised tokens of the whole
accumulated batch, so gradient accumulation equals one big batch.

A batch whose rows share their beginning (batches.shared_prefix) runs that beginning once, as a batch of one; its
keys and values, repeated for every row, are the cache the rows' own tokens attend. The gradient reaching them is
the sum of the rows', as in the padded batch.
"""

from __future__ import annotations

import inspect

from ..data.collate import IGNORE
from ..memory import LOGITS_BUDGET
from .batches import PREFIX
from .guests import VOCAB_SLICE, Parts, frozen_head_loss, model_parts

__all__ = ["IGNORE", "Parts", "forward", "full_logits_loss", "head_loss", "model_parts", "supervised_loss"]


def forward(module, inputs: dict, batch: dict):
    """`module(**inputs)` without a cache; for a shared-prefix batch, the prefix first, its cache repeated per row."""
    prefix = {key[len(PREFIX):]: value for key, value in batch.items() if key.startswith(PREFIX)}
    if not prefix:
        return module(**inputs, use_cache=False)
    keyword = _cache_keyword(module)
    ran = module(**{k: v for k, v in prefix.items() if k in inputs}, use_cache=True)
    cache = getattr(ran, keyword)  # the output names it as the forward does
    cache.batch_repeat_interleave(int(inputs["input_ids"].shape[0]))
    return module(**inputs, **{keyword: cache}, use_cache=True)


def _cache_keyword(module) -> str:
    """transformers 5.25 renamed `past_key_values` to `cache` (the old name still taken, with a warning)."""
    inner = module.get_base_model() if hasattr(module, "get_base_model") else module
    return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"


def _chunk_loss(hidden, targets, weight, bias, softcap):
    import torch.nn.functional as F

    logits = F.linear(hidden, weight, bias).float()
    if softcap:
        logits = (logits / softcap).tanh() * softcap
    return F.cross_entropy(logits, targets, reduction="sum")


def head_loss(hidden, targets, weight, bias, softcap, chunk: int | None = None, columns: int = VOCAB_SLICE):
    """Summed cross-entropy of `hidden` (supervised positions only) through the LM head, never holding more than
    LOGITS_BUDGET of logits: `chunk` rows at a time, and for a frozen head `columns` of the vocabulary at a time."""
    import torch
    from torch.utils.checkpoint import checkpoint

    count = int(targets.numel())
    if bias is None and not (torch.is_grad_enabled() and weight.requires_grad):
        columns = min(columns, weight.shape[0])
        rows = chunk or max(16, LOGITS_BUDGET // (4 * columns))
        return frozen_head_loss(hidden, targets, weight, softcap, rows, columns)
    chunk = chunk or max(16, min(4096, LOGITS_BUDGET // (4 * weight.shape[0])))
    total = None  # a trained head (or one with a bias): the chunks recomputed in backward
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
    hidden = forward(parts.backbone, inputs, batch).last_hidden_state
    targets = labels[:, 1:]
    where = targets != IGNORE
    picked = hidden[:, :-1][where]
    targets = targets[where]
    count = int(targets.numel())
    if count == 0:
        return hidden.sum() * 0.0, 0
    return head_loss(picked, targets, parts.head.weight, parts.head.bias, parts.softcap, chunk), count


def full_logits_loss(model, batch: dict):
    """The library's own way, for a model whose structure the frozen-head loss does not fit: the model's logits
    at every position, then the summed cross-entropy where a label is supervised."""
    import torch.nn.functional as F

    labels = batch["labels"]
    inputs = {k: v for k, v in batch.items() if k != "labels" and not k.startswith(PREFIX)}
    logits = forward(model, inputs, batch).logits[:, :-1]
    targets = labels[:, 1:]
    count = int((targets != IGNORE).sum())
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE,
                           reduction="sum"), count
