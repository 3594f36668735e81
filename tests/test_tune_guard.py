"""A run never trains on NaN: a non-finite step is skipped with the weights untouched, a streak of them stops the
run as diverged with the reason in the manifest, and no adapter of NaNs is ever saved."""

import json

import pytest

from gemfuse.tune import DivergedError, train
from gemfuse.tune.checkpoint import checkpoints
from test_tune import adapter_weights, tiny_config


def poison_steps(monkeypatch, bad_steps: set[int], micro_batches_per_step: int = 1) -> None:
    """Make the loss NaN on the given optimizer steps (1-based), as a diverging forward pass would."""
    import gemfuse.tune.setup as setup_module

    real = setup_module.supervised_loss
    calls = {"n": 0}

    def poisoned(model, batch, parts=None):
        loss, count = real(model, batch, parts=parts)
        if model.training:
            calls["n"] += 1
            if (calls["n"] - 1) // micro_batches_per_step + 1 in bad_steps:
                loss = loss * float("nan")
        return loss, count

    monkeypatch.setattr(setup_module, "supervised_loss", poisoned)


def finite(weights: dict) -> bool:
    import torch

    return all(bool(torch.isfinite(v).all()) for v in weights.values())


def test_a_non_finite_step_is_skipped_and_leaves_the_weights_as_they_were(tmp_path, tiny_model, text_data,
                                                                           monkeypatch):
    import torch

    folder = tiny_model("gemma3")
    one = train(tiny_config(folder, text_data, tmp_path / "one", max_steps=1, schedule="constant"))
    poison_steps(monkeypatch, {2})
    two = train(tiny_config(folder, text_data, tmp_path / "two", max_steps=2, schedule="constant"))
    assert not two.interrupted and two.adapter is not None and two.skipped_steps == 1
    a, b = adapter_weights(one.run), adapter_weights(two.run)
    assert finite(b) and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the skipped step changed nothing
    logged = [json.loads(line) for line in (two.run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged if "skipped" in m] == [2] and "nan" in logged[-1]["skipped"]
    assert [m["step"] for m in logged if "loss" in m] == [1] and "grad_norm" in logged[0]
    manifest = json.loads((two.run / "manifest.json").read_text())
    assert manifest["status"] == "done" and manifest["result"]["skipped_steps"] == 1


def test_a_streak_of_non_finite_steps_stops_the_run_and_keeps_the_last_checkpoint(tmp_path, tiny_model, text_data,
                                                                                monkeypatch):
    poison_steps(monkeypatch, set(range(3, 100)), micro_batches_per_step=2)
    config = tiny_config(tiny_model("gemma3"), text_data, tmp_path / "run", max_steps=20, batch_size=2, grad_accum=2,
                         max_skipped_steps=3)
    config.run.save_every = 1
    config.run.keep = 5
    with pytest.raises(DivergedError, match=r"steps 3, 4, 5 .*not finite.*train\.lr") as excinfo:
        train(config)
    run = tmp_path / "run"
    assert "step-000002" in str(excinfo.value)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "diverged" in manifest["error"]
    assert manifest["result"]["steps"] == 5 and manifest["result"]["adapter"] is None
    assert not (run / "adapter").exists()
    saved = checkpoints(run)
    assert [p.name for p in saved] == ["step-000001", "step-000002"]
    from safetensors.torch import load_file

    assert finite(load_file(str(saved[-1] / "adapter_model.safetensors")))


def test_a_real_divergence_stops_without_saving_an_adapter(tmp_path, tiny_model, text_data):
    """No injection: a learning rate far too high really overflows the weights."""
    config = tiny_config(tiny_model("gemma3"), text_data, tmp_path / "run", max_steps=40, lr=1e30,
                         max_grad_norm=None, schedule="constant")
    with pytest.raises(DivergedError):
        train(config)
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "failed"
    assert not (tmp_path / "run" / "adapter").exists()


def test_a_learning_rate_typo_stops_the_run_with_its_reason(tmp_path, tiny_model, text_data):
    """lr 1e6 (a typo away from 1e-6) stops the run with the reason and the fix. A tiny random Gemma overflows to NaN
    on the way (the real Gemma 3 270M stays finite, its loss far above where it began: the toy loop's test and
    test_drift_* hold that rule); either way the run ends diverged, naming the learning rate, with no adapter."""
    config = tiny_config(tiny_model("gemma3"), text_data, tmp_path / "run", max_steps=30, lr=1e6, schedule="constant")
    with pytest.raises(DivergedError, match=r"training diverged.*train\.lr \(now 1e\+06"):
        train(config)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["result"]["steps"] < 30
    assert not (tmp_path / "run" / "adapter").exists()


def test_the_manifest_reports_the_peak_memory_beside_the_estimate(tmp_path, tiny_model, text_data):
    from gemfuse.memory import process_peak_bytes

    result = train(tiny_config(tiny_model("gemma3"), text_data, tmp_path / "run", max_steps=2))
    memory = json.loads((result.run / "manifest.json").read_text())["result"]["memory"]
    high_water = process_peak_bytes() / 2**30
    assert 0.05 < memory["peak_gib"] <= high_water + 1e-3  # within the process's own high-water mark
    assert memory["estimate_gib"] == round(memory["estimate_bytes"] / 2**30, 3) > 0
    assert memory["peak_gib"] == round(memory["peak_bytes"] / 2**30, 3)
    assert memory["estimate_over_peak"] == round(memory["estimate_bytes"] / memory["peak_bytes"], 3)
    assert "VmHWM" in memory["measured_by"]


@pytest.mark.parametrize("room_gib,expected", [(64.0, False), (0.001, True)])
def test_auto_checkpointing_follows_the_memory_estimate(room_gib, expected, tmp_path, tiny_model, text_data,
                                                        monkeypatch):
    """gradient_checkpointing = "auto" (the default): off when the run fits with room, on when it would not."""
    import gemfuse.tune.memory as memory

    monkeypatch.setattr(memory, "available_memory", lambda device: (int(room_gib * 2**30), "RAM"))
    result = train(tiny_config(tiny_model("gemma3"), text_data, tmp_path / "run", max_steps=2))
    manifest = json.loads((result.run / "manifest.json").read_text())
    assert manifest["config"]["train"]["gradient_checkpointing"] == "auto"
    assert manifest["gradient_checkpointing"] is expected and result.steps == 2
    from gemfuse.tune.setup import setup

    made = setup(tiny_config(tiny_model("gemma3"), text_data, tmp_path / "again", max_steps=2))
    assert any(getattr(m, "gradient_checkpointing", False) is True for m in made.model.modules()) is expected
