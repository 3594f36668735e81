"""Padding-free batches (data.padding_free): a batch's text rows end to end as one sequence, positions restarting
at each row, give the loss and the gradients of the padded batch of the same rows (a float64 model), a row longer than
the sliding window included, on transformers' attention and on the CPU's grouped attention; a run trained on
them ends on the padded run's adapter."""

import json

import pytest

from gemfuse.errors import ConfigError
from test_tune import adapter_weights, assert_same_weights, tiny_config


def rows_file(path, lengths):
    path.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": " ".join(["What is the capital of France?"] * n)},
        {"role": "assistant", "content": " ".join(["Paris, they say."] * (n // 2 + 1))}]}) + "\n" for n in lengths))
    return path


def loss_and_grads(model, batch):
    from gemfuse.tune.loss import supervised_loss

    model.zero_grad(set_to_none=True)
    loss, count = supervised_loss(model, batch)
    loss.backward()
    return loss.detach(), count, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("grouped", [False, True], ids=["transformers-attention", "grouped-attention"])
def test_a_padding_free_batch_has_the_padded_batchs_loss_and_gradients(tmp_path, tiny_model, grouped):
    import torch

    from gemfuse._torchvision import import_transformers
    from gemfuse.data.collate import Collator
    from gemfuse.data.sources import read_rows
    from gemfuse.data.target import load_target
    from gemfuse.tune.attention import use_grouped_attention
    from gemfuse.tune.batches import Plan, supervised_count

    folder = tiny_model("gemma3")
    target = load_target(str(folder))
    rows = read_rows(str(rows_file(tmp_path / "rows.jsonl", [1, 9, 3, 2])), "messages")
    collator = Collator(target, max_length=512)
    padded = Plan(rows, collator, batch_size=4).step_batches(0)[0]
    free = Plan(rows, collator, batch_size=4, padding_free=True).step_batches(0)[0]
    assert free["input_ids"].shape[0] == 1 and "attention_mask" not in free
    assert free["input_ids"].numel() == int(padded["attention_mask"].sum()) < padded["input_ids"].numel()
    assert free["position_ids"].max() + 1 > 2 * 64, "a row passes the sliding window (64)"
    assert supervised_count(free) == supervised_count(padded)

    model = import_transformers().AutoModelForImageTextToText.from_pretrained(folder).double().train()
    if grouped:
        use_grouped_attention(model)
    loss_a, count_a, grads_a = loss_and_grads(model, padded)
    loss_b, count_b, grads_b = loss_and_grads(model, free)
    assert count_a == count_b and torch.allclose(loss_a, loss_b, rtol=1e-9, atol=0)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for name in grads_a:  # Gemma's norms compute in float32 even in a float64 model: float32's noise, no more
        scale = float(grads_a[name].abs().max())
        assert torch.allclose(grads_a[name], grads_b[name], rtol=1e-5, atol=1e-6 * scale), name


def test_a_padding_free_run_ends_on_the_padded_runs_adapter(tmp_path, tiny_model, text_data):
    from gemfuse.tune import train

    folder = tiny_model("gemma3")
    padded = train(tiny_config(folder, text_data, tmp_path / "padded", batch_size=4, max_steps=3))
    config = tiny_config(folder, text_data, tmp_path / "free", batch_size=4, max_steps=3)
    config.data.padding_free = True
    free = train(config)
    assert_same_weights(adapter_weights(padded.run), adapter_weights(free.run))
    from gemfuse.tune import load_tune_config

    both = {"model": str(folder), "data": {"train": str(text_data), "packing": True, "padding_free": True},
            "train": {"batch_size": 1}}
    with pytest.raises(ConfigError, match="choose one"):
        load_tune_config(None, [], base=both)
