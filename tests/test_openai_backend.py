"""The openai backend against real HTTP servers on 127.0.0.1: a fault-injecting upstream and llama.cpp's own."""

import asyncio
import os
import subprocess
import sys
import time

import pytest

from gemfuse.errors import AuthError, BadRequestError, ModelTimeoutError, RateLimitError, UpstreamError
from gemfuse.messages import Message
from gemfuse.models.base import GenerateOptions
from gemfuse.models.openai import OpenAIModel, OpenAISpec, parse_retry_after
from gemfuse.testing.upstream import RETRY_AFTER_S, free_port, wait_until_up

QUESTION = [Message.user("hello there")]


@pytest.fixture(autouse=True)
def fresh_counts(upstream):
    upstream[1].clear()


def model(base_url, behaviour="ok", **overrides) -> OpenAIModel:
    spec = dict(base_url=base_url, model=behaviour, max_retries=3, backoff_s=0.01,
                timeout={"connect": 2, "read": 1.0, "total": 5})
    spec.update(overrides)
    return OpenAIModel(f"test-{behaviour}", OpenAISpec(**spec))


async def collect(m, options=None):
    chunks = [c async for c in m.stream(QUESTION, options)]
    return "".join(c.text for c in chunks), chunks


async def test_generate_and_stream(upstream):
    base_url, calls = upstream
    m = model(base_url)
    completion = await m.generate(QUESTION, GenerateOptions(max_tokens=20, temperature=0, stop=["zz"]))
    assert completion.text == "echo: hello there" and completion.finish_reason == "stop"
    assert completion.usage.completion_tokens == 3 and not completion.usage.estimated
    text, chunks = await collect(m)
    assert text == "echo: hello there"
    assert len([c for c in chunks if c.text]) == 3, "deltas arrive one by one"
    assert chunks[-1].usage.completion_tokens == 3 and chunks[-1].finish_reason == "stop"
    await m.aclose()


async def test_429_honours_retry_after_then_succeeds(upstream):
    base_url, calls = upstream
    m = model(base_url, "429-then-ok")
    start = time.perf_counter()
    completion = await m.generate(QUESTION)
    assert completion.text.startswith("echo:")
    assert calls["429-then-ok"] == 2
    assert time.perf_counter() - start >= RETRY_AFTER_S * 0.95, "waited as Retry-After said"


async def test_500_then_success_when_streaming(upstream):
    base_url, calls = upstream
    text, _ = await collect(model(base_url, "500-then-ok"))
    assert text == "echo: hello there" and calls["500-then-ok"] == 2


async def test_retries_give_up_with_a_typed_error(upstream):
    base_url, calls = upstream
    with pytest.raises(UpstreamError) as info:
        await model(base_url, "always-503", max_retries=2).generate(QUESTION)
    assert calls["always-503"] == 3
    assert info.value.status == 503 and info.value.provider_message == "overloaded"


async def test_rate_limit_past_the_deadline_is_not_slept_through(upstream):
    base_url, calls = upstream
    m = model(base_url, "429-then-ok", timeout={"connect": 1, "read": 1, "total": 0.1})
    with pytest.raises(RateLimitError) as info:
        await m.generate(QUESTION)
    assert info.value.retry_after == pytest.approx(RETRY_AFTER_S) and calls["429-then-ok"] == 1


async def test_client_errors_are_not_retried(upstream):
    base_url, calls = upstream
    with pytest.raises(BadRequestError, match="max_tokens is too large") as info:
        await model(base_url, "bad").generate(QUESTION)
    assert info.value.status == 400 and calls["bad"] == 1


async def test_slow_response_past_the_read_timeout(upstream):
    base_url, _ = upstream
    start = time.perf_counter()
    with pytest.raises(ModelTimeoutError):
        await model(base_url, "slow-3000", timeout={"connect": 1, "read": 0.3, "total": 10}).generate(QUESTION)
    assert time.perf_counter() - start < 2


async def test_total_timeout_bounds_a_stalled_stream(upstream):
    base_url, _ = upstream
    m = model(base_url, "stall", timeout={"connect": 1, "read": 30, "total": 0.5})
    start = time.perf_counter()
    with pytest.raises(ModelTimeoutError, match="total timeout"):
        await collect(m)
    assert time.perf_counter() - start < 2


async def test_stream_cut_mid_way(upstream):
    base_url, _ = upstream
    received = []
    with pytest.raises(UpstreamError, match="cut|ended before"):
        async for chunk in model(base_url, "cut").stream(QUESTION):
            received.append(chunk.text)
    assert "".join(received) == "echo: hello", "what arrived before the cut was delivered"


async def test_malformed_json(upstream):
    base_url, _ = upstream
    with pytest.raises(UpstreamError, match="malformed response body"):
        await model(base_url, "garbage").generate(QUESTION)
    with pytest.raises(UpstreamError, match="malformed stream event"):
        await collect(model(base_url, "garbage"))


async def test_connection_refused_is_retried_then_typed():
    m = OpenAIModel("down", OpenAISpec(base_url=f"http://127.0.0.1:{free_port()}/v1", model="x", max_retries=1,
                                       backoff_s=0.01))
    with pytest.raises(UpstreamError, match="connection failed"):
        await m.generate(QUESTION)
    assert (await m.check())[0] is False


async def test_missing_key_env_is_an_auth_error(upstream, monkeypatch):
    monkeypatch.delenv("GEMFUSE_TEST_KEY", raising=False)
    with pytest.raises(AuthError, match="GEMFUSE_TEST_KEY is not set"):
        await model(upstream[0], api_key_env="GEMFUSE_TEST_KEY").generate(QUESTION)


def test_retry_after_parsing():
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: no wait
    assert parse_retry_after("soon") is None


async def test_concurrent_calls_share_one_pool(upstream):
    base_url, calls = upstream
    m = model(base_url, "slow-200")
    start = time.perf_counter()
    results = await asyncio.gather(*(m.generate(QUESTION) for _ in range(8)))
    assert all(r.text.startswith("echo") for r in results)
    assert time.perf_counter() - start < 1.2, "remote calls run in parallel"


@pytest.fixture(scope="module")
def llamacpp_server():
    """llama-cpp-python's own OpenAI server serving the built-in SmolLM2 GGUF."""
    from gemfuse.files import resolve_path
    from gemfuse.models.builtin import SMOLLM2

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(resolve_path(SMOLLM2)),
                             "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048",
                             "--model_alias", "smollm2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    base_url = f"http://127.0.0.1:{port}/v1"
    wait_until_up(f"{base_url}/models", proc, timeout=120)
    yield base_url
    proc.terminate()
    proc.wait(timeout=10)


async def test_against_llamacpp_server(llamacpp_server):
    m = OpenAIModel("smol-remote", OpenAISpec(base_url=llamacpp_server, model="smollm2"))
    question = [Message.user("What is the capital of France?")]
    options = GenerateOptions(max_tokens=40, temperature=0)
    completion = await m.generate(question, options)
    assert "paris" in completion.text.lower()
    assert completion.usage.prompt_tokens > 5 and completion.usage.completion_tokens > 0
    chunks = [c async for c in m.stream(question, options)]
    assert "paris" in "".join(c.text for c in chunks).lower()
    assert sum(1 for c in chunks if c.text) > 1 and chunks[-1].finish_reason in ("stop", "length")
    assert (await m.check()) == (True, "HTTP 200")


async def test_seven_models_on_one_base_url_share_one_pool(monkeypatch):
    from gemfuse.testing.upstream import create_app, serve_in_thread

    monkeypatch.setenv("GEMFUSE_TEST_KEY", "sk-pool")
    app = create_app()
    with serve_in_thread(app) as base_url:
        models = [OpenAIModel(f"m{i}", OpenAISpec(base_url=base_url, model="ok", api_key_env="GEMFUSE_TEST_KEY"))
                  for i in range(7)]
        for model in models:  # one after another: each finds the connection the previous one left open
            assert (await model.generate([Message.user("hi")])).text == "echo: hi"
        async for _ in models[3].stream([Message.user("streamed")]):
            pass
        assert len(app.state.peers) == 1
        for model in models:
            await model.aclose()
