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


def test_padding_free_rows_go_through_the_flash_kernel_with_the_padded_loss(tmp_path, tiny_model, monkeypatch):
    """On CUDA a padding-free batch's rows reach torch's variable-length flash kernel in one call per layer (a row
    past the sliding window included) and give the padded batch's loss and gradients within bfloat16's rounding."""
    from gemfuse._torchvision import import_transformers
    from gemfuse.data.collate import Collator
    from gemfuse.data.sources import read_rows
    from gemfuse.data.target import load_target
    from gemfuse.tune.batches import Plan
    from gemfuse.tune.guests import row_attention
    from gemfuse.tune.loop import to_device
    from test_tune_padding_free import loss_and_grads, rows_file

    if row_attention.varlen_kernel() is None:  # the row attention then runs SDPA row by row (tested on the CPU)
        pytest.skip(f"torch {torch.__version__}'s varlen_attn takes no sliding window or grouped heads")
    folder = tiny_model("gemma3")
    rows = read_rows(str(rows_file(tmp_path / "rows.jsonl", [1, 9, 3, 2])), "messages")
    collator = Collator(load_target(str(folder)), max_length=512)
    padded = Plan(rows, collator, batch_size=4).step_batches(0)[0]
    free = Plan(rows, collator, batch_size=4, padding_free=True).step_batches(0)[0]
    model = import_transformers().AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.bfloat16).cuda()
    model.train()

    class Setup:  # what to_device reads
        device, dtype = "cuda", torch.bfloat16

    loss_a, _, grads_a = loss_and_grads(model, to_device(Setup, padded))
    assert row_attention.use_row_attention(model)
    kernel, calls = row_attention.varlen_kernel(), []
    monkeypatch.setattr(row_attention, "varlen_kernel", lambda: lambda *a, **k: calls.append(k) or kernel(*a, **k))
    loss_b, _, grads_b = loss_and_grads(model, to_device(Setup, free))
    assert len(calls) == model.config.text_config.num_hidden_layers
    text = model.config.text_config
    assert [k["window_size"] for k in calls] == [(text.sliding_window - 1, 0) if kind == "sliding_attention"
                                                 else (-1, 0) for kind in text.layer_types]
    assert torch.allclose(loss_a.float(), loss_b.float(), rtol=2e-2)
    for name in grads_a:
        a, b = grads_a[name].float(), grads_b[name].float()
        assert float((a - b).norm() / a.norm().clamp(min=1e-12)) < 0.05, name
