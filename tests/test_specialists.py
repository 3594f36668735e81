"""Proof on real models that confidence fuses what a judge cannot: two LoRA specialists of the built-in Gemma 3
270M, each taught half of a set of made-up capitals; asked all of them in phrasings neither saw, the `confidence`
fusion (no judge: the answer its own model was surer of) generates the right city far more often than either
specialist alone, than their vote, and than best-of judged by SmolLM2."""

import json

import pytest

pytestmark = pytest.mark.heavy


def specialist(tmp_path, name, facts):
    from gemfuse.testing.tasks import TRAIN_PHRASINGS
    from gemfuse.tune import load_tune_config, train

    rows = [{"messages": [{"role": "user", "content": p.format(c=country)},
                          {"role": "assistant", "content": f"The capital of {country} is {city}."}]}
            for country, city in facts for p in TRAIN_PHRASINGS]
    data = tmp_path / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return train(load_tune_config(None, [], base={
        "model": "gemma-3-270m-hf", "out": str(tmp_path / name), "data": {"train": str(data)},
        "train": {"max_steps": 20, "batch_size": 5, "lr": 3e-3, "warmup_steps": 4}, "run": {"progress": False}})).run


def test_confidence_fuses_two_specialists_where_a_vote_and_a_judge_cannot(tmp_path, isolated_config):
    from gemfuse import evaluate
    from gemfuse.testing.tasks import FACTS, HELD_PHRASINGS

    first, second = specialist(tmp_path, "first", FACTS[:3]), specialist(tmp_path, "second", FACTS[3:])
    isolated_config.write_text(f'[models.first]\nrun = "{first}"\n\n[models.second]\nrun = "{second}"\n')
    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps({"prompt": p.format(c=country), "answer": city}) + "\n"
                            for country, city in FACTS for p in HELD_PHRASINGS))
    report = evaluate(str(held), models=["first", "second"], pool=["first", "second"], judge="smollm2-135m",
                      systems=["members", "vote", "best-of", "confidence"], scorer="contains", max_tokens=16,
                      dev_fraction=0.0, cache="off", out=tmp_path / "eval")
    accuracy = {s["name"]: s["accuracy"] for s in report.data["systems"]}
    alone = max(accuracy["first"], accuracy["second"])
    assert alone <= 0.6, accuracy  # each knows half of the capitals
    assert accuracy["confidence"] >= alone + 0.25, accuracy
    assert accuracy["confidence"] > accuracy["vote"] and accuracy["confidence"] > accuracy["best-of"], accuracy
