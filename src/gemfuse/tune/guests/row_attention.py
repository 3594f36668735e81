"""Attention over rows laid end to end (padding-free batches, packing) on an accelerator: each row attends only
itself, so only the rows' own blocks are computed, the sum of their squared lengths rather than the square of
their sum. transformers attends such a sequence through SDPA with a block-diagonal mask over the whole of it: for
16 rows of 512 tokens that is 16 times the work of the padded batch and a mask SDPA's flash kernel cannot take.
Here, on CUDA, torch's variable-length flash kernel takes every row in one call (its sliding window and grouped
key/value heads as Gemma uses them); where it is missing or cannot run (another device, float32 or float64, a
soft-cap, dropout), SDPA runs row by row on the row's own block of the mask. The CPU has its own attention
(grouped_attention.py), which splits rows the same way.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from .attention_switch import disagreement, recorded_calls, switch_attention
from .guard import differs

NAME = "gemfuse_rows"
VARLEN_DTYPES = ("float16", "bfloat16")
VARLEN_HEAD_DIM = 256  # the flash kernel's largest head size

_last: list = [None, None, None]  # position_ids, their segments, row ends on the device: one forward's, for every layer


def row_segments(position_ids, query, key) -> list[tuple[int, int]]:
    """The rows of one sequence of rows laid end to end, as (start, end), from positions that restart at 0; [] for
    anything else (a padded batch, a decode step). Worked out once per forward: on CUDA it waits for the device."""
    length = query.shape[2]
    if position_ids is None or query.shape[0] != 1 or key.shape[2] != length or position_ids.shape[-1] != length:
        return []
    if _last[0] is position_ids:
        return _last[1]
    starts = (position_ids.reshape(-1) == 0).nonzero().flatten().tolist()
    segments = [] if len(starts) < 2 or starts[0] != 0 else list(zip(starts, [*starts[1:], length], strict=True))
    _last[:] = [position_ids, segments, None]
    return segments


def _row_ends(segments: list[tuple[int, int]], device):
    """The kernel's cumulative row ends, kept beside the segments row_segments keeps: made once per forward."""
    import torch

    if _last[1] is not segments:  # segments from elsewhere: nothing kept to share
        return torch.tensor([0, *(e for _, e in segments)], dtype=torch.int32, device=device)
    if _last[2] is None:
        _last[2] = torch.tensor([0, *(e for _, e in segments)], dtype=torch.int32, device=device)
    return _last[2]


def row_attention(module, query, key, value, attention_mask, **kwargs):
    """transformers' attention interface: SDPA, with the rows of a sequence of rows attended each on its own."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]
    segments = row_segments(kwargs.get("position_ids"), query, key)
    if len(segments) < 2:
        return sdpa(module, query, key, value, attention_mask, **kwargs)
    if varlen_fits(module, query, kwargs):
        return _varlen(module, query, key, value, segments, kwargs), None
    import torch

    parts = [sdpa(module, query[:, :, s:e], key[:, :, s:e], value[:, :, s:e],
                  None if attention_mask is None else attention_mask[..., s:e, s:e], **kwargs)[0] for s, e in segments]
    return torch.cat(parts, dim=1), None


def varlen_fits(module, query, kwargs: dict) -> bool:
    dropout = kwargs.get("dropout", 0.0) if module.training else 0.0
    return (query.is_cuda and str(query.dtype).removeprefix("torch.") in VARLEN_DTYPES
            and query.shape[-1] <= VARLEN_HEAD_DIM and kwargs.get("softcap") is None and not dropout
            and varlen_kernel() is not None)


@functools.cache
def varlen_kernel():
    """torch's variable-length flash attention, where it takes a sliding window and grouped heads (torch 2.11+)."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    parameters = inspect.signature(varlen_attn).parameters
    return varlen_attn if {"window_size", "enable_gqa", "scale"} <= parameters.keys() else None


def _varlen(module, query, key, value, segments, kwargs: dict):
    """One call for every row: (1, heads, length, dim) in, (1, length, heads, dim) out, as SDPA's interface."""
    ends = _row_ends(segments, query.device)
    longest = max(e - s for s, e in segments)
    window = kwargs.get("sliding_window")
    # transformers' window keeps a key when q - window < k <= q: the query and the window - 1 keys before it
    left = window - 1 if window else -1
    scaling = kwargs.get("scaling")
    out = varlen_kernel()(query[0].transpose(0, 1).contiguous(), key[0].transpose(0, 1).contiguous(),
                          value[0].transpose(0, 1).contiguous(), ends, ends, longest, longest,
                          scale=scaling, window_size=(left, 0), enable_gqa=key.shape[1] != query.shape[1])
    return out.unsqueeze(0)


def use_row_attention(model) -> bool:
    """Switch the language model of `model` to the row attention, if it still fits. Returns whether it did."""
    return switch_attention(model, "row_attention", NAME, row_attention, _misfit)


def _misfit(decoder) -> str | None:
    """The model's own calls on two rows laid end to end, through SDPA over the whole sequence and the row attention
    (attention_switch); on CUDA the flash kernel too, in bfloat16, on rows past a sliding window."""
    import torch

    device = next(decoder.parameters()).device
    ids = torch.arange(1, 10, device=device).view(1, 9)
    positions = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3]], device=device)
    calls = recorded_calls(decoder, input_ids=ids, position_ids=positions)
    if calls and calls[0][-1].get("position_ids") is None:
        return "the attention is not given the positions, so rows cannot be told apart"
    reason = disagreement(calls, row_attention)
    if reason is None and device.type == "cuda" and varlen_kernel() is not None:
        module, query, key, *_ = calls[0]
        reason = _varlen_misfit(module, query.shape[1], key.shape[1], query.shape[-1], device)
    return reason


def _varlen_misfit(module, heads: int, kv_heads: int, dim: int, device) -> str | None:
    """The flash kernel against SDPA with the block-diagonal mask written out, rows of 7 and 5 tokens, a window of
    3, grouped heads: in bfloat16 against float32, within bfloat16's rounding."""
    import torch
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    generator = torch.Generator().manual_seed(0)
    shapes = ((1, heads, 12, dim), (1, kv_heads, 12, dim), (1, kv_heads, 12, dim))
    tensors = [torch.randn(s, generator=generator).to(device) for s in shapes]
    positions = torch.tensor([[*range(7), *range(5)]], device=device)
    rows = torch.tensor([0] * 7 + [1] * 5, device=device)
    q, k = torch.arange(12, device=device)[:, None], torch.arange(12, device=device)[None, :]
    mask = (rows[:, None] == rows[None, :]) & (k <= q) & (k > q - 3)
    kwargs: dict[str, Any] = {"position_ids": positions, "sliding_window": 3, "scaling": dim**-0.5, "dropout": 0.0}
    with torch.no_grad():
        query, key, value = (t.bfloat16() for t in tensors)
        ours = row_attention(module, query, key, value, None, **kwargs)[0]
        theirs = ALL_ATTENTION_FUNCTIONS["sdpa"](module, *tensors, mask[None, None], **kwargs)[0]
    return differs([ours.float()], [theirs], names=("flash kernel output",), rtol=0.05, atol=0.05)
