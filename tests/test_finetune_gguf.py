"""Which way a fine-tune's GGUF is made (no model loaded; the makers stand in): grafted into its base's GGUF when
the graft folds the adapter and the result agrees with the adapter, else merged and converted; a merged file
that disagrees is refused and nothing is kept."""

import json

import pytest

from gemfuse import finetune_gguf
from gemfuse.errors import ModelLoadError
from gemfuse.tune import export


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
