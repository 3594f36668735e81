"""The frozen-head loss (the gradient taken in the forward pass, the vocabulary walked in slices with a running
softmax) equals autograd through full logits: the loss and the hidden states' gradient, with and without Gemma's
final soft-cap, in one row chunk or many, one vocabulary slice or many (the last one short)."""

import pytest


@pytest.mark.parametrize("softcap", [None, 30.0])
@pytest.mark.parametrize("chunk", [7, None])
@pytest.mark.parametrize("columns", [64, 16384])
def test_frozen_head_loss_equals_full_logits_autograd(softcap, chunk, columns):
    import torch
    import torch.nn.functional as F

    from gemfuse.tune.loss import head_loss

    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(50, 16, generator=generator, dtype=torch.float64) * 3
    weight = torch.randn(300, 16, generator=generator, dtype=torch.float64)
    targets = torch.randint(0, 300, (50,), generator=generator)

    ours_in = hidden.clone().requires_grad_()
    ours = head_loss(ours_in, targets, weight, None, softcap, chunk, columns)
    ours.backward(torch.tensor(0.5, dtype=torch.float64))  # a scaled loss, as the loop divides by the token count

    reference_in = hidden.clone().requires_grad_()
    logits = reference_in @ weight.T
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    reference = F.cross_entropy(logits, targets, reduction="sum")
    (reference * 0.5).backward()

    assert torch.allclose(ours, reference, rtol=1e-9)
    assert torch.allclose(ours_in.grad, reference_in.grad, rtol=1e-9, atol=1e-12)


def test_a_trained_head_or_no_gradient_takes_the_recomputed_path():
    import torch

    from gemfuse.tune.loss import head_loss

    hidden = torch.randn(20, 8, requires_grad=True)
    weight = torch.randn(40, 8, requires_grad=True)
    targets = torch.randint(0, 40, (20,))
    head_loss(hidden, targets, weight, None, None, 6).backward()
    assert weight.grad is not None and hidden.grad is not None, "a trained head gets its gradient"
    with torch.no_grad():
        unrecorded = head_loss(hidden, targets, weight.detach(), None, None, columns=16)
        assert unrecorded.requires_grad is False
        reference = torch.nn.functional.cross_entropy(hidden @ weight.T, targets, reduction="sum")
        assert torch.allclose(unrecorded, reference, rtol=1e-5), "the loss alone (validation) is the same sum"
