"""`gemfuse plan`: parameter and KV figures against hand-computed values, published Gemma 3 27B figures, and
the memory llama.cpp is measured to take here for the built-in models."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gemfuse.errors import ConfigError
from gemfuse.weights.plan import GB, HEADROOM, plan
from gemfuse.weights.shape import from_config, read_shape

CONFIGS = Path(__file__).parent / "data" / "configs"
SMALL = {"model_type": "gemma3_text", "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
         "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128, "vocab_size": 1000,
         "sliding_window": 8, "layer_types": ["sliding_attention"] * 3 + ["full_attention"],
         "max_position_embeddings": 4096}


def test_parameters_and_kv_cache_match_hand_computed_values():
    shape = from_config(SMALL, "small")
    # embedding 1000*64; per layer q 64*64 + k,v 2*64*32 + o 64*64 + MLP 3*64*128 = 36,864
    assert shape.params == 64_000 + 4 * 36_864
    assert shape.embedding_params == 64_000
    # three sliding layers keep 8 tokens, the full one all 100: 2 (K, V) x 2 heads x 16 x tokens x 2 bytes
    assert shape.kv_bytes(100) == 3 * (2 * 2 * 16 * 8 * 2) + 2 * 2 * 16 * 100 * 2
    assert shape.kv_bytes(100, full_windows=True) == 4 * (2 * 2 * 16 * 100 * 2)
    untied = from_config({**SMALL, "tie_word_embeddings": False}, "untied")
    assert untied.params == shape.params + 64_000


def test_shared_kv_layers_and_gemma4_global_layers_keep_their_own_shapes():
    shared = from_config({**SMALL, "num_kv_shared_layers": 2}, "shared")
    assert len(shared.caches) == 2  # the last two layers read earlier layers' caches
    gemma4 = from_config({**SMALL, "global_head_dim": 32, "num_global_key_value_heads": 1}, "g4")
    assert [(c.kv_heads, c.head_dim, c.window) for c in gemma4.caches] == [(2, 16, 8)] * 3 + [(1, 32, None)]


def test_gemma3_27b_matches_published_figures():
    shape = read_shape(str(CONFIGS / "gemma-3-27b-it.json"))
    assert shape.params == pytest.approx(27.4e9, rel=0.01)
    rows = {r.needs.precision: r.needs for r in plan(shape, device="cuda", memory_gb=80, context=4096).rows}
    for precision, published_gb in (("bf16", 54), ("int8", 27), ("int4", 14)):
        assert rows[precision].weights / GB == pytest.approx(published_gb, rel=0.05), precision
    # 10 of 62 layers are global: at 128K the window-honouring cache is a sixth of llama.cpp's full-size one
    assert shape.kv_bytes(131_072) / shape.kv_bytes(131_072, full_windows=True) == pytest.approx(0.168, abs=0.01)


def test_verdicts_and_longest_context_on_a_24_gb_gpu():
    shape = read_shape(str(CONFIGS / "gemma-3-27b-it.json"))
    result = plan(shape, device="cuda", memory_gb=24, context=32_768)
    rows = {r.needs.precision: r for r in result.rows}
    assert rows["bf16"].verdict == "too big" and rows["bnb-4bit"].verdict == "fits"
    assert result.best().needs.precision == "bnb-4bit"
    longest = rows["bnb-4bit"].max_context
    assert 32_768 < longest < shape.max_context
    at = plan(shape, device="cuda", memory_gb=24, context=longest).rows
    beyond = plan(shape, device="cuda", memory_gb=24, context=longest + 64).rows
    total = {r.needs.precision: r.needs.total for r in at}["bnb-4bit"]
    assert total <= HEADROOM * 24 * GB < {r.needs.precision: r.needs.total for r in beyond}["bnb-4bit"]
    assert rows["torchao-int8"].verdict == "too big"
    on_cpu = {r.needs.precision: r.verdict for r in plan(shape, device="cpu", memory_gb=64).rows}
    assert on_cpu["bnb-4bit"] == "not on this device"
    qlora = plan(shape, device="cuda", memory_gb=24, context=2048, train="qlora")
    assert [r.needs.precision for r in qlora.rows] == ["bnb-4bit"] and qlora.rows[0].needs.training > 0
    assert qlora.rows[0].needs.kv_cache == 0
    with pytest.raises(ConfigError, match="^train = 'full': choose lora or qlora"):
        plan(shape, train="full")


# VmHWM is this process image's own high-water mark (ru_maxrss would carry the parent's peak across exec).
MEASURE = """
import json, sys
from llama_cpp import Llama
from gemfuse.models.builtin import builtin_specs
from gemfuse.files import resolve_path
def status(key):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(key + ":"))
path = resolve_path(builtin_specs()[sys.argv[1]].path)
before = status("VmRSS")
llm = Llama(model_path=str(path), n_ctx=int(sys.argv[2]), verbose=False)
llm.create_completion("The capital of France is", max_tokens=8, temperature=0)
print(json.dumps(status("VmHWM") - before))
"""


@pytest.mark.heavy
@pytest.mark.parametrize("name", ["smollm2-135m", "gemma-3-270m"])
def test_plan_within_15_percent_of_measured_llama_cpp_peak(name):
    context = 4096
    measured = json.loads(subprocess.run([sys.executable, "-c", MEASURE, name, str(context)], check=True,
                                         capture_output=True, text=True).stdout.strip().splitlines()[-1])
    rows = {r.needs.precision: r.needs for r in plan(read_shape(name), device="cpu", context=context).rows}
    assert rows["file"].total == pytest.approx(measured, rel=0.15)


def test_cli_plan_json_and_errors(tmp_path):
    from typer.testing import CliRunner

    from gemfuse.cli import app

    (tmp_path / "config.json").write_text(json.dumps(SMALL))
    done = CliRunner().invoke(app, ["plan", str(tmp_path), "--memory", "1", "--context", "512", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.output)
    assert report["params"] == 64_000 + 4 * 36_864 and report["best"] == "bf16"
    assert {r["precision"] for r in report["rows"]} >= {"bf16", "int8", "int4", "gguf:Q4_K_M"}
    missing = CliRunner().invoke(app, ["plan", str(tmp_path / "nothing-here")])
    assert missing.exit_code == 1 and "not a GGUF file, a model folder" in missing.output


def test_a_sharded_fine_tune_is_planned_per_process():
    """Gemma 3 27B LoRA on 24 GB cards: too big on one; sharded, each process holds 1/N of the layers (the
    embeddings whole) and the plan names the fewest processes that fit."""
    shape = read_shape(str(CONFIGS / "gemma-3-27b-it.json"))
    one, two, four = (plan(shape, device="cuda", memory_gb=24, context=2048, train="lora", shards=n).rows[0]
                      for n in (1, 2, 4))
    assert one.verdict == "too big" and four.verdict == "fits"
    embeddings = shape.embedding_params * 2
    assert two.needs.weights == pytest.approx(embeddings + (one.needs.weights - embeddings) / 2)
    assert four.needs.training < one.needs.training  # the adapters' state is sharded too
    result = plan(shape, device="cuda", memory_gb=24, context=2048, train="lora")
    assert result.fewest_shards == 4 and result.as_dict()["fewest_shards"] == 4
    with pytest.raises(ConfigError, match="shards = 2: sharding plans a LoRA fine-tune"):
        plan(shape, device="cuda", memory_gb=24, train="qlora", shards=2)
