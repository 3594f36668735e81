"""The fused LoRA layer (five matmuls in the base's dtype) equals PEFT's own forward and backward: outputs, the
input's gradient and both adapters' gradients, with and without LoRA dropout, for a 3-D input; layers it cannot
take (DoRA, two adapters) keep PEFT's forward, and a disabled adapter still means the base alone."""

import pytest


def _pair(dropout: float, dora: bool = False):
    import copy

    import torch

    from gemfuse._torchvision import import_transformers

    import_transformers()
    from peft import LoraConfig, get_peft_model

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(12, 20, bias=True)

        def forward(self, x):
            return self.proj(x)

    torch.manual_seed(0)
    net = Net().double()
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=["proj"], use_dora=dora)
    ours = get_peft_model(net, config)
    for name, p in ours.named_parameters():
        if "lora_B" in name:  # B starts at zero: give it values so every gradient is tested
            torch.nn.init.normal_(p)
    theirs = copy.deepcopy(ours)
    return ours, theirs


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_fused_lora_equals_peft(dropout):
    import torch

    from gemfuse.tune.guests.lora_matmuls import fuse_lora_layers

    ours, theirs = _pair(dropout)
    assert fuse_lora_layers(ours) == 1
    x = torch.randn(3, 5, 12, dtype=torch.float64)
    grads = torch.randn(3, 5, 20, dtype=torch.float64)
    results = []
    for model in (ours, theirs):
        model.train()
        inputs = x.clone().requires_grad_()
        torch.manual_seed(1)  # the same dropout mask on both sides
        out = model(inputs)
        out.backward(grads)
        named = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        results.append((out.detach(), inputs.grad, named))
    (out_a, gx_a, named_a), (out_b, gx_b, named_b) = results
    assert torch.allclose(out_a, out_b, rtol=1e-12)
    assert torch.allclose(gx_a, gx_b, rtol=1e-12)
    assert named_a.keys() == named_b.keys() and len(named_a) == 2
    for name in named_a:
        assert torch.allclose(named_a[name], named_b[name], rtol=1e-12), name


def test_bf16_inputs_with_fp32_adapters_train_the_fp32_adapters():
    import torch

    from gemfuse.tune.guests.lora_matmuls import fuse_lora_layers

    ours, theirs = _pair(0.0)
    for model in (ours, theirs):
        model.base_model.model.proj.base_layer.to(torch.bfloat16)
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.data = p.data.float()
    fuse_lora_layers(ours)
    x = torch.randn(7, 12).to(torch.bfloat16)
    for model in (ours, theirs):
        model(x).float().square().sum().backward()
    a = dict(ours.named_parameters())
    b = dict(theirs.named_parameters())
    for name in a:
        if "lora_" in name:
            assert a[name].grad.dtype == torch.float32
            assert torch.allclose(a[name].grad, b[name].grad, rtol=0.05, atol=0.05 * b[name].grad.abs().max())


def test_layers_it_cannot_take_keep_peft_forward_and_disabling_still_works():
    import torch

    from gemfuse.tune.guests.lora_matmuls import fuse_lora_layers

    dora, _ = _pair(0.0, dora=True)
    assert fuse_lora_layers(dora) == 0
    ours, theirs = _pair(0.0)
    fuse_lora_layers(ours)
    x = torch.randn(2, 12, dtype=torch.float64)
    with ours.disable_adapter(), theirs.disable_adapter():
        base = ours(x)
        assert torch.allclose(base, theirs(x))
    assert not torch.allclose(base, ours(x)), "the adapter is back on once the context ends"
