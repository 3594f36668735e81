"""Gemma's RMSNorm for training, keeping for backward only its input and one number per row.

Gemma normalises in fp32: autograd through transformers' RMSNorm keeps an fp32 copy of the input and the fp32
normalised output of every norm (six a layer, four of them hidden-wide), twice the bf16 input each. Here the
backward recomputes the normalised rows from the saved input and the saved reciprocal RMS instead: on Gemma 3
270M (batch 4 of ~150 tokens) that is ~0.3 GiB less kept from forward to backward, for the same arithmetic.
"""

from __future__ import annotations

from functools import partial
from types import MethodType
from typing import Any

from .guard import differs, guarded

# the norm classes this replaces, and how their weight scales the normalised rows
SCALES = {"Gemma3RMSNorm": "one_plus_weight", "Gemma3nRMSNorm": "weight", "Gemma4RMSNorm": "weight"}

_FUNCTION: Any = None  # the autograd Function, made once: a compiled forward must only read it


def _made() -> Any:
    global _FUNCTION
    _FUNCTION = _FUNCTION or _norm_function()
    return _FUNCTION


def _norm_function():
    import torch

    class LeanRMSNorm(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, weight, eps, one_plus):
            wide = x.to(torch.promote_types(x.dtype, torch.float32))  # fp32 for bf16, as Gemma does
            inverse = torch.rsqrt(wide.square().mean(-1, keepdim=True).add_(eps))
            scale = None if weight is None else (weight.to(wide.dtype) + 1 if one_plus else weight.to(wide.dtype))
            out = wide * inverse  # not in place: for an fp32 input, `wide` is the input itself
            out = out if scale is None else out.mul_(scale)
            ctx.save_for_backward(x, inverse, weight)
            ctx.one_plus = one_plus
            return out.to(x.dtype)

        @staticmethod
        def backward(ctx, grad):
            x, inverse, weight = ctx.saved_tensors
            normed = x.to(inverse.dtype) * inverse
            grad = grad.to(inverse.dtype)
            grad_weight = None
            if weight is not None and ctx.needs_input_grad[1]:
                grad_weight = (grad * normed).reshape(-1, normed.shape[-1]).sum(0).to(weight.dtype)
            if weight is not None:
                grad = grad * (weight.to(grad.dtype) + 1 if ctx.one_plus else weight.to(grad.dtype))
            # d/dx of x * r(x), r = mean(x^2)^-1/2: r * (g - n * mean(g * n)); not in place on `grad`, which may
            # be the caller's own tensor
            grad_x = (grad - normed * (grad * normed).mean(-1, keepdim=True)).mul_(inverse)
            return grad_x.to(x.dtype), grad_weight, None, None

    return LeanRMSNorm


def epsilon(module) -> float | None:
    """The norm's epsilon, under either name transformers has used (`eps`; `variance_epsilon` from 5.25 on)."""
    for name in ("eps", "variance_epsilon"):
        value = getattr(module, name, None)
        if isinstance(value, float | int) and not isinstance(value, bool):
            return float(value)
    return None


def lean_norms(model) -> int:
    """Give every Gemma RMSNorm of `model` whose class still fits the lean forward; returns how many."""
    count = 0
    for module in model.modules():
        kind = type(module)
        scale = SCALES.get(kind.__name__)
        if scale is None:
            continue
        one_plus = scale == "one_plus_weight"
        variant = "" if getattr(module, "with_scale", True) else " (no scale)"
        fits = guarded("lean_norms", f"{kind.__module__}.{kind.__qualname__}{variant}", "transformers",
                       partial(_misfit, module, one_plus))
        eps = epsilon(module)
        if fits and eps is not None and _weight_fits(module):
            module.lean_norm = (one_plus, eps)  # read by the method: one function for every layer (torch.compile)
            module.forward = MethodType(_forward, module)
            count += 1
    return count


def _weight_fits(module) -> bool:
    weight = getattr(module, "weight", None) if getattr(module, "with_scale", True) else None
    return weight is None or weight.dim() == 1


def _misfit(module, one_plus: bool) -> str | None:
    """Why the lean forward would not equal this norm's own (None: it does), on a float64 copy and a small input."""
    import copy

    import torch

    eps = epsilon(module)
    if eps is None:
        return "no epsilon attribute (expected eps or variance_epsilon)"
    if not _weight_fits(module):
        return "its weight is not one vector"
    probe = copy.deepcopy(module).double()
    weight = getattr(probe, "weight", None) if getattr(probe, "with_scale", True) else None
    if weight is not None:  # a frozen weight's gradient is checked too: a run may train it
        with torch.no_grad():
            weight.normal_(generator=torch.Generator().manual_seed(0))
        weight.requires_grad_(True)
    width = weight.shape[0] if weight is not None else 8
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, width, dtype=torch.float64, generator=generator) * 3
    grad = torch.randn(2, 3, width, dtype=torch.float64, generator=generator)
    results = []
    probe.lean_norm = (one_plus, eps)
    for forward in (MethodType(_forward, probe), partial(type(probe).forward, probe)):
        inputs = x.clone().requires_grad_()
        if weight is not None:
            weight.grad = None
        out = forward(inputs)
        out.backward(grad)
        results.append((out, inputs.grad, None if weight is None else weight.grad.clone()))
    return differs(results[0], results[1], names=("output", "input gradient", "weight gradient"),
                   rtol=1e-5, atol=1e-6)  # the library's norm computes in fp32 whatever the input


def _forward(module, x):
    one_plus, eps = module.lean_norm
    weight = module.weight if getattr(module, "with_scale", True) else None
    return (_FUNCTION or _made()).apply(x, weight, eps, one_plus)
