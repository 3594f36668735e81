"""What the llama.cpp backend hands its engine (no model loaded): the engine's settings from a spec, the request
body from our messages and options, and the engine's token log-probabilities read back."""

import pytest

from gemfuse.errors import ModelLoadError
from gemfuse.messages import Message
from gemfuse.models.base import GenerateOptions
from gemfuse.models.certainty import TOP_K
from gemfuse.models.grammar import engine_grammar
from gemfuse.models.llamacpp import DEFAULT_SAMPLING, LlamaCppModel, LlamaCppSpec, engine_params, request_body, token_logprob


def test_engine_settings_give_each_slot_its_window_and_pass_the_files(tmp_path):
    spec = LlamaCppSpec(path="m.gguf", n_ctx=1024, concurrency=3, threads=2, chat_format="chatml",
                        lora=str(tmp_path / "a.gguf"), mmproj=str(tmp_path / "p.gguf"))
    params = engine_params(spec, tmp_path / "m.gguf")
    assert (params.n_parallel, params.n_ctx, params.cpuparams.n_threads) == (3, 3072, 2)
    assert params.chat_template == "chatml" and params.verbosity == -1
    assert [a.path for a in params.lora_adapters] == [str(tmp_path / "a.gguf")]
    assert params.mmproj.path == str(tmp_path / "p.gguf")
    assert LlamaCppSpec(path="m.gguf").concurrency == 4, "four slots unless the config says otherwise"



def test_without_a_thread_count_the_engine_keeps_to_the_processs_thread_budget(tmp_path, monkeypatch):
    """OMP_NUM_THREADS, which torch keeps to, bounds llama.cpp too (processes sharing a machine do not fight for
    its cores); unset or unreadable, every core this process may use."""
    import os

    spec = LlamaCppSpec(path="m.gguf")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    params = engine_params(spec, tmp_path / "m.gguf")
    assert (params.cpuparams.n_threads, params.cpuparams_batch.n_threads) == (3, 3)
    cores = len(os.sched_getaffinity(0))
    for unreadable in ("", "0", "four"):
        monkeypatch.setenv("OMP_NUM_THREADS", unreadable)
        assert engine_params(spec, tmp_path / "m.gguf").cpuparams.n_threads == cores
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert engine_params(spec, tmp_path / "m.gguf").cpuparams.n_threads == cores

def test_a_projector_makes_the_model_take_images_and_missing_files_are_named(tmp_path, media):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    model = LlamaCppModel("m", LlamaCppSpec(path=str(gguf), mmproj=str(tmp_path / "missing-proj.gguf")))
    model.check_input([Message.user("what is it?", images=[media["png"]])])  # accepted: the projector reads it
    with pytest.raises(ModelLoadError, match="projector file not found: .*missing-proj.gguf"):
        model._start()
    with pytest.raises(ModelLoadError, match="LoRA adapter file not found"):
        LlamaCppModel("m", LlamaCppSpec(path=str(gguf), lora=str(tmp_path / "none.gguf")))._start()


def test_the_request_carries_the_options_and_the_spec():
    spec = LlamaCppSpec(path="m.gguf", repeat_penalty=1.1, stop=["\nUser:"])
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    body = request_body([Message.user("hi")], GenerateOptions(max_tokens=7, temperature=0, top_p=0.5, seed=3,
                                                               stop=["END"], json_schema=schema, logprobs=True,
                                                               top_logprobs=2), spec)
    assert body["messages"] == [{"role": "user", "content": "hi"}] and body["max_tokens"] == 7
    assert (body["temperature"], body["top_p"], body["seed"], body["repeat_penalty"]) == (0, 0.5, 3, 1.1)
    assert body["stop"] == ["END", "\nUser:"] and body["grammar"] == engine_grammar(schema)
    assert body["logprobs"] is True and body["top_logprobs"] == TOP_K, "the measures read 20; trimmed after"
    assert body["stream"] and body["stream_options"] == {"include_usage": True}
    assert body["cache_prompt"] is False, "a greedy answer is reproduced exactly: its prompt is evaluated afresh"
    plain = request_body([Message.user("hi")], GenerateOptions(), LlamaCppSpec(path="m.gguf"))
    assert plain["temperature"] == DEFAULT_SAMPLING["temperature"] and "logprobs" not in plain
    assert "cache_prompt" not in plain, "a sampled answer reads its prompt from the cache"


def test_an_engine_token_keeps_the_asked_alternatives_and_its_figures_are_approximate():
    raw = {"token": "Paris", "logprob": -0.1,
           "top_logprobs": [{"token": f"t{i}", "logprob": -0.1 - i} for i in range(TOP_K)]}
    token = token_logprob(raw, 3)
    assert token.token == "Paris" and token.logprob == -0.1 and len(token.top) == 3
    assert token.approximate and token.confidence == pytest.approx(sum(0.1 + i for i in range(TOP_K)) / TOP_K)
    assert token.self_certainty is not None
