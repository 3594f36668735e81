"""The command line, run as a user would: a subprocess with the installed entry point."""

import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.heavy  # real models or processes: the full suite only

GEMFUSE = shutil.which("gemfuse") or os.path.join(os.path.dirname(sys.executable), "gemfuse")


def run(*args, env=None, stdin=None):
    return subprocess.run([GEMFUSE, *args], capture_output=True, text=True, timeout=300, input=stdin,
                          env={**os.environ, **(env or {})})


def test_models_lists_builtins_and_config(isolated_config, upstream):
    isolated_config.write_text(f'[models.remote]\nbackend = "openai"\nbase_url = "{upstream[0]}"\nmodel = "ok"\n'
                               '[models.dead]\nbackend = "llamacpp"\npath = "/nonexistent/x.gguf"\n')
    result = run("models", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["smollm2-135m"]["reachable"] and rows["smollm2-135m"]["backend"] == "llamacpp"
    assert rows["remote"]["reachable"] and rows["remote"]["where"].startswith(upstream[0])
    assert not rows["dead"]["reachable"] and "not found" in rows["dead"]["detail"]
    assert rows["fusion/default"]["backend"] == "fusion" and rows["fusion/default"]["reachable"]
    table = run("models")
    assert table.returncode == 0 and "smollm2-135m" in table.stdout and "remote" in table.stdout


def test_ask_streams_an_answer_from_a_builtin_model():
    result = run("ask", "What is the capital of France?", "--model", "smollm2-135m", "--max-tokens", "40",
                 "--temperature", "0")
    assert result.returncode == 0, result.stderr
    assert "paris" in result.stdout.lower()
    assert "smollm2-135m:" in result.stderr and "tok/s" in result.stderr


def test_a_fusion_preset_answers_as_a_model():
    result = run("ask", "What is 2+2?", "--model", "fusion/default", "--max-tokens", "16", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"] == "fusion/default" and data["text"] and data["usage"]["prompt_tokens"] > 0


def test_ask_json_with_system_prompt_and_stdin():
    result = run("ask", "-", "--model", "smollm2-135m", "--system", "Answer in English.", "--max-tokens", "5",
                 "--temperature", "0", "--json", stdin="Say hello.")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["model"] == "smollm2-135m" and data["usage"]["completion_tokens"] <= 5
    assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"]


def test_ask_with_an_image_on_a_tiny_multimodal_model(isolated_config, tiny_model, media):
    isolated_config.write_text(f'[models.tiny]\nbackend = "transformers"\npath = "{tiny_model("gemma3n")}"\n')
    result = run("ask", "Describe", "--model", "tiny", "--image", str(media["png"]), "--audio", str(media["wav"]),
                 "--max-tokens", "4", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["usage"]["prompt_tokens"] > 30


@pytest.mark.parametrize("args, message", [
    (("ask", "hi", "--model", "smollm-135m"), "unknown model 'smollm-135m'. Did you mean smollm2-135m"),
    (("ask", "hi", "--model", "smollm2-135m", "--image", "/nonexistent.png"), "image file /nonexistent.png"),
    (("ask", "hi", "--model", "smollm2-135m", "--config", "/nonexistent.toml"), "does not exist"),
])
def test_ask_errors_are_one_clear_line(args, message):
    result = run(*args)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr


def test_eval_command_errors_name_what_to_fix(tmp_path, isolated_config, upstream):
    no_pool = run("eval", "builtin:arithmetic", "--systems", "best-of", "--cache", "off")
    assert no_pool.returncode == 1 and "--pool: system 'best-of' fuses a pool" in no_pool.stderr
    no_judge = run("eval", "builtin:arithmetic", "--pool", "smollm2-135m,gemma-3-270m", "--systems", "best-of",
                   "--cache", "off")
    assert no_judge.returncode == 1 and "needs a judge model" in no_judge.stderr
    unknown = run("eval", "builtin:arithmetic", "--models", "smollm3", "--cache", "off")
    assert unknown.returncode == 1 and "smollm2-135m" in unknown.stderr, "the known names are listed"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "2+2?"}\n')
    assert f"{bad}:1: answer: missing" in run("eval", str(bad), "--models", "smollm2-135m").stderr


def test_eval_command_json_report_over_http_models(tmp_path, isolated_config, upstream):
    isolated_config.write_text(f'[models.echo]\nbackend = "openai"\nbase_url = "{upstream[0]}"\nmodel = "ok"\n')
    result = run("eval", "builtin:word", "--n", "8", "--models", "echo", "--json", "--cache", str(tmp_path / "c.sqlite"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dataset"] == "builtin:word" and report["systems"][0]["name"] == "echo"
    assert report["systems"][0]["n"] == 6 and report["calls"]["made"] == {"echo": 8}



TOOLS_FILE = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                                "parameters": {"type": "object", "required": ["city"],
                                                               "properties": {"city": {"enum": ["Paris", "Rome"]}},
                                                               "additionalProperties": False}}}]


def test_ask_with_tools_or_a_schema_on_a_model_and_a_fusion(tmp_path, isolated_config):
    tools, schema = tmp_path / "tools.json", tmp_path / "schema.json"
    tools.write_text(json.dumps(TOOLS_FILE))
    schema.write_text(json.dumps({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                                  "additionalProperties": False}))
    capture = tmp_path / "kept"
    called = run("ask", "Weather in Rome?", "-m", "smollm2-135m", "--tools", str(tools), "--tool-choice", "required",
                 "-t", "0", "--capture", str(capture))
    assert called.returncode == 0, called.stderr
    call = json.loads(called.stdout.strip().splitlines()[0])
    assert call["name"] == "get_weather" and call["arguments"]["city"] in ("Paris", "Rome")
    row = json.loads(next(capture.glob("*.jsonl")).read_text().splitlines()[0])
    assert row["tools"] == TOOLS_FILE and row["messages"][-1]["tool_calls"][0]["function"]["name"] == "get_weather"
    fused = run("ask", "Weather in Rome?", "--pool", "smollm2-135m,gemma-3-270m", "--mode", "vote", "--tools",
                str(tools), "--tool-choice", "get_weather", "-t", "0", "--json")
    assert fused.returncode == 0, fused.stderr
    assert json.loads(fused.stdout)["tool_calls"][0]["function"]["name"] == "get_weather"
    shaped = run("ask", "A city in Italy, as JSON.", "-m", "smollm2-135m", "--schema", str(schema), "-t", "0")
    assert shaped.returncode == 0 and isinstance(json.loads(shaped.stdout.strip())["city"], str)
    bad = run("ask", "x", "--tools", str(schema))
    assert bad.returncode != 0 and f"--tools {schema}" in bad.stderr


def test_embed_prints_a_vector_per_text():
    result = run("embed", "a cat on a sofa", "a cat napping on a couch")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["a cat on a sofa", "a cat napping on a couch"]
    assert len(rows[0]["embedding"]) == 256 and "wordllama-256" in result.stderr
