"""LoRA's forward and backward as five matmuls in the base's dtype, for training.

PEFT computes a LoRA branch in the adapter's dtype: with a bf16 base and fp32 adapters (its default, kept for
the optimizer's sake) every LoRA layer copies its input to fp32, runs four small fp32 matmuls, keeps that fp32
copy for backward, and casts back. On Gemma 3 270M's shapes that made the LoRA branches 65% of the frozen
layers' own time. Here the adapters stay fp32 (the optimizer's master weights) but are cast to the base's dtype
for the matmuls, as mixed-precision training does everywhere: forward `x W^T + s (x A^T) B^T` as one matmul and
one fused add-matmul; backward the input's gradient as `g W + (s g B) A` (one matmul, one fused add-matmul) and
the adapters' gradients from the saved input (the same tensor the other projections of that input save) and
the r-wide product. Anything else (several adapters, DoRA, a merged or disabled adapter, a quantised base, a
trained base weight) keeps PEFT's own forward.
"""

from __future__ import annotations

from types import MethodType
from typing import Any

from .guard import differs, guarded

_FUNCTION: Any = None  # the autograd Function, made once: a compiled forward must only read it


def _made() -> Any:
    global _FUNCTION
    _FUNCTION = _FUNCTION or _lora_function()
    return _FUNCTION


def _lora_function():
    import torch
    import torch.nn.functional as F

    class LoraMatmuls(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, dropped, weight, bias, a, b, scaling):
            a_low, b_low = a.to(x.dtype), b.to(x.dtype)
            flat = x.reshape(-1, x.shape[-1])
            source = flat if dropped is None else dropped.reshape(-1, x.shape[-1])
            inner = source @ a_low.T  # (tokens, r)
            out = F.linear(flat, weight, bias).addmm_(inner, b_low.T, alpha=scaling)
            ctx.save_for_backward(source, weight, a_low, b_low, inner)
            ctx.scaling, ctx.dropped, ctx.dtypes, ctx.shape = scaling, dropped is not None, (a.dtype, b.dtype), x.shape
            return out.view(*x.shape[:-1], out.shape[-1])

        @staticmethod
        def backward(ctx, grad):
            source, weight, a_low, b_low, inner = ctx.saved_tensors
            grad = grad.reshape(-1, grad.shape[-1]).to(a_low.dtype)
            through_b = (grad @ b_low).mul_(ctx.scaling)  # (tokens, r)
            grad_b = (grad.T @ inner).mul_(ctx.scaling).to(ctx.dtypes[1]) if ctx.needs_input_grad[5] else None
            grad_a = (through_b.T @ source).to(ctx.dtypes[0]) if ctx.needs_input_grad[4] else None
            grad_x = grad_dropped = None
            if ctx.needs_input_grad[0]:
                grad_x = grad @ weight
                if not ctx.dropped:
                    grad_x.addmm_(through_b, a_low)
            if ctx.dropped and ctx.needs_input_grad[1]:
                grad_dropped = through_b @ a_low
            return (grad_x.view(ctx.shape) if grad_x is not None else None,
                    grad_dropped.view(ctx.shape) if grad_dropped is not None else None, None, None, grad_a, grad_b, None)

    return LoraMatmuls


def fuse_lora_layers(model) -> int:
    """Give every plain LoRA Linear of `model` the fused forward, if PEFT's LoRA layer still computes what this
    was written for; returns how many were given it."""
    if not guarded("lora_matmuls", "peft.tuners.lora.layer.Linear", "peft", _misfit):
        return 0
    from peft.tuners.lora.layer import Linear as LoraLinear

    fused = 0
    for module in model.modules():
        if isinstance(module, LoraLinear) and plain(module):
            # a method of one function (not a partial per layer): torch.compile traces every layer alike
            module.forward = MethodType(_forward, module)  # type: ignore[method-assign]
            fused += 1
    return fused


def plain(module) -> bool:
    """One adapter, no DoRA or other variant, no LoRA bias, on a frozen plain Linear: what the matmuls compute."""
    import torch

    base: Any = getattr(module, "base_layer", None)
    adapters = getattr(module, "lora_A", {})
    return (type(base) is torch.nn.Linear and not base.weight.requires_grad and len(adapters) == 1
            and (base.bias is None or not base.bias.requires_grad)
            and all(getattr(b, "bias", None) is None for b in getattr(module, "lora_B", {}).values())
            and not getattr(module, "lora_variant", None) and not any(getattr(module, "use_dora", {}).values())
            and all(hasattr(module, name) for name in ("scaling", "lora_dropout", "merged", "disable_adapters",
                                                       "active_adapters")))


def _misfit() -> str | None:
    """PEFT's forward and the fused one on a tiny float64 LoRA layer (adapter B not zero): output and gradients."""
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    generator = torch.Generator().manual_seed(0)
    wrapped = get_peft_model(torch.nn.Sequential(torch.nn.Linear(8, 6)).double(),
                             LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, target_modules=["0"]))
    base: Any = wrapped.get_base_model()
    layer = base[0]
    if not plain(layer):
        return f"a fresh LoRA layer ({type(layer).__name__}) lacks what the fused forward reads"
    (name,) = layer.lora_A.keys()
    with torch.no_grad():
        layer.lora_B[name].weight.normal_(generator=generator)
    x = torch.randn(3, 4, 8, dtype=torch.float64, generator=generator)
    grad = torch.randn(3, 4, 6, dtype=torch.float64, generator=generator)
    results = []
    for fused in (True, False):
        probe = copy.deepcopy(layer)
        inputs = x.clone().requires_grad_()
        out = _forward(probe, inputs) if fused else probe(inputs)
        out.backward(grad)
        results.append((out, inputs.grad, probe.lora_A[name].weight.grad, probe.lora_B[name].weight.grad))
    return differs(results[0], results[1], names=("output", "input gradient", "A gradient", "B gradient"), rtol=1e-6, atol=1e-9)


def _forward(module, x, *args, **kwargs):
    import torch

    (name,) = module.lora_A.keys()
    if (args or kwargs or module.disable_adapters or module.merged or list(module.active_adapters) != [name]
            or x.dtype != module.base_layer.weight.dtype):
        return type(module).forward(module, x, *args, **kwargs)  # PEFT's own
    dropout = module.lora_dropout[name]
    dropped = None if isinstance(dropout, torch.nn.Identity) else dropout(x)
    base = module.base_layer
    return (_FUNCTION or _made()).apply(x, dropped, base.weight, base.bias, module.lora_A[name].weight,
                           module.lora_B[name].weight, module.scaling[name])
