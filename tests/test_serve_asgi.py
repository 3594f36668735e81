"""The server's status codes, error mapping and SSE, in-process: httpx's ASGI transport over the app, with
scripted models (no subprocess, no port). The subprocess tests in test_serve.py cover what needs a real
uvicorn: body limits, disconnects, shutdown, the official client."""

import json

import httpx
import pytest

from gemfuse.errors import AuthError, BadRequestError, ModelTimeoutError, RateLimitError, UpstreamError
from gemfuse.serve.app import create_app
from gemfuse.testing.scripted import ScriptedModel, scripted_registry


def client_for(**models) -> httpx.AsyncClient:
    registry = scripted_registry(models)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(registry)), base_url="http://127.0.0.1")


def ask(model: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


async def test_whole_answer_and_usage():
    async with client_for(echo=ScriptedModel("one two three")) as client:
        reply = (await client.post("/v1/chat/completions", json=ask("echo", max_tokens=8))).json()
    assert reply["choices"][0]["message"]["content"] == "one two three"
    assert reply["choices"][0]["finish_reason"] == "stop" and reply["usage"]["completion_tokens"] > 0


async def test_sse_deltas_usage_and_done():
    async with client_for(echo=ScriptedModel("one two three")) as client:
        response = await client.post("/v1/chat/completions", json=ask(
            "echo", stream=True, stream_options={"include_usage": True}))
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "one two three" and chunks[-1]["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize("failure, status, code", [
    (RateLimitError("slow down", retry_after=1.0), 429, "upstream_rate_limited"),
    (ModelTimeoutError("too slow"), 504, "upstream_timeout"),
    (UpstreamError("provider said: boom", status=500), 502, None),
    (AuthError("provider said: bad key", status=401), 502, None),
    (BadRequestError("provider said: no", status=400), 400, "upstream_bad_request"),
    (RuntimeError("a bug with a secret sk-123"), 500, None),
])
async def test_model_failures_map_to_openai_shaped_statuses(failure, status, code):
    async with client_for(broken=ScriptedModel(failure)) as client:
        response = await client.post("/v1/chat/completions", json=ask("broken"))
    body = response.json()
    assert response.status_code == status and set(body) == {"error"} and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    assert "sk-123" not in response.text and "Traceback" not in response.text


async def test_request_errors_name_what_is_wrong():
    async with client_for(echo=ScriptedModel("ok"), echoes=ScriptedModel("ok")) as client:
        unknown_field = await client.post("/v1/chat/completions", json=ask("echo", tempreature=0))
        unknown_model = await client.post("/v1/chat/completions", json=ask("ecko"))
        no_role = await client.post("/v1/chat/completions", json={"model": "echo", "messages": [{"content": "x"}]})
        bad_fusion = await client.post("/v1/chat/completions",
                                       json=ask("echo", fusion={"analysis_models": ["nope"]}))
    assert unknown_field.status_code == 400 and "tempreature" in unknown_field.json()["error"]["message"]
    assert unknown_model.status_code == 404 and "echo" in unknown_model.json()["error"]["message"]
    assert no_role.status_code == 400 and "messages[0]" in no_role.json()["error"]["message"]
    assert bad_fusion.status_code == 400 and "nope" in bad_fusion.json()["error"]["message"]
