"""vLLM as the engine for a team: `gemfuse export --to vllm | vllm-lora` writes what vLLM's loaders read (checked
here without vLLM: config, weights, tokenizer, chat template, the adapter's modules and rank), and a
`backend = "vllm"` model is an OpenAI-compatible endpoint that fusion and the server use like any other."""

import json

import pytest
from safetensors.torch import save_file

from gemfuse.errors import ConfigError
from gemfuse.messages import Message
from gemfuse.models.base import GenerateOptions
from gemfuse.registry import Registry
from gemfuse.tune.vllm_export import lora_problems, max_lora_rank, served_folder_problems


def adapter(folder, modules, **config):
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 8,
                                                            "bias": "none", "target_modules": ["q_proj"], **config}))
    save_file({f"base_model.model.{m}.lora_{ab}.weight": torch.zeros(4, 4) for m in modules for ab in "AB"},
              str(folder / "adapter_model.safetensors"))
    return folder


def test_lora_checks_name_what_vllm_refuses(tmp_path):
    language = "model.language_model.layers.0.self_attn.q_proj"
    assert lora_problems(adapter(tmp_path / "ok", [language, language.replace("q_proj", "o_proj")])) == (4, [])
    _, problems = lora_problems(adapter(tmp_path / "tower", [language, "model.vision_tower.layers.0.q_proj"]))
    assert problems and "vision_tower" in problems[0]
    _, problems = lora_problems(adapter(tmp_path / "dora", [language], use_dora=True, modules_to_save=["lm_head"]))
    assert any("DoRA" in p for p in problems) and any("modules_to_save" in p for p in problems)
    assert [max_lora_rank(r) for r in (1, 4, 8, 9, 64)] == [1, 8, 8, 16, 64]


def test_served_folder_needs_config_weights_tokenizer_and_template(tmp_path):
    assert len(served_folder_problems(tmp_path)) == 4
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ messages }}"}))
    assert served_folder_problems(tmp_path) == []


async def test_a_vllm_model_is_an_openai_endpoint(upstream, isolated_config):
    base_url, _ = upstream
    isolated_config.write_text(f'[models.team]\nbackend = "vllm"\nbase_url = "{base_url}"\nmodel = "ok"\n\n'
                               '[presets.pair]\npool = ["team", "team"]\nmode = "vote"\n')
    registry = Registry.load()
    assert registry.spec("team").backend == "vllm"
    completion = await registry.get("team").generate([Message.user("hello there")], GenerateOptions(max_tokens=8))
    assert completion.text == "echo: hello there"
    fused = await registry.get("fusion/pair").generate([Message.user("hello there")], GenerateOptions(max_tokens=8))
    assert fused.text == "echo: hello there" and len(fused.trace["calls"]) >= 2
    await registry.aclose()


@pytest.mark.heavy
def test_export_for_vllm_merged_and_lora(tmp_path, tiny_model, capsys):
    from tests.test_tune_export import small_run

    from gemfuse.commands.tune import run_export
    from gemfuse.tune.export import export

    run = small_run(tiny_model("gemma3"), tmp_path, steps=1).run
    assert run_export(run, "vllm", None, None, "Hello!") == 0
    printed = capsys.readouterr().out
    assert f"vllm serve {(run / 'vllm').resolve()} --served-model-name {run.name}" in printed
    assert f'[models.{run.name}]\nbackend = "vllm"' in printed
    assert served_folder_problems(run / "vllm") == []
    lora = export(run, "vllm-lora")
    assert (lora.path / "adapter_config.json").is_file() and (lora.path / "adapter_model.safetensors").is_file()
    rank, problems = lora_problems(lora.path)
    assert problems == [] and rank == 4
    assert lora.command.endswith(f"--enable-lora --lora-modules {run.name}={lora.path.resolve()} --max-lora-rank 8")
    (tmp_path / "towers").mkdir()
    towers = small_run(tiny_model("gemma3"), tmp_path / "towers", steps=1, targets="language+vision").run
    with pytest.raises(ConfigError, match="vision.*--to vllm"):
        export(towers, "vllm-lora")
