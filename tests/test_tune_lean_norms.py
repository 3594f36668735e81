"""The lean RMSNorm (saving its input and one number per row) equals transformers' Gemma 3 and Gemma 3n norms:
output, the input's gradient and the weight's (transformers computes in fp32, whatever the input); in bf16 it keeps
no fp32 copy of its input."""

import pytest


def _norm(kind: str, dim: int):
    from gemfuse._torchvision import import_transformers

    import_transformers()
    if kind == "gemma3":
        from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm

        return Gemma3RMSNorm(dim, eps=1e-6)
    from transformers.models.gemma3n.modeling_gemma3n import Gemma3nRMSNorm

    return Gemma3nRMSNorm(dim, eps=1e-6, with_scale=kind == "gemma3n")


@pytest.mark.parametrize("kind", ["gemma3", "gemma3n", "gemma3n-no-scale"])
def test_lean_norm_equals_transformers(kind):
    import copy

    import torch

    from gemfuse.tune.guests.lean_norms import lean_norms

    torch.manual_seed(0)
    theirs = _norm(kind, 24).double()
    if hasattr(theirs, "weight"):
        torch.nn.init.normal_(theirs.weight)
    ours = copy.deepcopy(theirs)
    assert lean_norms(ours) == 1
    x = torch.randn(3, 5, 24, dtype=torch.float64) * 4
    grad = torch.randn(3, 5, 24, dtype=torch.float64)
    got = []
    for norm in (ours, theirs):
        inputs = x.clone().requires_grad_()
        out = norm(inputs)
        out.backward(grad)
        got.append((out.detach(), inputs.grad, getattr(norm, "weight", None)))
    assert torch.allclose(got[0][0], got[1][0], rtol=1e-6, atol=1e-6)
    assert torch.allclose(got[0][1], got[1][1], rtol=1e-5, atol=1e-6)
    if got[1][2] is not None:
        assert torch.allclose(got[0][2].grad, got[1][2].grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["gemma3", "gemma3n", "gemma4"])
def test_bf16_norm_keeps_its_input_not_an_fp32_copy(family):
    """On the locked transformers (5.25 renamed the 3n / 4 norms' epsilon) every family keeps the saving."""
    import importlib

    import torch

    from gemfuse._torchvision import import_transformers
    from gemfuse.tune.guests.lean_norms import lean_norms

    import_transformers()
    name = {"gemma3": "Gemma3RMSNorm", "gemma3n": "Gemma3nRMSNorm", "gemma4": "Gemma4RMSNorm"}[family]
    norm = getattr(importlib.import_module(f"transformers.models.{family}.modeling_{family}"), name)(64)
    norm = norm.to(torch.bfloat16)
    norm.weight.requires_grad_(False)
    assert lean_norms(norm) == 1
    x = torch.randn(32, 64, dtype=torch.bfloat16, requires_grad=True)
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        norm(x)
    assert sum(t.numel() * t.element_size() for t in kept) <= x.numel() * 2 + 32 * 4 + 64 * 2
