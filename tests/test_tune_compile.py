"""train.compile: each transformer layer traced by torch.compile gives the plain layers' loss and gradients (float32,
gradient checkpointing inside the compiled region), one compiled graph serving alike layers; a run trained with it
(no checkpointing) ends on the plain run's adapter; a machine that cannot compile is refused
before anything loads."""

import copy

import pytest

from gemfuse.errors import ConfigError
from test_tune import adapter_weights, assert_same_weights, tiny_config


def six_layer_gemma(folder):
    """The tiny Gemma 3 with six text layers (sliding and full attention alternating), LoRA and the tuner's
    patches on, in float32."""
    from gemfuse._torchvision import import_transformers
    from gemfuse.families import family
    from gemfuse.tune.config import LoraConfig
    from gemfuse.tune.guests.grouped_attention import use_grouped_attention
    from gemfuse.tune.guests.lean_norms import lean_norms
    from gemfuse.tune.guests.lora_matmuls import fuse_lora_layers
    from gemfuse.tune.lora import apply_lora

    transformers = import_transformers()
    config = transformers.AutoConfig.from_pretrained(folder)
    config.text_config.num_hidden_layers = 6
    config.text_config.layer_types = ["sliding_attention", "full_attention"] * 3
    import torch

    torch.manual_seed(0)
    model = transformers.AutoModelForImageTextToText.from_config(config).float().train()
    use_grouped_attention(model)
    model, _ = apply_lora(model, family(config.model_type), LoraConfig(r=4, alpha=8))
    with torch.no_grad():  # B is zero at the start: give the adapters something to carry
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(std=0.1)
    assert fuse_lora_layers(model) and lean_norms(model)
    return model


def loss_and_grads(model, batch):
    from gemfuse.tune.loss import supervised_loss

    model.zero_grad(set_to_none=True)
    loss, _ = supervised_loss(model, batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.heavy
def test_compiled_checkpointed_layers_give_the_plain_layers_loss_and_gradients(tiny_model):
    import torch
    import torch._dynamo

    from gemfuse.tune.compiled import compile_layers
    from gemfuse.tune.setup import recompute_activations

    model = six_layer_gemma(tiny_model("gemma3"))
    recompute_activations(model)  # recomputed inside the compiled region (torch's checkpoint stops dynamo)
    plain = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(0)
    batches = [{"input_ids": torch.randint(3, 200, (2, length), generator=generator),
                "attention_mask": torch.ones(2, length, dtype=torch.long)} for length in (40, 72)]
    for batch in batches:
        batch["labels"] = batch["input_ids"].clone()
        batch["labels"][:, :10] = -100

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    # torch's ahead-of-time autograd without inductor's code generation (seconds, not a minute on two cores): it
    # traces what inductor is given
    assert compile_layers(model, backend="aot_eager") == 7  # six text layers and the vision tower's one
    for batch in batches:  # two lengths: shapes are dynamic, the second length compiles nothing new
        loss_a, grads_a = loss_and_grads(plain, batch)
        loss_b, grads_b = loss_and_grads(model, batch)
        assert torch.allclose(loss_a, loss_b, rtol=1e-5), (loss_a, loss_b)
        assert grads_a.keys() == grads_b.keys() and len(grads_a) == 6 * 7 * 2  # A and B of 7 linears a layer
        for name in grads_a:  # fused kernels sum in another order: float32 noise, scaled to the gradient's size
            assert (grads_a[name] - grads_b[name]).abs().max() <= 1e-4 * grads_a[name].abs().max(), name
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    # the first layer (its input needs no gradient) and the rest, sliding and full: never one per layer
    assert 0 < graphs <= 4, graphs
    torch._dynamo.reset()


@pytest.mark.heavy
def test_a_compiled_run_ends_on_the_plain_runs_adapter(tmp_path, tiny_model, text_data, monkeypatch):
    import gemfuse.tune.compiled

    # the tracing without inductor's C++ (a minute on two cores): benchmarks/tune_throughput.py's compiled sides
    # and the GPU script run inductor itself
    monkeypatch.setattr(gemfuse.tune.compiled, "BACKEND", "aot_eager")
    folder = tiny_model("gemma3")
    train_both = {"gradient_checkpointing": False, "max_steps": 3}
    import torch._dynamo

    from gemfuse.tune import train

    train(tiny_config(folder, text_data, tmp_path / "plain", **train_both))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    train(tiny_config(folder, text_data, tmp_path / "compiled", compile=True, **train_both))
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    breaks = sum(torch._dynamo.utils.counters["graph_break"].values())
    torch._dynamo.reset()
    assert graphs > 0, "dynamo compiled nothing: the run fell back to eager and proved nothing"
    assert_same_weights(adapter_weights(tmp_path / "plain"), adapter_weights(tmp_path / "compiled"))
    assert breaks <= graphs, (breaks, graphs)  # the layers compile whole, not broken into pieces


def test_a_cpu_without_a_compiler_is_refused_in_one_line(monkeypatch, tmp_path):
    from gemfuse.tune.compiled import check_compilable

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(ConfigError, match=r"train.compile .*C\+\+ compiler.*train.compile = false"):
        check_compilable("cpu")
    check_compilable("mps")  # torch compiles Metal there itself
