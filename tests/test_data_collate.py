"""Collation per family: golden renders, labels on assistant tokens only, batches the real model classes accept,
length grouping, and packing without cross-contamination."""

import json

import pytest

from gemfuse.data.collate import IGNORE, Collator, length_grouped_batches, pack
from gemfuse.data.schema import read_jsonl
from gemfuse.data.target import load_target
from gemfuse.testing.media import write_png, write_wav

SYSTEM = {"role": "system", "content": "Be brief."}
CONVERSATIONS = {
    "single": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"}],
    "multi": [SYSTEM, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
              {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "It is 6."}],
    "image": [{"role": "user", "content": [{"type": "image", "path": "red.png"}, {"type": "text", "text": "Colour?"}]},
              {"role": "assistant", "content": "Red, mostly."}],
    "audio": [SYSTEM, {"role": "user", "content": [{"type": "audio", "path": "tone.wav"},
                                                   {"type": "text", "text": "Transcribe"}]},
              {"role": "assistant", "content": "A steady tone."}],
}
TAKES_AUDIO = {"gemma3": False, "gemma3n": True, "gemma4": True}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("collate")
    write_png(folder / "red.png")
    write_wav(folder / "tone.wav", rate=44_100, seconds=0.6)
    for name, messages in CONVERSATIONS.items():
        (folder / f"{name}.jsonl").write_text(json.dumps({"messages": messages}) + "\n")
    return folder


def examples(dataset, *names):
    return [next(read_jsonl(dataset / f"{name}.jsonl")) for name in names]


def assistant_texts(messages):
    return [m["content"] for m in messages if m["role"] == "assistant"]


@pytest.mark.parametrize("family", ["gemma3", "gemma3n", "gemma4"])
def test_labels_cover_exactly_the_assistant_turns(family, tiny_model, dataset):
    target = load_target(str(tiny_model(family)))
    names = [n for n in CONVERSATIONS if n != "audio" or TAKES_AUDIO[family]]
    batch = Collator(target)(examples(dataset, *names))
    tokenizer = target.tokenizer
    end_id = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    media_ids = Collator(target).media_ids
    for row, name in enumerate(names):
        ids, labels = batch["input_ids"][row].tolist(), batch["labels"][row].tolist()
        spans, current = [], []
        for token, label in zip(ids, labels, strict=True):
            if label != IGNORE:
                assert label == token and token not in media_ids
                current.append(token)
                if token == end_id:
                    spans.append(current)
                    current = []
        assert not current, "every trained span ends with the end-of-turn token"
        decoded = [tokenizer.decode(s, skip_special_tokens=True) for s in spans]
        assert decoded == assistant_texts(CONVERSATIONS[name]), name
        padding = [i for i, m in enumerate(batch["attention_mask"][row].tolist()) if m == 0]
        assert all(labels[i] == IGNORE for i in padding)


@pytest.mark.parametrize("family", ["gemma3", "gemma3n", "gemma4"])
def test_the_model_trains_on_the_batch(family, tiny_model, dataset):
    import torch
    from transformers import AutoModelForImageTextToText

    folder = tiny_model(family)
    target = load_target(str(folder))
    names = ["image", "multi"] + (["audio"] if TAKES_AUDIO[family] else [])
    batch = Collator(target)(examples(dataset, *names))
    model = AutoModelForImageTextToText.from_pretrained(folder)
    model.train()
    loss = model(**batch).loss
    assert torch.isfinite(loss) and loss.item() > 0
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_golden_renders(tiny_model):
    messages = [{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Colour?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "Red."}]}]
    expected = {
        "gemma3": "<bos><start_of_turn>user\nBe brief.\n\n<start_of_image>Colour?<end_of_turn>\n"
                  "<start_of_turn>model\nRed.<end_of_turn>\n",
        "gemma3n": "<bos><start_of_turn>user\nBe brief.\n\n<image_soft_token>Colour?<end_of_turn>\n"
                   "<start_of_turn>model\nRed.<end_of_turn>\n",
    }
    expected["gemma4"] = expected["gemma3n"]
    for family, text in expected.items():
        assert load_target(str(tiny_model(family))).render(messages) == text, family
    real = load_target("gemma3")  # the real Gemma tokenizer with Google's Gemma 3 template
    assert real.render(messages) == expected["gemma3"]
    assert real.markers == ("<start_of_turn>model\n", "<end_of_turn>")


def test_real_gemma_tokenizer_labels(dataset):
    target = load_target("gemma3")
    batch = Collator(target)(examples(dataset, "single", "multi"))
    for row, name in enumerate(("single", "multi")):
        trained = [t for t, lab in zip(batch["input_ids"][row].tolist(), batch["labels"][row].tolist(), strict=True)
                   if lab != IGNORE]
        text = target.tokenizer.decode(trained, skip_special_tokens=True)
        assert text == "".join(assistant_texts(CONVERSATIONS[name]))


def test_preview_shows_trained_spans_and_media(dataset, tiny_model):
    import os
    import subprocess
    import sys

    gemfuse = os.path.join(os.path.dirname(sys.executable), "gemfuse")
    result = subprocess.run([gemfuse, "data", "preview", str(dataset / "image.jsonl"), "--model",
                             str(tiny_model("gemma3n"))], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "[[Red, mostly.<end_of_turn>]]" in result.stdout and "<18 media tokens>" in result.stdout
    assert "image: 16 placeholder tokens, pixel_values (1, 3, 64, 64)" in result.stdout


def test_truncation_never_cuts_media(dataset, tiny_model):
    from gemfuse.errors import MessageError

    collator = Collator(load_target(str(tiny_model("gemma3"))), max_length=12)
    with pytest.raises(MessageError, match="image.jsonl:1: truncating to 12 tokens would cut media"):
        collator(examples(dataset, "image"))
    assert Collator(load_target(str(tiny_model("gemma3"))), max_length=12)(examples(dataset, "single"))[
        "input_ids"].shape[1] == 12


def test_length_grouped_batches_are_a_permutation_with_little_padding():
    lengths = [((i * 37) % 100) + 1 for i in range(400)]
    batches = length_grouped_batches(lengths, 8, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(400))
    waste = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    naive = sum(max(lengths[i] for i in range(s, min(s + 8, 400))) * 8 - sum(lengths[s:s + 8]) for s in range(0, 400, 8))
    assert waste < naive / 3
    assert batches == length_grouped_batches(lengths, 8, seed=1) != length_grouped_batches(lengths, 8, seed=2)


def test_packing_keeps_rows_apart(tiny_model):
    import torch
    from transformers import AutoModelForImageTextToText

    folder = tiny_model("gemma3")
    tokenizer = load_target(str(folder)).tokenizer
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    long = " ".join(["The capital of France is Paris, they say."] * 12)  # longer than the sliding window (64)
    rows = [{"input_ids": (ids := tokenizer(text).input_ids), "labels": ids}
            for text in ("Hello there, friend.", long, "Short.")]
    assert len(rows[1]["input_ids"]) > 2 * model.config.text_config.sliding_window
    packs = pack(rows, 512)
    assert len(packs) == 1 and "attention_mask" not in packs[0]
    packed = packs[0]
    with torch.no_grad():
        logits = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"],
                       token_type_ids=torch.zeros_like(packed["input_ids"])).logits[0]
        offset = 0
        for row in sorted(rows, key=lambda r: -len(r["input_ids"])):
            n = len(row["input_ids"])
            alone = model(input_ids=torch.tensor([row["input_ids"]]),
                          token_type_ids=torch.zeros(1, n, dtype=torch.long)).logits[0]
            assert torch.allclose(logits[offset:offset + n], alone, atol=1e-5), "no attention across rows"
            assert packed["labels"][0, offset].item() == IGNORE, "a row's first token is not predicted from another"
            offset += n


def test_a_padded_gemma3n_batch_has_finite_gradients(tiny_model, media):
    """The pad token's embedding is zero and Gemma 3n takes a square root of each position's mean square: padding
    positions carry a real token, so a padded batch's gradients stay finite and the loss is unchanged."""
    import torch
    from transformers import AutoModelForImageTextToText

    from gemfuse.data.collate import Collator
    from gemfuse.data.schema import Example, Turn
    from gemfuse.data.target import load_target
    from gemfuse.tune.loss import supervised_loss

    folder = tiny_model("gemma3n")
    rows = [Example(turns=[Turn("user", ["Say something."]), Turn("assistant", [answer])], file="t", line=i)
            for i, answer in enumerate(["Yes.", "A much longer answer than the first one, to pad the batch."])]
    collator = Collator(load_target(str(folder)))
    batch = collator(rows)
    assert not bool(batch["attention_mask"].all()), "the batch is padded"
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    model.train()
    loss, _ = supervised_loss(model, batch)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    padded = dict(batch, input_ids=batch["input_ids"].masked_fill(batch["attention_mask"] == 0,
                                                                  collator.target.tokenizer.pad_token_id))
    model.zero_grad()
    same, _ = supervised_loss(model, padded)
    assert torch.allclose(same, loss)  # masked positions change nothing the loss sees
    same.backward()
    assert not all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None), \
        "with the pad token itself the gradients are NaN: the case this guards"
