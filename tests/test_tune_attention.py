"""The CPU training attention (query heads of a group stacked into one matmul) equals PyTorch's
scaled_dot_product_attention: output and gradients, for a boolean padding mask, an additive mask, no mask
(causal, or an encoder's full attention) and keys longer than queries; a row with nothing to attend stays finite.
On a tiny Gemma 3, a left-padded batch's loss and gradients equal those under SDPA."""

import pytest


def _inputs(batch=2, heads=4, groups=2, length=6, keys=6, dim=8):
    import torch

    generator = torch.Generator().manual_seed(0)
    q = torch.randn(batch, heads, length, dim, generator=generator, dtype=torch.float64)
    k = torch.randn(batch, groups, keys, dim, generator=generator, dtype=torch.float64)
    v = torch.randn(batch, groups, keys, dim, generator=generator, dtype=torch.float64)
    return q, k, v


class _Module:
    def __init__(self, causal=True):
        self.is_causal, self.training = causal, True


def _reference(q, k, v, mask, causal):
    import torch.nn.functional as F

    per = q.shape[1] // k.shape[1]
    return F.scaled_dot_product_attention(q, k.repeat_interleave(per, 1), v.repeat_interleave(per, 1),
                                          attn_mask=mask, is_causal=causal and mask is None).transpose(1, 2)


@pytest.mark.parametrize("case", ["bool", "additive", "causal", "encoder", "longer-keys"])
def test_grouped_attention_equals_sdpa(case):
    import torch

    from gemfuse.tune.guests.grouped_attention import grouped_attention

    keys = 9 if case == "longer-keys" else 6
    q, k, v = _inputs(keys=keys)
    allowed = torch.ones(6, keys, dtype=torch.bool).tril(keys - 6)[None, None].repeat(2, 1, 1, 1)
    allowed[1, :, :, :2] = False  # the second row is left-padded by two
    allowed[1, :, :2, 0] = True  # (padded queries see one key, as transformers' masks let them)
    mask = {"bool": allowed, "additive": torch.zeros(allowed.shape, dtype=torch.float64).masked_fill(~allowed, -1e9),
            "longer-keys": allowed}.get(case)
    causal = case != "encoder"
    ours_in = [t.clone().requires_grad_() for t in (q, k, v)]
    theirs_in = [t.clone().requires_grad_() for t in (q, k, v)]
    ours, weights = grouped_attention(_Module(causal), *ours_in, mask, scaling=q.shape[-1] ** -0.5)
    reference_mask = mask if mask is None or mask.dtype == torch.bool else mask
    theirs = _reference(*theirs_in, reference_mask, causal)
    assert weights is None and ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=1e-10)
    grad = torch.randn(ours.shape, dtype=torch.float64)
    ours.backward(grad)
    theirs.backward(grad)
    for a, b in zip(ours_in, theirs_in, strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-10)


def test_a_row_with_nothing_to_attend_stays_finite():
    import torch

    from gemfuse.tune.guests.grouped_attention import grouped_attention

    q, k, v = _inputs()
    nothing = torch.zeros(2, 1, 6, 6, dtype=torch.bool)
    q.requires_grad_()
    out, _ = grouped_attention(_Module(), q, k, v, nothing)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(q.grad).all()


def test_tiny_gemma3_padded_batch_equals_sdpa(tmp_path):
    import torch

    from gemfuse._torchvision import import_transformers
    from gemfuse.testing import build_tiny_model
    from gemfuse.tune.guests.grouped_attention import use_grouped_attention
    from gemfuse.tune.loss import supervised_loss

    transformers = import_transformers()
    folder = build_tiny_model("gemma3", tmp_path / "tiny")
    ids = torch.randint(5, 200, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, :5] = 0  # left padding
    labels = ids.clone()
    labels[:, :8] = -100  # the answer is the last tokens, as collated rows have it (never a padded position's)
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    results = []
    for grouped in (False, True):
        model = transformers.AutoModelForImageTextToText.from_pretrained(folder).double()
        if grouped:
            use_grouped_attention(model)
        model.train()
        loss, _ = supervised_loss(model, batch)
        loss.backward()
        results.append((loss.detach(), [p.grad for p in model.parameters() if p.grad is not None]))
    assert torch.allclose(results[0][0], results[1][0], rtol=1e-9)
    assert len(results[0][1]) == len(results[1][1]) > 0
    for a, b in zip(results[0][1], results[1][1], strict=True):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-9)


def test_the_recording_probe_lets_go_of_the_model_it_checked(tiny_model):
    import gc
    import weakref

    import torch
    from transformers import AutoModelForCausalLM

    from gemfuse.tune.guests.attention_switch import recorded_calls

    model = AutoModelForCausalLM.from_pretrained(str(tiny_model("gemma3")), dtype=torch.float32)
    calls = recorded_calls(model, input_ids=torch.tensor([[2, 5, 6, 7]]))
    assert calls
    gone = weakref.ref(calls[0][0])  # an attention layer the probe saw
    del model, calls
    gc.collect()
    assert gone() is None, "the attention registry still holds the layers it recorded"
