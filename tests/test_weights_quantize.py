"""Quantised inference: int8 weights on the CPU in the transformers backend, and `gemfuse quantize` to GGUF
quant types with its measured cost (size, perplexity on the fixed text, speed)."""

import asyncio
import io
import json

import pytest

from gemfuse.errors import ConfigError, ModelLoadError
from gemfuse.messages import Message
from gemfuse.models.base import GenerateOptions
from gemfuse.models.builtin import SMOLLM2
from gemfuse.models.transformers import TransformersModel, TransformersSpec
from gemfuse.weights.quantize import parse_target, perplexity_gguf

pytestmark = pytest.mark.heavy  # real models or processes: the full suite only

QUESTION = [Message.user("What is the capital of France? Answer in one sentence.")]


def stored_bytes(model) -> int:
    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def test_int8_weights_on_cpu_answer_and_take_less_memory():
    sizes = {}
    for quantize in ("none", "int8"):
        model = TransformersModel(f"smol-{quantize}", TransformersSpec(path=SMOLLM2, quantize=quantize, device="cpu"))
        answer = asyncio.run(model.generate(QUESTION, GenerateOptions(max_tokens=16, temperature=0)))
        assert "Paris" in answer.text, (quantize, answer.text)
        sizes[quantize] = stored_bytes(model.load()[0])
        asyncio.run(model.aclose())
    # linear layers at one byte a weight (plus a scale per row); the tied embedding stays 16-bit
    assert sizes["int8"] < 0.7 * sizes["none"]


def test_bitsandbytes_modes_say_they_need_cuda():
    model = TransformersModel("smol-4bit", TransformersSpec(path=SMOLLM2, quantize="4bit", device="cpu"))
    with pytest.raises(ModelLoadError, match="needs a CUDA GPU.*'int8'.*gguf:Q4_K_M"):
        model.load()


def test_targets_are_checked():
    assert parse_target("gguf:q4_k_m") == "Q4_K_M"
    with pytest.raises(ConfigError, match="gguf:TYPE"):
        parse_target("int4")
    with pytest.raises(ConfigError, match="unknown quant type"):
        parse_target("gguf:Q9_X")


def test_quantize_a_model_to_q8_0_reports_its_cost_and_registers_it(tmp_path, isolated_config):
    from typer.testing import CliRunner

    from gemfuse.cli import app

    out = tmp_path / "smol-q8_0.gguf"
    done = CliRunner().invoke(app, ["quantize", "smollm2-135m-hf", "--to", "gguf:Q8_0", "--out", str(out),
                                    "--name", "smol-q8", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["quant"] == "Q8_0" and out.is_file()
    assert 0.5 < report["size_ratio"] < 0.6  # 8.5 bits a weight against 16
    assert 1.0 <= report["perplexity_ratio"] < 1.05  # Q8_0 is close to lossless; never better than its source
    assert report["source"]["perplexity"] == pytest.approx(perplexity_gguf(tmp_path / "smollm2-135m-hf-F16.gguf"), abs=1e-3)
    from gemfuse.config import load_config

    assert load_config().specs["smol-q8"].path == str(out)
    asked = CliRunner().invoke(app, ["ask", "What is the capital of France? Answer in one sentence.", "-m", "smol-q8",
                                     "--max-tokens", "16", "--temperature", "0"])
    assert asked.exit_code == 0 and "Paris" in asked.output


def test_requantising_a_quantised_gguf_says_so(tmp_path):
    from gemfuse.files import resolve_path
    from gemfuse.weights.quantize import quantize

    done = quantize(str(resolve_path(SMOLLM2)), "gguf:Q4_0", out=tmp_path / "smol-q4_0.gguf")
    assert any("already quantised (Q4_1)" in note for note in done.notes)
    assert done.result.bytes < done.source.bytes and done.result.perplexity > 0
