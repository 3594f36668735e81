"""QLoRA: the frozen base loaded in bitsandbytes 4-bit NF4 (or 8-bit), LoRA trained on top. bitsandbytes runs its
4-bit and 8-bit layers on a CPU too, so this runs in CI; on a CUDA machine the same tests run on the GPU. A tiny
Gemma 3 learns, saves an adapter that merges and generates; Gemma 3n and 4 bases of both kinds train."""

import importlib.util
import json

import pytest

pytestmark = [pytest.mark.heavy,
              pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs bitsandbytes")]


def _config(tmp_path, folder, kind, steps, name="run"):
    from gemfuse.tune import load_tune_config

    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"{2 * i}."}]} for i in range(16)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return load_tune_config(None, [], base={
        "model": str(folder), "out": str(tmp_path / name), "data": {"train": str(data)}, "lora": {"r": 8, "alpha": 16},
        "train": {"max_steps": steps, "batch_size": 8, "lr": 1e-2, "quantize": kind}, "run": {"progress": False}})


def _losses(run) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]


def test_qlora_learns_and_its_adapter_merges_and_generates(tmp_path, tiny_model):
    from gemfuse.tune import train
    from gemfuse.tune.export import export

    result = train(_config(tmp_path, tiny_model("gemma3"), "4bit", 40))
    losses = _losses(result.run)
    assert losses[-1] < losses[0] / 2, losses
    manifest = json.loads((result.run / "manifest.json").read_text())
    assert manifest["config"]["train"]["quantize"] == "4bit" and manifest["lora_modules"] > 0
    full = sum(p.stat().st_size for p in tiny_model("gemma3").glob("*.safetensors")) / 2**30
    assert manifest["memory_estimate"]["weights_gib"] < full, "the base is held in 4-bit"
    assert (result.adapter / "adapter_model.safetensors").is_file()
    merged = export(result.run, "merged", check_prompt="What is 3 plus 3?")
    assert (merged.path / "config.json").is_file() and isinstance(merged.sample, str)


@pytest.mark.parametrize("family,kind", [("gemma3", "8bit"), ("gemma3n", "4bit"), ("gemma3n", "8bit"),
                                         ("gemma4", "4bit"), ("gemma4", "8bit")])
def test_every_family_trains_on_a_4bit_or_8bit_base(family, kind, tmp_path, tiny_model):
    import math

    from gemfuse.tune import train

    result = train(_config(tmp_path, tiny_model(family), kind, 3))
    losses = _losses(result.run)
    assert result.steps == 3 and len(losses) == 3 and all(math.isfinite(x) for x in losses), losses
    assert losses[-1] < losses[0], losses
