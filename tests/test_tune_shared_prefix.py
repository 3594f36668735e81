"""Shared prefixes (data.shared_prefix): the rows of a batch that begin alike (a system prompt, tool definitions)
run that beginning once, its cache repeated for every row, and give the padded batch's loss and gradients (a
float64 model), for each Gemma family, on transformers' attention and the CPU's grouped attention, a prefix
longer than the sliding window included; a run ends on the padded run's adapter; the layout never puts a
supervised token, or the token after the prefix, inside the prefix."""

import json

import pytest

from test_tune import adapter_weights, assert_same_weights, tiny_config
from test_tune_padding_free import loss_and_grads

pytestmark = pytest.mark.heavy

SYSTEM = " ".join(["You answer questions about capitals, briefly and politely."] * 12)  # past the window (64)
ROWS = [("What is the capital of France?", "Paris."), ("And of Italy, please?", "Rome, of course."),
        ("Spain?", "Madrid."), ("What is the capital of Portugal, if you know it?", "Lisbon.")]


def rows_file(path, system=SYSTEM):
    path.write_text("".join(json.dumps({"messages": [
        {"role": "system", "content": system}, {"role": "user", "content": q},
        {"role": "assistant", "content": a}]}) + "\n" for q, a in ROWS * 2))
    return path


def encoded_rows(folder, path):
    from gemfuse.data.collate import Collator
    from gemfuse.data.sources import read_rows
    from gemfuse.data.target import load_target

    collator = Collator(load_target(str(folder)), max_length=1024)
    return collator, [collator.encode(e) for e in read_rows(str(path), "messages")[:4]]


@pytest.mark.parametrize(("family", "attention"), [("gemma3", "sdpa"), ("gemma3", "grouped"), ("gemma3n", "sdpa"),
                                                   ("gemma4", "grouped")])
def test_a_shared_prefix_batch_has_the_padded_batchs_loss_and_gradients(tmp_path, tiny_model, family, attention):
    import torch

    from gemfuse._torchvision import import_transformers
    from gemfuse.tune.batches import PREFIX, shared_prefix, supervised_count
    from gemfuse.tune.guests.grouped_attention import use_grouped_attention
    from gemfuse.tune.guests.guard import forget

    folder = tiny_model(family)
    collator, rows = encoded_rows(folder, rows_file(tmp_path / "rows.jsonl"))
    padded = collator.pad(rows)
    shared = shared_prefix(rows, collator.filler)
    assert shared is not None
    length = shared[PREFIX + "input_ids"].shape[1]
    assert length > 64, "the prefix passes the sliding window"
    assert shared["input_ids"].shape[1] + length == padded["input_ids"].shape[1]
    assert supervised_count(shared) == supervised_count(padded) > 0

    model = import_transformers().AutoModelForImageTextToText.from_pretrained(folder).double().train()
    forget()  # checked for this model, not for a quantised one an earlier test of this process checked
    assert attention == "sdpa" or use_grouped_attention(model), "the attention fits this transformers"
    loss_a, count_a, grads_a = loss_and_grads(model, padded)  # the loss sums in float32: its noise, ~5e-7
    loss_b, count_b, grads_b = loss_and_grads(model, shared)
    assert count_a == count_b and torch.allclose(loss_a, loss_b, rtol=2e-6, atol=0), (loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys() and grads_a
    # Float32 parts (norms, the loss) even in a float64 model: up to 8e-5 of a tensor's norm here, where the same
    # rows as two padded batches of two differ by 3e-5 on Gemma 3n and 4; a cache cut from the prefix gives ~1.
    for name in grads_a:
        scale = float(grads_a[name].norm())
        assert float((grads_a[name] - grads_b[name]).norm()) <= 2e-4 * scale, name
    if family == "gemma3" and attention == "sdpa":  # the model's own logits (a head the frozen-head loss does not fit)
        from gemfuse.tune.loss import full_logits_loss

        with torch.no_grad():
            whole, shared_whole = full_logits_loss(model, padded), full_logits_loss(model, shared)
        assert whole[1] == shared_whole[1] == count_a and torch.allclose(whole[0], shared_whole[0], rtol=2e-6)
        assert torch.allclose(whole[0], loss_a, rtol=1e-5)


def test_the_prefix_stops_before_the_first_supervised_token_and_short_ones_are_not_shared(tmp_path, tiny_model):
    import torch

    from gemfuse.data.collate import IGNORE
    from gemfuse.tune.batches import PREFIX, shared_prefix

    collator, rows = encoded_rows(tiny_model("gemma3"), rows_file(tmp_path / "rows.jsonl"))
    shared = shared_prefix(rows, collator.filler)
    length = shared[PREFIX + "input_ids"].shape[1]
    for i, row in enumerate(rows):
        assert torch.equal(row["input_ids"][:length], shared[PREFIX + "input_ids"][0])
        assert bool((row["labels"][:length + 1] == IGNORE).all()), "no supervised token in the prefix, nor after it"
        rest = len(row["input_ids"]) - length
        assert torch.equal(shared["input_ids"][i, :rest], row["input_ids"][length:])
        assert int(shared["attention_mask"][i].sum()) == len(row["input_ids"])
    # the same first row twice: everything before the answer is shared, the answer is not
    twice = shared_prefix([rows[0], rows[0]], collator.filler)
    first_supervised = int((rows[0]["labels"] != IGNORE).nonzero()[0])
    assert twice[PREFIX + "input_ids"].shape[1] == first_supervised - 1
    # a short system prompt: too little to be worth a second forward; one row: nothing to share
    _, short = encoded_rows(tiny_model("gemma3"), rows_file(tmp_path / "short.jsonl", system="Be brief."))
    assert shared_prefix(short, collator.filler) is None
    assert shared_prefix(rows[:1], collator.filler) is None


def test_a_shared_prefix_run_ends_on_the_padded_runs_adapter_and_steps_aside_where_it_cannot(tmp_path, tiny_model,
                                                                                            monkeypatch):
    from gemfuse.tune import loss, train
    from gemfuse.tune.batches import PREFIX
    from gemfuse.tune.setup import shares_prefixes

    folder, data = tiny_model("gemma3"), rows_file(tmp_path / "rows.jsonl")
    config = tiny_config(folder, data, tmp_path / "padded", max_steps=3)
    config.data.shared_prefix = False
    padded = train(config)
    seen, forward = [], loss.forward

    def recorded(module, inputs, batch):
        seen.append(any(key.startswith(PREFIX) for key in batch))
        return forward(module, inputs, batch)

    monkeypatch.setattr(loss, "forward", recorded)
    shared = train(tiny_config(folder, data, tmp_path / "shared", max_steps=3))
    assert seen == [True] * 3, "every step's batch shared its prefix"
    assert_same_weights(adapter_weights(padded.run), adapter_weights(shared.run))
    assert shares_prefixes(tiny_config(folder, data, tmp_path / "x"), checkpointing=False, sharded=False)
    assert not shares_prefixes(tiny_config(folder, data, tmp_path / "x"), checkpointing=True, sharded=False)
    assert not shares_prefixes(tiny_config(folder, data, tmp_path / "x"), checkpointing=False, sharded=True)
    assert not shares_prefixes(tiny_config(folder, data, tmp_path / "x", compile=True), False, False)
