"""The tuner on a CUDA GPU: bf16 by default (QLoRA runs on CUDA and CPU alike: test_tune_qlora.py). Skipped
without one."""

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.heavy, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_cuda_trains_in_bf16_and_learns(tmp_path, tiny_model):
    from gemfuse.devices import training_dtype
    from gemfuse.testing.tasks import colour_task
    from gemfuse.tune import load_tune_config, train

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
