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
    """A text fine-tune trained on a CPU runs merged into a GGUF on llama.cpp (its adapter grafted into its base's
    GGUF once, its next-token predictions checked against the adapter's), and an eval pairs it with its base on
    the same runtime."""
    import asyncio

    from gemfuse import finetune_gguf as merged_gguf
    from gemfuse.evals.systems import build_systems
    from gemfuse.messages import Message
    from gemfuse.models.base import GenerateOptions
    from gemfuse.models.llamacpp import LlamaCppModel
    from gemfuse.models.transformers import TransformersModel
    from gemfuse.registry import Registry
    from gemfuse.tune import export as exports

    monkeypatch.setattr(merged_gguf, "folder", lambda: tmp_path / "made")  # nothing made by an earlier run
    run = str(real_run.run)
    registry = Registry.load()
    model = registry.get(run)
    assert isinstance(model, LlamaCppModel) and registry.spec(run).path.startswith("finetune:")
    checked = []
    real_check = merged_gguf.next_token_agreement
    monkeypatch.setattr(merged_gguf, "next_token_agreement", lambda *a: checked.append(real_check(*a)) or checked[-1])
    monkeypatch.setattr(exports, "merge", lambda *a: pytest.fail("merged in transformers: the graft was not taken"))
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


LAYER_0 = {f"blk.0.{gguf}.weight": f"model.layers.0.{hf}.weight" for gguf, hf in (
    ("attn_q", "self_attn.q_proj"), ("attn_k", "self_attn.k_proj"), ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"), ("ffn_gate", "mlp.gate_proj"), ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"))}  # llama.cpp's names for Gemma 3's projections


def test_the_graft_writes_peft_merged_weights_into_a_copy_of_the_base(tmp_path, real_run):
    """Each LoRA-trained weight of the grafted file is peft's own merge (fp32) to the file's 16 bits; every other
    byte is the base's. An adapter of a kind the graft does not fold writes nothing."""
    import json

    import numpy as np
    import torch
    from peft import PeftModel

    from gemfuse._torchvision import import_transformers
    from gemfuse.finetune_gguf import base_gguf, graft_adapter
    from gemfuse.gguf_layout import read_layout
    from gemfuse.tune.base import resolve_base

    run = real_run.run
    base = base_gguf(str(run))
    grafted = tmp_path / "grafted.gguf"
    assert graft_adapter(base, run, grafted)

    transformers = import_transformers()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(resolve_base(json.loads((run / "manifest.json").read_text())["base_model"]).folder), dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(run / "adapter")).merge_and_unload().state_dict()
    layout = read_layout(grafted)
    assert layout == read_layout(base)  # the same header: names, types, shapes, places
    changed, compared = 0, 0
    for name, place in layout.tensors.items():
        new = np.memmap(grafted, dtype=place.dtype or np.uint8, mode="r", offset=place.offset, shape=place.shape)
        old = np.memmap(base, dtype=place.dtype or np.uint8, mode="r", offset=place.offset, shape=place.shape)
        if name in LAYER_0:
            want, compared = merged[LAYER_0[name]].numpy(), compared + 1
            assert np.allclose(new.astype(np.float32), want, rtol=2e-3, atol=1e-4), name  # peft's merge, to 16 bits
        changed += not np.array_equal(new, old)
    lora = json.loads((run / "adapter" / "adapter_config.json").read_text())
    # every trained projection of the 18 layers, and nothing else
    assert compared == 7 and changed == 7 * 18 and len(lora["target_modules"]) == 7
    assert (grafted.stat().st_size, grafted.read_bytes()[:4096]) == (base.stat().st_size, base.read_bytes()[:4096])

    folded = tmp_path / "dora"
    (folded / "adapter").mkdir(parents=True)
    (folded / "adapter" / "adapter_config.json").write_text(json.dumps({**lora, "use_dora": True}))
    assert not graft_adapter(base, folded, tmp_path / "not-made.gguf") and not (tmp_path / "not-made.gguf").exists()
