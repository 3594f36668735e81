"""Switching a language model to one of gemfuse's attention functions, as a guest (guard.py): the model is run
once under a recording stand-in for SDPA, so the check sees what the model really passes (masks, scaling, sliding
windows, positions, any new argument), and the recorded calls of its first layers go to SDPA and to ours in
float64: outputs and gradients must agree before the model is switched."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from .guard import differs, guarded

PROBE = "gemfuse_recording"


def language_model(model):
    return model.get_decoder() if hasattr(model, "get_decoder") else model


def switch_attention(model, patch: str, name: str, function: Callable,
                     misfit: Callable[[Any], str | None]) -> bool:
    """Register `function` as attention `name` (SDPA's masks) and switch the language model of `model` to it, if
    `misfit(decoder)` finds nothing. Returns whether it did."""
    decoder = language_model(model)
    kind = type(decoder)
    if not guarded(patch, f"{kind.__module__}.{kind.__qualname__}", "transformers", partial(misfit, decoder)):
        return False
    from transformers import AttentionInterface  # importable: the check imported them
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(name, function)
    ALL_MASK_ATTENTION_FUNCTIONS.register(name, sdpa_mask)
    decoder.set_attn_implementation(name)
    return True


def recorded_calls(decoder, **inputs) -> list[tuple]:
    """(module, query, key, value, mask, kwargs) of each attention call of one forward of `decoder` on `inputs`."""
    import torch
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]
    calls: list = []

    def recording(module, query, key, value, attention_mask, **kwargs):
        calls.append((module, query, key, value, attention_mask, kwargs))
        return sdpa(module, query, key, value, attention_mask, **kwargs)

    AttentionInterface.register(PROBE, recording)
    ALL_MASK_ATTENTION_FUNCTIONS.register(PROBE, sdpa_mask)
    before = getattr(decoder.config, "_attn_implementation", None) or "sdpa"
    decoder.set_attn_implementation(PROBE)
    try:
        with torch.no_grad():
            decoder(**inputs, use_cache=False)
    finally:
        decoder.set_attn_implementation(before)
        # the global registry keeps what is registered: the recording closure (and through `calls` the model it
        # saw) would live as long as the process
        AttentionInterface.register(PROBE, sdpa)
    return calls


def disagreement(calls: list[tuple], ours: Callable, seen: Callable | None = None) -> str | None:
    """The first two recorded calls through `ours` and through SDPA, in float64: None when outputs and gradients
    agree, else what differs. `seen(mask, out)` zeroes outputs nothing reads (a query with no key to attend)."""
    import torch
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if not calls:
        return "the language model called no attention function"
    functions: tuple[Any, ...] = (ours, ALL_ATTENTION_FUNCTIONS["sdpa"])
    for number, (module, *tensors, attention_mask, kwargs) in enumerate(calls[:2]):
        kwargs = {**kwargs, "dropout": 0.0}
        if attention_mask is not None and attention_mask.dtype != torch.bool:
            attention_mask = attention_mask.double()
        generator = torch.Generator().manual_seed(number)
        grad = None
        results = []
        for function in functions:
            inputs = [t.detach().double().requires_grad_() for t in tensors]
            out = function(module, *inputs, attention_mask, **kwargs)[0]
            keep = seen(attention_mask, out) if seen else 1.0
            if grad is None:
                grad = torch.randn(out.shape, dtype=out.dtype, generator=generator).to(out.device) * keep
            out = out * keep
            out.backward(grad)
            results.append((out, *(t.grad for t in inputs)))
        reason = differs(results[0], results[1], names=("output", "query gradient", "key gradient", "value gradient"),
                         rtol=1e-6, atol=1e-9)
        if reason:
            return f"layer call {number + 1}: {reason}"
    return None
