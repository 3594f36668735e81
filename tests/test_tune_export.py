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


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """One 3-step fine-tune of the built-in Gemma 3 270M, shared by the tests that export or run it."""
    return small_run("gemma-3-270m-hf", tmp_path_factory.mktemp("real-run"), steps=3)


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


def test_real_fine_tune_to_quantised_gguf_and_ollama(tmp_path, real_run):
    result = real_run
    wanted = tmp_path / "exports" / "nested" / "x.gguf"  # folders that do not exist yet
    gguf = export(result.run, "gguf", quant="Q8_0", out=wanted, check_prompt="What is the capital of France?")
    assert gguf.path == wanted and gguf.path.suffix == ".gguf" and gguf.path.stat().st_size > 100e6
    assert gguf.sample and gguf.sample.strip()  # llama.cpp loaded the file and generated from it
    ollama = export(result.run, "ollama", quant="Q8_0", check_prompt=None)
    text = ollama.path.read_text()
    assert "FROM ./" in text and "<start_of_turn>" in text and 'PARAMETER stop "<end_of_turn>"' in text
    assert (ollama.path.parent / text.split("FROM ./")[1].split("\n")[0]).is_file()


def test_a_cpu_fine_tune_runs_on_llama_cpp_beside_its_base(tmp_path, monkeypatch, real_run):
    """A text fine-tune trained on a CPU runs merged into a GGUF on llama.cpp (made once, its next-token
    predictions checked against the adapter's), and an eval pairs it with its base on the same runtime."""
    import asyncio

    from gemfuse import finetune_gguf as merged_gguf
    from gemfuse.evals.systems import build_systems
    from gemfuse.messages import Message
    from gemfuse.models.base import GenerateOptions
    from gemfuse.models.llamacpp import LlamaCppModel
    from gemfuse.models.transformers import TransformersModel
    from gemfuse.registry import Registry

    monkeypatch.setattr(merged_gguf, "folder", lambda: tmp_path / "made")  # nothing made by an earlier run
    run = str(real_run.run)
    registry = Registry.load()
    model = registry.get(run)
    assert isinstance(model, LlamaCppModel) and registry.spec(run).path.startswith("finetune:")
    checked = []
    real_check = merged_gguf.next_token_agreement
    monkeypatch.setattr(merged_gguf, "next_token_agreement", lambda *a: checked.append(real_check(*a)) or checked[-1])
    greedy = GenerateOptions(max_tokens=8, temperature=0)
    question = [Message.user("Say the word number 3.")]

    async def ask(m):
        try:
            return (await m.generate(question, greedy)).text
        finally:
            await m.aclose()

    on_llama = asyncio.run(ask(model))
    assert checked and checked[0] >= merged_gguf.AGREEMENT  # the merged GGUF was checked against the adapter
    made = list((tmp_path / "made").glob("run-*.gguf"))
    assert len(made) == 1
    again = Registry.load()  # a second use re-uses the file: no second merge
    assert asyncio.run(ask(again.get(run))) == on_llama and len(checked) == 1
    # the same run on transformers, by the config's choice
    (tmp_path / "config.toml").write_text('finetune_runtime = "transformers"\n')
    monkeypatch.setenv("GEMFUSE_CONFIG", str(tmp_path / "config.toml"))
    assert isinstance(Registry.load().get(run), TransformersModel)
    monkeypatch.delenv("GEMFUSE_CONFIG")
    # an eval brings the base along on llama.cpp, at the same precision, named as the config names it
    systems = build_systems(registry, models=[run], pool=[], judge=None, systems=["members"], max_tokens=8,
                            judge_max_tokens=8, temperature=0, seed=0, extractor="auto")
    assert [s.name for s in systems] == [run, "gemma-3-270m"] and systems[0].base == "gemma-3-270m"
    base_spec = registry.spec("gemma-3-270m")
    assert base_spec.backend == "llamacpp" and base_spec.path.startswith("finetune-base:")
    assert base_spec.chat_template == registry.spec(run).chat_template
