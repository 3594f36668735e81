"""Exports: merged weights give the adapter's logits; a real fine-tune round-trips to GGUF and generates in
llama.cpp; the Ollama Modelfile carries Gemma's turns."""

import json

import pytest

from gemfuse.errors import ConfigError
from gemfuse.tune import load_tune_config, train
from gemfuse.tune.export import export

pytestmark = pytest.mark.heavy  # real models or processes: the full suite only


def small_run(model, tmp_path, steps=2, **lora):
    rows = [{"messages": [{"role": "user", "content": f"Say the word number {i}."},
                          {"role": "assistant", "content": f"Word {i}."}]} for i in range(8)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = load_tune_config(None, [], base={"model": str(model), "out": str(tmp_path / "run"),
                                              "data": {"train": str(data)}, "lora": {"r": 4, "alpha": 8, **lora},
                                              "train": {"max_steps": steps, "batch_size": 4, "lr": 1e-2},
                                              "run": {"progress": False}})
    return train(config)


def test_merged_logits_equal_adapter_logits(tmp_path, tiny_model):
    from gemfuse._torchvision import import_transformers

    import_transformers()  # before peft, which imports transformers' image side
    import torch
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    folder = tiny_model("gemma3")
    result = small_run(folder, tmp_path, steps=3, targets="language+vision")
    exported = export(result.run, "merged")
    assert exported.path == result.run / "merged" and isinstance(exported.sample, str)
    adapter = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32),
                                        result.adapter).eval()
    merged = AutoModelForImageTextToText.from_pretrained(exported.path, dtype=torch.float32).eval()
    ids = torch.tensor([[2, 5, 40, 41, 42, 43, 6, 5]])
    with torch.no_grad():
        a, m = adapter(input_ids=ids).logits, merged(input_ids=ids).logits
    base = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        b = base(input_ids=ids).logits
    assert not torch.allclose(a, b, atol=1e-3)  # the adapter changed something
    assert torch.allclose(a, m, atol=1e-4), float((a - m).abs().max())


def test_export_refuses_an_unfinished_run(tmp_path):
    with pytest.raises(ConfigError, match="not a finished run folder"):
        export(tmp_path, "merged")


def test_real_fine_tune_to_quantised_gguf_and_ollama(tmp_path):
    result = small_run("gemma-3-270m-hf", tmp_path)
    wanted = tmp_path / "exports" / "nested" / "x.gguf"  # folders that do not exist yet
    gguf = export(result.run, "gguf", quant="Q8_0", out=wanted, check_prompt="What is the capital of France?")
    assert gguf.path == wanted and gguf.path.suffix == ".gguf" and gguf.path.stat().st_size > 100e6
    assert gguf.sample and gguf.sample.strip()  # llama.cpp loaded the file and generated from it
    ollama = export(result.run, "ollama", quant="Q8_0", check_prompt=None)
    text = ollama.path.read_text()
    assert "FROM ./" in text and "<start_of_turn>" in text and 'PARAMETER stop "<end_of_turn>"' in text
    assert (ollama.path.parent / text.split("FROM ./")[1].split("\n")[0]).is_file()
