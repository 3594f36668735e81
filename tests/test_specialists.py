"""Proof on real models that confidence fuses what a judge cannot: two LoRA specialists of the built-in Gemma 3
270M, each taught half of a set of made-up capitals; asked all of them in phrasings neither saw, the `confidence`
fusion (no judge: the answer its own model was surer of) generates the right city far more often than either
specialist alone, than their vote, and than best-of judged by SmolLM2."""

import json

import pytest

pytestmark = pytest.mark.heavy


def specialist(tmp_path, name, facts):
    """A specialist trained by `gemfuse tune` in its own process, as a user runs it (its memory is its own)."""
    import os
    import subprocess
    import sys

    from gemfuse.testing.tasks import TRAIN_PHRASINGS

    rows = [{"messages": [{"role": "user", "content": p.format(c=country)},
                          {"role": "assistant", "content": f"The capital of {country} is {city}."}]}
            for country, city in facts for p in TRAIN_PHRASINGS]
    data = tmp_path / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = tmp_path / f"{name}.toml"
    config.write_text(f'model = "gemma-3-270m-hf"\nout = "{tmp_path / name}"\n\n[data]\ntrain = "{data}"\n\n'
                      "[train]\nmax_steps = 20\nbatch_size = 5\nlr = 3e-3\nwarmup_steps = 4\n\n"
                      "[run]\nprogress = false\n")
    gemfuse = os.path.join(os.path.dirname(sys.executable), "gemfuse")
    done = subprocess.run([gemfuse, "tune", str(config)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return tmp_path / name


def test_the_memory_estimate_and_the_plan_hold_against_the_measured_peak(first_specialist):
    """The tuner's estimate before the first step, and `gemfuse plan` for the same rows and batch, within 20% of
    the peak resident memory the run reached (VmHWM from its start)."""
    from gemfuse.weights.plan import plan
    from gemfuse.weights.shape import read_shape

    manifest = json.loads((first_specialist / "manifest.json").read_text())
    measured = manifest["result"]["memory"]
    assert "from the run's start" in measured["measured_by"]
    assert 0.8 <= measured["estimate_bytes"] / measured["peak_bytes"] <= 1.2, measured
    longest = manifest["memory_estimate"]["longest_row_tokens"]
    planned = plan(read_shape("gemma-3-270m-hf"), device="cpu", context=longest, batch=5, train="lora")
    assert 0.8 <= planned.rows[0].needs.total / measured["peak_bytes"] <= 1.2, (planned.as_dict(), measured)


@pytest.fixture(scope="module")
def first_specialist(tmp_path_factory):
    from gemfuse.testing.tasks import FACTS

    return specialist(tmp_path_factory.mktemp("specialists"), "first", FACTS[:3])


def test_confidence_fuses_two_specialists_where_a_vote_and_a_judge_cannot(first_specialist, tmp_path,
                                                                         isolated_config):
    from gemfuse import evaluate
    from gemfuse.testing.tasks import FACTS, HELD_PHRASINGS

    first, second = first_specialist, specialist(tmp_path, "second", FACTS[3:])
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
