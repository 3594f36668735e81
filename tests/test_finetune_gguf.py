"""Which way a fine-tune's GGUF is made (no model loaded; the makers stand in): grafted into its base's GGUF when
the graft folds the adapter and the result agrees with the adapter, else merged and converted; a merged file
that disagrees is refused and nothing is kept. The graft itself, on a small written GGUF: the trained weight
becomes W + scale * B @ A, nothing else moves, and an architecture whose converter reorders weights is left to
the merge."""

import json

import numpy as np
import pytest

from gemfuse import finetune_gguf
from gemfuse.errors import ModelLoadError
from gemfuse.tune import export
from test_gguf_layout import write_gguf


@pytest.fixture
def run(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    (folder / "adapter").mkdir(parents=True)
    (folder / "adapter" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8}))
    (folder / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    (folder / "manifest.json").write_text(json.dumps({"base_model": "gemma-3-270m-hf", "status": "done"}))
    monkeypatch.setattr(finetune_gguf, "folder", lambda: tmp_path / "made")
    monkeypatch.setattr(finetune_gguf, "base_gguf", lambda run_path: tmp_path / "base.gguf")
    return folder


def makers(monkeypatch, grafts: bool, agreement: dict[str, float]) -> list[str]:
    """Stand-ins that write their kind into the file; the agreement is looked up by what the file holds."""
    done: list[str] = []

    def graft(base, run, out):
        done.append("graft")
        if grafts:
            out.write_text("grafted")
        return grafts

    def merge(run, manifest, out):
        done.append("merge")
        return out

    def convert(merged, out):
        done.append("convert")
        out.write_text("converted")
        return out

    monkeypatch.setattr(finetune_gguf, "graft_adapter", graft)
    monkeypatch.setattr(export, "merge", merge)
    monkeypatch.setattr(finetune_gguf, "convert_to_gguf", convert)
    monkeypatch.setattr(finetune_gguf, "next_token_agreement", lambda gguf, run: agreement[gguf.read_text()])
    return done


def test_a_graft_that_agrees_is_kept_without_a_merge(run, monkeypatch):
    done = makers(monkeypatch, grafts=True, agreement={"grafted": 1.0})
    made = finetune_gguf.merged_gguf(str(run))
    assert done == ["graft"] and made.read_text() == "grafted"
    assert finetune_gguf.merged_gguf(str(run)) == made and done == ["graft"], "made once"


def test_two_processes_asking_at_once_make_it_once(run, monkeypatch):
    """The second caller waits on the first's lock and finds the file made (one graft, not two beside)."""
    import threading
    import time

    done = makers(monkeypatch, grafts=True, agreement={"grafted": 1.0})
    graft = finetune_gguf.graft_adapter

    def slow_graft(base, run, out):
        time.sleep(0.3)  # long enough for the other caller to arrive while this one makes the file
        return graft(base, run, out)

    monkeypatch.setattr(finetune_gguf, "graft_adapter", slow_graft)
    made: list = []
    callers = [threading.Thread(target=lambda: made.append(finetune_gguf.merged_gguf(str(run)))) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert done == ["graft"] and len(made) == 2 and made[0] == made[1] and made[0].read_text() == "grafted"


@pytest.mark.parametrize("grafts", [False, True], ids=["not-folded", "graft-disagrees"])
def test_otherwise_the_adapter_is_merged_and_converted(run, monkeypatch, grafts):
    done = makers(monkeypatch, grafts=grafts, agreement={"grafted": 0.5, "converted": 0.95})
    made = finetune_gguf.merged_gguf(str(run))
    assert done == ["graft", "merge", "convert"] and made.read_text() == "converted"


def test_a_merged_file_that_disagrees_is_refused_and_not_kept(run, monkeypatch, tmp_path):
    makers(monkeypatch, grafts=False, agreement={"converted": 0.5})
    with pytest.raises(ModelLoadError, match="predicts the adapter's next token at only 50%"):
        finetune_gguf.merged_gguf(str(run))
    assert not list((tmp_path / "made").glob("*.gguf"))


@pytest.mark.parametrize("architecture", ["gemma3", "llama"])
def test_the_graft_adds_the_scaled_product_to_the_trained_weight_alone(tmp_path, architecture):
    import torch
    from safetensors.torch import save_file

    from gemfuse.gguf_layout import read_layout

    rng = np.random.default_rng(1)
    q = rng.standard_normal((8, 6)).astype(np.float16)
    norm = rng.standard_normal(6).astype(np.float32)
    base = tmp_path / "base.gguf"
    write_gguf(base, {"blk.0.attn_q.weight": q, "blk.0.attn_norm.weight": norm}, architecture=architecture)
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "adapter" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 8}))
    a, b = torch.randn(2, 6), torch.randn(8, 2)
    module = "base_model.model.model.layers.0.self_attn.q_proj"
    save_file({f"{module}.lora_A.weight": a, f"{module}.lora_B.weight": b},
              str(run / "adapter" / "adapter_model.safetensors"))

    out = tmp_path / "grafted.gguf"
    grafted = finetune_gguf.graft_adapter(base, run, out)
    if architecture == "llama":  # its converter permutes q and k: left to the merge, nothing written
        assert not grafted and not out.exists()
        return
    assert grafted
    places = read_layout(out).tensors
    read = {name: np.memmap(out, dtype=p.dtype, mode="r", offset=p.offset, shape=p.shape) for name, p in places.items()}
    want = q.astype(np.float32) + 4.0 * (b @ a).numpy()  # scale = alpha / r
    assert np.allclose(read["blk.0.attn_q.weight"], want, rtol=1e-3, atol=1e-3)
    assert not np.allclose(read["blk.0.attn_q.weight"], q, atol=1e-2)
    assert np.array_equal(read["blk.0.attn_norm.weight"], norm)
    assert out.stat().st_size == base.stat().st_size

    (run / "adapter" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 8,
                                                                     "use_rslora": True}))
    assert finetune_gguf.graft_adapter(base, run, out)
    rslora = np.memmap(out, dtype=np.float16, mode="r", offset=places["blk.0.attn_q.weight"].offset, shape=q.shape)
    assert np.allclose(rslora, q.astype(np.float32) + 8 / 2 ** 0.5 * (b @ a).numpy(), rtol=1e-3, atol=1e-3)
