"""Text rows encoded once and padded without the tokenizer give the very batches the collator makes (its padding
side, filler, mask and labels), so a run can release the tokenizer (its batches stay the same after); a row
longer than max_length is cut alone, never cutting the rows beside it."""

import pytest


@pytest.fixture(scope="module")
def gemma_target():
    from gemfuse.data.target import load_target

    return load_target("gemma3")


def _rows(tmp_path, lengths):
    import json

    from gemfuse.data.sources import read_rows

    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": " ".join(["word"] * n)},
        {"role": "assistant", "content": " ".join(["answer"] * (n // 2 + 1))}]}) + "\n" for n in lengths))
    return read_rows(str(path), "messages")


def test_padded_encodings_equal_the_collators_batch(tmp_path, gemma_target):
    import torch

    from gemfuse.data.collate import Collator

    collator = Collator(gemma_target, max_length=None)
    rows = _rows(tmp_path, [3, 11, 7, 20])
    expected = collator(rows)
    got = collator.pad([collator.encode(r) for r in rows])
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    assert (got["attention_mask"] == 0).any(), "the rows differ in length, so some are padded"


def test_a_row_past_max_length_is_cut_alone(tmp_path, gemma_target):
    from gemfuse.data.collate import IGNORE, Collator

    collator = Collator(gemma_target, max_length=40)
    short, long = _rows(tmp_path, [4, 60])
    alone = collator.encode(short)
    batch = collator.pad([collator.encode(short), collator.encode(long)])
    assert batch["input_ids"].shape[1] == 40
    kept = batch["attention_mask"][0].bool()
    assert batch["input_ids"][0][kept].tolist() == alone["input_ids"].tolist()
    assert (batch["labels"][0][kept] != IGNORE).sum() == (alone["labels"] != IGNORE).sum() > 0


def test_a_plan_of_text_rows_runs_on_after_the_tokenizer_is_released(tmp_path, gemma_target):
    from gemfuse.data.collate import Collator
    from gemfuse.data.target import Target
    from gemfuse.tune.batches import Plan

    # a Target of its own (released below) around the shared tokenizer
    target = Target(gemma_target.family, gemma_target.processor, gemma_target.source)
    collator = Collator(target, max_length=64)
    rows = _rows(tmp_path, [3, 11, 7, 20, 5])
    plan = Plan(rows, collator, batch_size=2)
    assert not plan.needs_tokenizer
    assert not Plan(rows, collator, batch_size=2, packing=True).needs_tokenizer
    before = [b["input_ids"].tolist() for b in plan.step_batches(1)]
    chat_template = target.chat_template
    loaded, released = tmp_path / "loaded", tmp_path / "released"
    loaded.mkdir(), released.mkdir()
    target.save(loaded)
    target.release()
    assert target.processor is None and target.chat_template == chat_template
    assert [b["input_ids"].tolist() for b in plan.step_batches(1)] == before
    target.save(released)  # what the adapter folder gets at the end of a run
    names = sorted(f.name for f in loaded.iterdir())
    assert names == sorted(f.name for f in released.iterdir()) and "tokenizer.json" in names
    assert all((released / n).read_bytes() == (loaded / n).read_bytes() for n in names), "the same files"
