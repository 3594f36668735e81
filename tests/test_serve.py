"""The server as users meet it: `gemfuse serve` in a subprocess on a free port, driven by the official openai client."""

import base64
import json
import os
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest

from gemfuse.testing.media import png_bytes, wav_bytes
from gemfuse.testing.upstream import free_port, wait_until_up

pytestmark = pytest.mark.heavy  # real models or processes: the full suite only

KEY = "test-server-key-5d1c9"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model, upstream):
    """One server for the module: built-in models, tiny multimodal models, upstream-backed remote models."""
    folder = tmp_path_factory.mktemp("serve")
    base_url = upstream[0]
    config = folder / "config.toml"
    config.write_text(f"""
[server]
max_body_mb = 1
max_queue = 0

[models.tiny-vision]
backend = "transformers"
path = "{tiny_model('gemma3')}"

[models.tiny-audio]
backend = "transformers"
path = "{tiny_model('gemma3n')}"

[models.remote]
backend = "openai"
base_url = "{base_url}"
model = "ok"
price = {{ input = 1.0, output = 2.0 }}

[models.one-at-a-time]
backend = "openai"
base_url = "{base_url}"
model = "slow-1500"
concurrency = 1

[models.broken]
backend = "openai"
base_url = "{base_url}"
model = "always-503"
max_retries = 0

[models.sluggish]
backend = "openai"
base_url = "{base_url}"
model = "slow-5000"
timeout = {{ connect = 1, read = 0.5, total = 5 }}

[presets.remote-vote]
pool = ["remote", "smollm2-135m"]
mode = "vote"
""")
    port = free_port()
    env = {**os.environ, "GEMFUSE_API_KEY": KEY}
    gemfuse = os.path.join(os.path.dirname(sys.executable), "gemfuse")
    log = open(folder / "server.log", "w")
    proc = subprocess.Popen([gemfuse, "serve", "--port", str(port), "--config", str(config)], stdout=log,
                            stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{url}/health", proc)
    except RuntimeError:
        pytest.fail("server did not start: " + (folder / "server.log").read_text())
    yield {"url": url, "log": folder / "server.log", "proc": proc}
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server["url"] + "/v1", api_key=KEY, max_retries=0, timeout=120)


def test_lists_models_and_presets(client):
    ids = {m.id for m in client.models.list().data}
    assert {"smollm2-135m", "gemma-3-270m", "tiny-vision", "remote", "fusion/default", "fusion/remote-vote"} <= ids


def test_chat_with_a_builtin_model(client):
    response = client.chat.completions.create(model="smollm2-135m", max_tokens=40, temperature=0,
                                              messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert "paris" in response.choices[0].message.content.lower()
    assert response.choices[0].finish_reason == "stop" and response.usage.completion_tokens > 0


def test_streaming_with_usage(client):
    stream = client.chat.completions.create(model="smollm2-135m", max_tokens=20, temperature=0, stream=True,
                                            stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "Say hello."}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text and sum(1 for c in chunks if c.choices and c.choices[0].delta.content) > 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_options_n_seed_and_stop(client):
    response = client.chat.completions.create(model="remote", n=2, seed=3, stop=["zzz"], max_tokens=10,
                                              messages=[{"role": "user", "content": "hi"}])
    assert [c.message.content for c in response.choices] == ["echo: hi", "echo: hi"]
    assert response.usage.completion_tokens == 4


def test_image_part(client):
    url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    response = client.chat.completions.create(model="tiny-vision", max_tokens=4, messages=[{"role": "user", "content": [
        {"type": "text", "text": "Describe"}, {"type": "image_url", "image_url": {"url": url}}]}])
    assert response.usage.prompt_tokens > 15 and response.usage.completion_tokens > 0


def test_audio_part(client):
    audio = base64.b64encode(wav_bytes()).decode()
    response = client.chat.completions.create(model="tiny-audio", max_tokens=4, messages=[{"role": "user", "content": [
        {"type": "text", "text": "Transcribe"}, {"type": "input_audio", "input_audio": {"data": audio, "format": "wav"}}]}])
    assert response.usage.prompt_tokens > 25


def test_fusion_preset_returns_the_trace(client):
    response = client.chat.completions.create(model="fusion/default", max_tokens=24,
                                              messages=[{"role": "user", "content": "What is 2+2?"}])
    fusion = response.model_dump()["fusion"]
    assert response.choices[0].message.content == fusion["text"]
    assert fusion["mode"] == "best-of" and {c["member"] for c in fusion["calls"] if c["role"] == "member"} == {
        "smollm2-135m", "gemma-3-270m"}
    assert response.usage.total_tokens == fusion["usage"]["total_tokens"]


def test_ad_hoc_fusion_block_streams_events(client):
    stream = client.chat.completions.create(model="anything", stream=True, max_tokens=10,
                                            messages=[{"role": "user", "content": "hi"}],
                                            extra_body={"fusion": {"analysis_models": ["remote", "remote"],
                                                                   "mode": "vote"}})
    chunks = [c.model_dump() for c in stream]
    members = [c["fusion_event"]["member"] for c in chunks if c.get("fusion_event")]
    assert sorted(members) == ["remote", "remote#2"]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == "echo: hi"
    final = next(c["fusion"] for c in chunks if c.get("fusion"))
    assert final["votes"] == {"echo hi": 2} and final["cost"] > 0


def raw(server, body, headers=None, **kwargs):
    return httpx.post(server["url"] + "/v1/chat/completions", content=body if isinstance(body, bytes) else
                      json.dumps(body), headers={"Authorization": f"Bearer {KEY}", **(headers or {})}, timeout=60,
                      **kwargs)


@pytest.mark.parametrize("body, status, needle", [
    ({"model": "smollm2-135m", "messages": [{"role": "user", "content": "hi"}], "temprature": 1}, 400, "temprature"),
    (b"{not json", 400, "not valid JSON"),
    ({"model": "smollm2-135m", "messages": [{"role": "user", "content": [{"type": "video"}]}]}, 400,
     "messages[0].content[0]"),
    ({"model": "smollm-135m", "messages": [{"role": "user", "content": "hi"}]}, 404, "Did you mean smollm2-135m"),
    ({"model": "smollm2-135m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(png_bytes()).decode()}}]}]},
     422, "takes only text"),
    ({"model": "broken", "messages": [{"role": "user", "content": "hi"}]}, 502, "overloaded"),
    ({"model": "sluggish", "messages": [{"role": "user", "content": "hi"}]}, 504, "timeout"),
    ({"model": "x", "messages": [{"role": "user", "content": "hi"}], "fusion": {"analysis_models": ["fusion/default"]}},
     400, "a fusion cannot call a fusion"),
    ({"model": "tiny-vision", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.org/cat.png"}}]}]}, 400, "remote image URLs are off"),
])
def test_errors_have_the_openai_shape_and_status(server, body, status, needle):
    response = raw(server, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert needle in error["message"] and set(error) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text


def test_errors_through_the_openai_client(client, server):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server["url"] + "/v1", api_key="wrong", max_retries=0).models.list()
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="remote", messages=[], max_tokens=5)
    assert httpx.get(server["url"] + "/health").status_code == 200, "health needs no key"


def test_body_size_limit(server):
    big = {"model": "remote", "messages": [{"role": "user", "content": "x" * 1_200_000}]}
    response = raw(server, big)
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"


def test_a_full_queue_answers_429(server):
    results = []

    def call():
        results.append(raw(server, {"model": "one-at-a-time", "messages": [{"role": "user", "content": "hi"}]}))

    first = threading.Thread(target=call)
    first.start()
    time.sleep(0.4)
    second = raw(server, {"model": "one-at-a-time", "messages": [{"role": "user", "content": "hi"}]})
    first.join()
    assert second.status_code == 429 and second.json()["error"]["code"] == "queue_full"
    assert results[0].status_code == 200


def test_disconnect_mid_stream_cancels_the_generation(server, client):
    body = {"model": "smollm2-135m", "stream": True, "max_tokens": 400, "temperature": 0,
            "messages": [{"role": "user", "content": "Write a long story about a dragon."}]}
    start = time.perf_counter()
    full = raw(server, {**body, "stream": False})
    full_s = time.perf_counter() - start
    assert full.json()["usage"]["completion_tokens"] > 150
    start = time.perf_counter()
    with httpx.stream("POST", server["url"] + "/v1/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as response:
        for line in response.iter_lines():
            if '"content"' in line and '"content": ""' not in line:
                break  # the client goes away after the first words
    quick = client.chat.completions.create(model="smollm2-135m", max_tokens=4, temperature=0,
                                           messages=[{"role": "user", "content": "Hi"}])
    assert quick.choices[0].message.content is not None
    assert time.perf_counter() - start < full_s * 0.6, "the abandoned generation stopped"


def test_secrets_and_tracebacks_stay_out_of_the_log(server):
    log = server["log"].read_text()
    assert KEY not in log and "Traceback" not in log


def test_refuses_a_public_bind_without_a_key(tmp_path):
    gemfuse = os.path.join(os.path.dirname(sys.executable), "gemfuse")
    env = {k: v for k, v in os.environ.items() if k != "GEMFUSE_API_KEY"}
    result = subprocess.run([gemfuse, "serve", "--host", "0.0.0.0", "--port", str(free_port())], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "refusing to listen on 0.0.0.0 without an API key" in result.stderr


def test_shutdown_finishes_in_flight_requests(tmp_path, upstream):
    import signal

    config = tmp_path / "c.toml"
    config.write_text(f'[models.slow]\nbackend = "openai"\nbase_url = "{upstream[0]}"\nmodel = "slow-1500"\n')
    port = free_port()
    gemfuse = os.path.join(os.path.dirname(sys.executable), "gemfuse")
    proc = subprocess.Popen([gemfuse, "serve", "--port", str(port), "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/health", proc)
    results = []
    worker = threading.Thread(target=lambda: results.append(httpx.post(
        url + "/v1/chat/completions", json={"model": "slow", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30)))
    worker.start()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    worker.join()
    assert results[0].status_code == 200 and results[0].json()["choices"][0]["message"]["content"] == "echo: hi"
    assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained


def test_logprobs_through_the_official_client(client):
    asked = dict(model="smollm2-135m", messages=[{"role": "user", "content": "Name a colour."}], max_tokens=8,
                 temperature=0, logprobs=True, top_logprobs=3)
    whole = client.chat.completions.create(**asked)
    content = whole.choices[0].logprobs.content
    assert "".join(t.token for t in content).strip() == whole.choices[0].message.content.strip()
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 3 and t.bytes for t in content)
    streamed = client.chat.completions.create(**asked, stream=True)
    tokens = [t for chunk in streamed for choice in chunk.choices if choice.logprobs and choice.logprobs.content
              for t in choice.logprobs.content]
    assert [(t.token, round(t.logprob, 4)) for t in tokens] == [(t.token, round(t.logprob, 4)) for t in content]


def test_many_users_at_once_are_answered_together_and_counted(server, client):
    """Eight streams to one built-in GGUF at once: all answered, the same as alone, their decoding overlapped;
    the stats say the model's slots and what it served; the start-up log said its capacity."""
    from concurrent.futures import ThreadPoolExecutor

    def ask(topic: str) -> tuple[str, float, float]:
        first = None
        pieces = []
        for chunk in client.chat.completions.create(model="smollm2-135m", max_tokens=16, temperature=0, stream=True,
                                                    messages=[{"role": "user", "content": f"One fact about {topic}."}]):
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter()
                pieces.append(chunk.choices[0].delta.content)
        return "".join(pieces), first, time.perf_counter()

    topics = "cats rivers bread stars snow trains music glass".split()
    alone = [ask(t)[0] for t in topics[:2]]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(ask, topics))
    assert [text for text, _, _ in together[:2]] == alone and all(text for text, _, _ in together)
    earliest_end = min(last for _, _, last in together)
    assert sum(first < earliest_end for _, first, _ in together) >= 6, "decoded together"
    stats = httpx.get(server["url"] + "/v1/gemfuse/stats", headers={"Authorization": f"Bearer {KEY}"}).json()
    smollm2 = stats["models"]["smollm2-135m"]
    assert smollm2["slots"] == 8 and smollm2["served"] >= 10 and smollm2["in_flight"] == smollm2["queued"] == 0
    assert smollm2["completion_tokens_per_s"] > 0 and 0 < smollm2["latency_p50_s"] <= smollm2["latency_p95_s"]
    assert "smollm2-135m (llamacpp): 8 at once, 0 more wait, then 429" in server["log"].read_text()


async def test_one_gate_per_model_whether_calls_come_direct_through_a_fusion_or_both(tmp_path):
    """A remote model with concurrency = 2 never has more than 2 calls in flight at its upstream."""
    import asyncio

    import httpx

    from gemfuse.registry import Registry
    from gemfuse.serve.app import create_app
    from gemfuse.testing.upstream import create_app as upstream_app
    from gemfuse.testing.upstream import serve_in_thread

    upstream = upstream_app()
    with serve_in_thread(upstream) as base_url:
        config = tmp_path / "config.toml"
        config.write_text(f'[models.slow]\nbackend = "openai"\nbase_url = "{base_url}"\nmodel = "slow-150"\n'
                          'concurrency = 2\n\n[presets.twice]\npool = ["slow", "slow"]\nmode = "vote"\n')
        transport = httpx.ASGITransport(app=create_app(Registry.load(config)))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", timeout=30) as client:
            async def ask(model: str, i: int) -> int:
                reply = await client.post("/v1/chat/completions", json={
                    "model": model, "messages": [{"role": "user", "content": f"q{i}"}]})
                return reply.status_code

            direct = await asyncio.gather(*(ask("slow", i) for i in range(4)))
            assert upstream.state.most_in_flight == 2, "direct calls wait for the model's slots"
            both = await asyncio.gather(*(ask("slow", i) for i in range(2)), *(ask("fusion/twice", i) for i in range(2)))
    assert set(direct) == {200} and set(both) == {200}
    assert upstream.state.most_in_flight == 2, "fusion members and direct calls share the model's slots"
