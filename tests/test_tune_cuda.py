"""The tuner on a CUDA GPU: bf16 by default, and QLoRA (4-bit NF4 base, bitsandbytes). Skipped without one."""

import importlib.util

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.heavy, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_cuda_trains_in_bf16_and_learns(tmp_path, tiny_model):
    from gemfuse.testing.tasks import colour_task
    from gemfuse.tune import load_tune_config, train
    from gemfuse.tune.base import training_dtype

    assert training_dtype("cuda", "auto") == torch.bfloat16
    task = colour_task(tmp_path / "task")
    config = load_tune_config(None, [], base={
        "model": str(tiny_model("gemma3")), "out": str(tmp_path / "run"), "data": {"train": str(task.train)},
        "lora": {"r": 8, "alpha": 16, "targets": "language+vision"},
        "train": {"max_steps": 60, "batch_size": 8, "lr": 1e-2}, "run": {"progress": False}})
    result = train(config)
    import json

    manifest = json.loads((result.run / "manifest.json").read_text())
    assert manifest["device"] == "cuda" and manifest["dtype"] == "bfloat16"
    assert result.train_loss < 0.2, result.train_loss


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs bitsandbytes")
def test_qlora_four_bit_base_trains(tmp_path, tiny_model):
    import json

    from gemfuse.tune import load_tune_config, train

    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i}?"},
                          {"role": "assistant", "content": f"{2 * i}."}]} for i in range(16)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = load_tune_config(None, [], base={
        "model": str(tiny_model("gemma3")), "out": str(tmp_path / "run"), "data": {"train": str(data)},
        "lora": {"r": 8, "alpha": 16}, "train": {"max_steps": 40, "batch_size": 8, "lr": 1e-2, "quantize": "4bit"},
        "run": {"progress": False}})
    result = train(config)
    losses = [json.loads(line)["loss"] for line in (result.run / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0] / 2, losses
    manifest = json.loads((result.run / "manifest.json").read_text())
    assert manifest["config"]["train"]["quantize"] == "4bit"
    assert manifest["memory_estimate"]["weights_gib"] < 0.01
    assert (result.adapter / "adapter_model.safetensors").is_file()
