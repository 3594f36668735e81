"""Padding-free batches (data.padding_free): a batch's text rows end to end as one sequence, positions restarting
at each row, give the loss and the gradients of the padded batch of the same rows (a float64 model), a row longer than
the sliding window included, on transformers' attention, the CPU's grouped attention and the accelerators' row
attention (each row's block alone to SDPA); a run trained on them ends on the padded run's adapter."""

import contextlib
import json

import pytest

from gemfuse.errors import ConfigError
from test_tune import adapter_weights, assert_same_weights, tiny_config


def rows_file(path, lengths):
    path.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": " ".join(["What is the capital of France?"] * n)},
        {"role": "assistant", "content": " ".join(["Paris, they say."] * (n // 2 + 1))}]}) + "\n" for n in lengths))
    return path


@contextlib.contextmanager
def sdpa_calls():
    """The key lengths of SDPA's calls while inside."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    sdpa, calls = ALL_ATTENTION_FUNCTIONS["sdpa"], []

    def counted(module, query, key, *args, **kwargs):
        calls.append(key.shape[2])
        return sdpa(module, query, key, *args, **kwargs)

    mapping = ALL_ATTENTION_FUNCTIONS._global_mapping  # item assignment would shadow it for the whole process
    mapping["sdpa"] = counted
    try:
        yield calls
    finally:
        mapping["sdpa"] = sdpa


def loss_and_grads(model, batch):
    from gemfuse.tune.loss import supervised_loss

    model.zero_grad(set_to_none=True)
    loss, count = supervised_loss(model, batch)
    loss.backward()
    return loss.detach(), count, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("attention", ["sdpa", "grouped", "rows"])
def test_a_padding_free_batch_has_the_padded_batchs_loss_and_gradients(tmp_path, tiny_model, attention):
    import torch

    from gemfuse._torchvision import import_transformers
    from gemfuse.data.collate import Collator
    from gemfuse.data.sources import read_rows
    from gemfuse.data.target import load_target
    from gemfuse.tune.batches import Plan, supervised_count
    from gemfuse.tune.guests.grouped_attention import use_grouped_attention
    from gemfuse.tune.guests.row_attention import use_row_attention

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
    loss_a, count_a, grads_a = loss_and_grads(model, padded)
    switch = {"grouped": use_grouped_attention, "rows": use_row_attention}.get(attention)
    assert switch is None or switch(model), "the attention fits this transformers"
    with sdpa_calls() as calls:
        loss_b, count_b, grads_b = loss_and_grads(model, free)
    if attention == "rows":  # each row's own block went to SDPA, never the whole sequence
        rows = int((free["position_ids"] == 0).sum())
        assert calls and max(calls) == int(free["position_ids"].max()) + 1 < free["input_ids"].shape[1]
        assert len(calls) == rows * model.config.text_config.num_hidden_layers
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


def flash_contract(query, key, value, cu_q, cu_k, max_q, max_k, *, scale, window_size, enable_gqa):
    """torch's varlen_attn as its documentation states it, on a CPU: (tokens, heads, dim) rows cut at cu_q, the
    query at i attending keys i - left .. i + right of its own row."""
    import torch

    left, right = window_size
    outs = []
    for s, e in zip(cu_q.tolist()[:-1], cu_q.tolist()[1:], strict=True):
        q, k, v = (t[s:e].transpose(0, 1) for t in (query, key, value))
        if enable_gqa:
            k, v = (t.repeat_interleave(q.shape[0] // t.shape[0], 0) for t in (k, v))
        i, j = torch.arange(e - s)[:, None], torch.arange(e - s)[None, :]
        allowed = (j <= i + right) & ((j >= i - left) if left >= 0 else True)
        scores = (q @ k.transpose(1, 2)) * scale
        outs.append((scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v).transpose(0, 1))
    return torch.cat(outs)


def test_the_flash_kernel_call_gives_the_padded_loss(tmp_path, tiny_model, monkeypatch):
    """The call row_attention makes to the flash kernel (layouts, row offsets, scale, the sliding window in the
    kernel's convention, grouped heads), run against this test's reading of the kernel's documented contract
    (a stand-in written here, on a CPU): it proves the call matches that reading, not the kernel itself;
    tests/test_tune_cuda.py meets the real kernel on a GPU."""
    import torch

    from gemfuse._torchvision import import_transformers
    from gemfuse.data.collate import Collator
    from gemfuse.data.sources import read_rows
    from gemfuse.data.target import load_target
    from gemfuse.tune.batches import Plan
    from gemfuse.tune.guests import row_attention

    folder = tiny_model("gemma3")
    rows = read_rows(str(rows_file(tmp_path / "rows.jsonl", [1, 9, 3, 2])), "messages")
    collator = Collator(load_target(str(folder)), max_length=512)
    padded = Plan(rows, collator, batch_size=4).step_batches(0)[0]
    free = Plan(rows, collator, batch_size=4, padding_free=True).step_batches(0)[0]
    model = import_transformers().AutoModelForImageTextToText.from_pretrained(folder).double().train()
    loss_a, _, grads_a = loss_and_grads(model, padded)
    assert row_attention.use_row_attention(model)
    calls = []
    monkeypatch.setattr(row_attention, "varlen_fits", lambda *a: True)
    monkeypatch.setattr(row_attention, "varlen_kernel", lambda: lambda *a, **k: calls.append(k) or flash_contract(*a, **k))
    loss_b, _, grads_b = loss_and_grads(model, free)
    assert [k["window_size"] for k in calls] == [(63, 0), (63, 0)] and all(k["enable_gqa"] for k in calls)
    assert torch.allclose(loss_a, loss_b, rtol=1e-9, atol=0)
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], rtol=1e-5, atol=1e-6 * float(grads_a[name].abs().max()))
