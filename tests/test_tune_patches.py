"""Each of gemfuse's replacements of library code checks, before it is installed, that what it replaces is what it
was written for; where not, the library's own code is kept, the run trains with the library's numbers, and the
reason is logged once. On the tiny Gemma 3, 3n and 4, a run with every patch on ends where a run with every patch
stepped aside ends."""

import json
import logging

import pytest

from gemfuse.tune.guests import guard as patches


@pytest.fixture(autouse=True)
def fresh_checks():
    patches.forget()
    yield
    patches.forget()


def _transformers():
    from gemfuse._torchvision import import_transformers

    return import_transformers()


# -- lean norms -------------------------------------------------------------------------------------------------------
def _renamed_epsilon_norm():
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm as Library

    class Gemma3RMSNorm(Library):  # the name the patch looks for, with its epsilon under a name it does not know
        def __init__(self, dim):
            super().__init__(dim)
            self.epsilon = self.__dict__.pop("eps", None) or self.__dict__.pop("variance_epsilon")

        def _norm(self, x):
            import torch

            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.epsilon)

    return Gemma3RMSNorm(16)


def _other_forward_norm():
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm as Library

    class Gemma3RMSNorm(Library):  # a release whose forward computes something else than the lean one
        def forward(self, x):
            return super().forward(x) * 2

    return Gemma3RMSNorm(16)


@pytest.mark.parametrize("make", [_renamed_epsilon_norm, _other_forward_norm])
def test_lean_norms_step_aside_for_a_changed_norm_and_its_output_is_the_librarys(make, caplog):
    import torch

    from gemfuse.tune.guests.lean_norms import lean_norms

    _transformers()
    norm = make()
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(2, 3, 16)
    expected = type(norm).forward(norm, x)
    with caplog.at_level(logging.WARNING, logger="gemfuse.patches"):
        assert lean_norms(norm) == 0
        assert lean_norms(make()) == 0  # said once per class, not once per module
    assert torch.equal(norm(x), expected)
    (outcome,) = patches.outcomes()
    assert not outcome.on and outcome.patch == "lean_norms" and outcome.library.startswith("transformers ")
    logged = [r.getMessage() for r in caplog.records if r.name == "gemfuse.patches"]
    assert len(logged) == 1 and "Gemma3RMSNorm" in logged[0] and outcome.library in logged[0]


def test_lean_norms_read_either_epsilon_name():
    """transformers 5.23 kept a Gemma 3n norm's epsilon as `eps`, 5.25 as `variance_epsilon`."""
    from gemfuse.tune.guests.lean_norms import epsilon

    class Old:
        eps = 1e-6

    class New:
        variance_epsilon = 1e-5

    assert (epsilon(Old()), epsilon(New()), epsilon(object())) == (1e-6, 1e-5, None)


# -- grouped attention ------------------------------------------------------------------------------------------------
def _tiny_causal_gemma3():
    import torch

    transformers = _transformers()
    torch.manual_seed(0)
    config = transformers.Gemma3TextConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=4,
                                           layer_types=["sliding_attention", "full_attention"])
    return transformers.Gemma3ForCausalLM(config).float()


def test_grouped_attention_steps_aside_when_the_librarys_attention_computes_otherwise(monkeypatch):
    import torch
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    from gemfuse.tune.guests.grouped_attention import use_grouped_attention

    model = _tiny_causal_gemma3()
    ids = torch.arange(1, 9).view(1, 8)
    expected = model(input_ids=ids).logits
    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def sharper(module, query, key, value, attention_mask, scaling=None, **kwargs):  # a release that scales anew
        return sdpa(module, query, key, value, attention_mask, scaling=2 * (scaling or query.shape[-1] ** -0.5), **kwargs)

    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._global_mapping, "sdpa", sharper)
    assert use_grouped_attention(model) is False
    assert model.config._attn_implementation == "sdpa"
    monkeypatch.undo()
    assert torch.equal(model(input_ids=ids).logits, expected)
    (outcome,) = patches.outcomes()
    assert outcome.patch == "grouped_attention" and not outcome.on and "output differs" in outcome.reason


def test_grouped_attention_steps_aside_when_the_mask_interface_is_gone(monkeypatch):
    import transformers.masking_utils

    from gemfuse.tune.guests.grouped_attention import use_grouped_attention

    model = _tiny_causal_gemma3()
    monkeypatch.delattr(transformers.masking_utils, "sdpa_mask")
    assert use_grouped_attention(model) is False
    assert "sdpa_mask" in patches.outcomes()[0].reason


def test_row_attention_steps_aside_when_the_library_lets_rows_see_each_other(monkeypatch):
    """A transformers that no longer reads rows from restarting positions attends the whole sequence: the row
    attention would then compute something else, so the library's SDPA stays."""
    import torch
    import transformers.masking_utils

    from gemfuse.tune.guests.row_attention import use_row_attention

    model = _tiny_causal_gemma3()
    monkeypatch.setattr(transformers.masking_utils, "find_packed_sequence_indices", lambda position_ids: None)
    assert use_row_attention(model) is False
    assert model.config._attn_implementation == "sdpa"
    (outcome,) = patches.outcomes()
    assert outcome.patch == "row_attention" and "output differs" in outcome.reason
    patches.forget()
    monkeypatch.undo()
    assert use_row_attention(model) is True and model.config._attn_implementation == "gemfuse_rows"
    ids, positions = torch.arange(1, 9).view(1, 8), torch.tensor([[0, 1, 2, 0, 1, 2, 3, 4]])
    alone = model(input_ids=ids[:, 3:], position_ids=positions[:, 3:]).logits
    assert torch.allclose(model(input_ids=ids, position_ids=positions).logits[:, 3:], alone, atol=1e-5)


# -- LoRA matmuls ------------------------------------------------------------------------------------------------------
def _lora_model():
    import torch
    from peft import LoraConfig, get_peft_model

    _transformers()
    torch.manual_seed(0)
    model = get_peft_model(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 4)),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["0", "1"]))
    for name, parameter in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(parameter)
    return model


def test_lora_matmuls_step_aside_when_peft_computes_otherwise(monkeypatch):
    import torch
    from peft.tuners.lora.layer import Linear

    from gemfuse.tune.guests.lora_matmuls import fuse_lora_layers

    model = _lora_model()
    x = torch.randn(3, 8)
    library = Linear.forward

    def scaled(self, x, *args, **kwargs):  # a release whose LoRA layer computes something else
        return library(self, x, *args, **kwargs) * 1.01

    monkeypatch.setattr(Linear, "forward", scaled)
    expected = model(x)
    assert fuse_lora_layers(model) == 0
    assert torch.equal(model(x), expected)
    assert "output differs" in patches.outcomes()[0].reason


def test_lora_matmuls_leave_a_layer_with_a_lora_bias_to_peft():
    import torch
    from peft import LoraConfig, get_peft_model

    from gemfuse.tune.guests.lora_matmuls import fuse_lora_layers

    _transformers()
    model = get_peft_model(torch.nn.Sequential(torch.nn.Linear(8, 8)),
                           LoraConfig(r=2, target_modules=["0"], lora_bias=True))
    assert fuse_lora_layers(model) == 0 and patches.outcomes()[0].on  # PEFT fits; this layer is not plain


# -- frozen-head loss -------------------------------------------------------------------------------------------------
def test_the_frozen_head_loss_steps_aside_for_a_model_whose_logits_are_not_its_heads(monkeypatch):
    import torch

    from gemfuse.tune.guests import frozen_head_parts, model_parts
    from gemfuse.tune.loss import full_logits_loss, supervised_loss

    model = _tiny_causal_gemma3()
    assert frozen_head_parts(model) is not None
    patches.forget()
    library = type(model).forward

    def rescaled(self, *args, **kwargs):  # a release that scales logits after the head
        out = library(self, *args, **kwargs)
        out.logits = out.logits * 0.5
        return out

    monkeypatch.setattr(type(model), "forward", rescaled)
    assert frozen_head_parts(model) is None
    assert "against the model's own" in patches.outcomes()[0].reason
    ids = torch.arange(1, 9).view(1, 8)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    theirs, count = full_logits_loss(model, batch)
    ours, _ = supervised_loss(model, batch, parts=model_parts(model))
    assert count == 7 and not torch.isclose(theirs, ours)  # the fallback is the model's own numbers


# -- whole runs ---------------------------------------------------------------------------------------------------------
MISFITS = ("gemfuse.tune.guests.lean_norms._misfit", "gemfuse.tune.guests.grouped_attention._misfit",
           "gemfuse.tune.guests.lora_matmuls._misfit", "gemfuse.tune.guests.frozen_head.head_misfit")


def _losses(run) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]


@pytest.mark.slow
@pytest.mark.parametrize("family", ["gemma3", "gemma3n", "gemma4"])
def test_a_run_with_every_patch_on_ends_where_the_librarys_own_code_ends(family, tmp_path, tiny_model, text_data,
                                                                          monkeypatch):
    from gemfuse.tune import train
    from test_tune import adapter_weights, assert_same_weights, tiny_config

    folder = tiny_model(family)
    patched = train(tiny_config(folder, text_data, tmp_path / "patched", max_steps=2))
    on = {o.patch for o in patches.outcomes() if o.on}
    assert on == {"lean_norms", "grouped_attention", "lora_matmuls", "frozen_head_loss"}, patches.outcomes()
    patches.forget()
    for target in MISFITS:
        monkeypatch.setattr(target, lambda *args: "forced by the test")
    library = train(tiny_config(folder, text_data, tmp_path / "library", max_steps=2))
    assert not any(o.on for o in patches.outcomes()) and len(patches.outcomes()) >= 4
    assert patched.steps == library.steps == 2
    first, second = _losses(tmp_path / "patched"), _losses(tmp_path / "library")
    assert len(first) == len(second) == 2
    assert first == pytest.approx(second, rel=1e-4)
    assert_same_weights(adapter_weights(tmp_path / "patched"), adapter_weights(tmp_path / "library"))
