"""A scriptable OpenAI-compatible upstream on 127.0.0.1, for fault injection and benchmarks.

The request's `model` field picks a behaviour, so one server covers every case:

    ok            answers "echo: <last user text>" (streamed or not), with usage
    slow-<ms>     waits <ms> milliseconds first, then answers like ok
    lognormal-<median ms>-<seed>  waits a seeded log-normal delay (sigma 0.5) first; delays are recorded
    judge-<ms>    waits <ms>, then answers {"best": 1} like a judge
    no-schema     400 when the request carries a response_format (many endpoints take none); else like ok
    no-logprobs   400 when the request asks for logprobs; else like ok (every other model gives each word -0.25,
                  and top_logprobs alternatives below it)
    top-5         400 when the request asks for more than 5 top_logprobs (endpoints cap them); else like ok
    429-then-ok   first call of each test: 429 with Retry-After; afterwards ok
    500-then-ok   first call: 500; afterwards ok
    always-503    always 503
    auth          401 with a provider message that echoes the bearer token (providers do this)
    bad           400 with a provider message
    garbage       200 with a body that is not JSON (streamed: an event that is not JSON)
    cut           streamed: two deltas, then the connection drops without [DONE]
    stall         streamed: one delta, then silence
    call:<json>, tools, no-tools    tools and schemas (tool_answers.py)

`app.state.hold_after = N` holds every request after the N-th until it is set back to None (a test can then
kill its client at a known point); `app.state.answered` counts the requests let through, by request body, and
`app.state.held` the requests waiting (a held request whose client has gone is dropped, never answered), and
`app.state.peers` the client address:port pairs seen (one per connection); `app.state.most_in_flight` the most
slow-<ms> requests that waited at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from . import tool_answers

RETRY_AFTER_S = 0.3


def _answer_text(body: dict) -> str:
    messages = body.get("messages") or [{}]
    content = messages[-1].get("content", "")
    if isinstance(content, list):
        content = " ".join(p.get("text", f"[{p.get('type')}]") for p in content)
    return f"echo: {content}"


def pieces(text: str) -> list[str]:
    return [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))]


def _logprobs(body: dict, tokens: list[str]) -> dict | None:
    """Each word -0.25, its alternatives below it, when the request asks (as OpenAI's shape has it)."""
    if not body.get("logprobs"):
        return None
    top = int(body.get("top_logprobs") or 0)
    return {"content": [{"token": t, "logprob": -0.25, "bytes": list(t.encode()),
                         "top_logprobs": [{"token": t if k == 0 else f"{t}~{k}", "logprob": -0.25 - k,
                                           "bytes": list(t.encode())} for k in range(top)]} for t in tokens]}


def _usage(body: dict, text: str) -> dict:
    prompt = sum(len(json.dumps(m.get("content", ""))) // 4 for m in body.get("messages", []))
    completion = len(text.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def create_app():
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route

    calls: Counter = Counter()
    delays: dict[str, list[float]] = {}
    rngs: dict[str, random.Random] = {}

    def error(status: int, message: str, headers: dict | None = None) -> Response:
        return JSONResponse({"error": {"message": message, "type": "upstream_test", "code": status}},
                            status_code=status, headers=headers)

    async def chat(request: Request) -> Response:
        body = await request.json()
        state = request.app.state
        if state.hold_after is not None and sum(state.answered.values()) >= state.hold_after:
            state.held += 1
            try:
                while state.hold_after is not None and sum(state.answered.values()) >= state.hold_after:
                    if await request.is_disconnected():  # the client is gone: this request was never answered
                        return Response(status_code=499)
                    await asyncio.sleep(0.01)
            finally:
                state.held -= 1
        state.answered[json.dumps(body, sort_keys=True)] += 1
        state.peers.add(tuple(request.client) if request.client else None)  # one per TCP connection
        behaviour = str(body.get("model", "ok"))
        calls[behaviour] += 1
        stream = bool(body.get("stream"))
        if behaviour.startswith("slow-"):
            state.in_flight += 1
            state.most_in_flight = max(state.most_in_flight, state.in_flight)
            try:
                await asyncio.sleep(int(behaviour.removeprefix("slow-")) / 1000)
            finally:
                state.in_flight -= 1
        elif behaviour.startswith("lognormal-"):
            median_ms, seed = behaviour.removeprefix("lognormal-").split("-")
            rng = rngs.setdefault(behaviour, random.Random(int(seed)))
            delay = float(median_ms) / 1000 * rng.lognormvariate(0, 0.5)
            delays.setdefault(behaviour, []).append(delay)
            await asyncio.sleep(delay)
        elif behaviour.startswith("judge-"):
            await asyncio.sleep(int(behaviour.removeprefix("judge-")) / 1000)
        elif behaviour == "429-then-ok" and calls[behaviour] == 1:
            return error(429, "rate limited, slow down", {"Retry-After": str(RETRY_AFTER_S)})
        elif behaviour == "500-then-ok" and calls[behaviour] == 1:
            return error(500, "internal error")
        elif behaviour == "always-503":
            return error(503, "overloaded")
        elif behaviour == "auth":
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            return error(401, f"Incorrect API key provided: {token}")
        elif behaviour == "no-schema" and "response_format" in body:
            return error(400, "response_format is not supported by this model")
        elif behaviour == "no-logprobs" and body.get("logprobs"):
            return error(400, "logprobs are not supported by this model")
        elif behaviour == "top-5" and int(body.get("top_logprobs") or 0) > 5:
            return error(400, "top_logprobs must be at most 5")
        elif behaviour == "bad":
            return error(400, "max_tokens is too large for this model")
        elif behaviour == "garbage" and not stream:
            return PlainTextResponse("<html>502 Bad Gateway</html>", status_code=200)
        elif tool_answers.refused(behaviour, body):
            return error(400, str(tool_answers.refused(behaviour, body)))
        text = '{"best": 1, "reason": "test judge"}' if behaviour.startswith("judge-") else _answer_text(body)
        text, made = tool_answers.answer(behaviour, body) or (text, [])
        finish = "tool_calls" if made else "stop"
        created = int(time.time())
        if not stream:
            message = {"role": "assistant", "content": text or None, **({"tool_calls": made} if made else {})}
            return JSONResponse({"id": "chatcmpl-test", "object": "chat.completion", "created": created,
                                 "model": behaviour, "usage": _usage(body, text),
                                 "choices": [{"index": 0, "finish_reason": finish, "message": message,
                                              "logprobs": _logprobs(body, pieces(text))}]})

        def event(delta: dict, finish=None, tokens=None) -> str:
            return "data: " + json.dumps({"id": "chatcmpl-test", "object": "chat.completion.chunk",
                                          "created": created, "model": behaviour,
                                          "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                                       "logprobs": _logprobs(body, tokens) if tokens else None}]}) + "\n\n"

        async def events():
            words = text.split(" ")
            yield event({"role": "assistant"})
            if behaviour == "garbage":
                yield "data: {not json\n\n"
                return
            for index, call in enumerate(made):  # as OpenAI streams a call: its arguments in pieces
                arguments = call["function"]["arguments"]
                half = len(arguments) // 2
                yield event({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                             "function": {"name": call["function"]["name"],
                                                          "arguments": arguments[:half]}}]})
                yield event({"tool_calls": [{"index": index, "function": {"arguments": arguments[half:]}}]})
            for i, word in enumerate(words if text else []):
                if behaviour == "cut" and i == 2:
                    raise ConnectionResetError("upstream test: connection cut")
                if behaviour == "stall" and i == 1:
                    await asyncio.sleep(3600)
                piece = word if i == 0 else " " + word
                yield event({"content": piece}, tokens=[piece])
            yield event({}, finish)
            if (body.get("stream_options") or {}).get("include_usage"):
                yield "data: " + json.dumps({"id": "chatcmpl-test", "object": "chat.completion.chunk",
                                             "choices": [], "usage": _usage(body, text)}) + "\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def image(request: Request) -> Response:
        """GET /files/red.png, /files/big.png (3 MB, not an image past its first bytes), /files/redirect."""
        from .media import png_bytes

        name = request.path_params["name"]
        if name == "redirect":
            return Response(status_code=302, headers={"Location": "/files/red.png"})
        if name == "big.png":
            return Response(png_bytes()[:8] + b"\0" * 3_000_000, media_type="image/png")
        return Response(png_bytes(), media_type="image/png")

    async def embeddings(request: Request) -> Response:
        """A vector of 8 numbers per text, from its characters: the same text, the same vector."""
        body = await request.json()
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        vectors = [[(sum(ord(c) for c in text[k::8]) % 97) / 97 for k in range(8)] for text in texts]
        return JSONResponse({"object": "list", "model": body.get("model"),
                             "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
                             "usage": {"prompt_tokens": sum(len(t.split()) for t in texts),
                                       "total_tokens": sum(len(t.split()) for t in texts)}})

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "ok", "object": "model"}]})

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                            Route("/v1/models", models, methods=["GET"]),
                            Route("/v1/embeddings", embeddings, methods=["POST"]),
                            Route("/files/{name}", image, methods=["GET"])])
    app.state.calls = calls
    app.state.delays = delays
    app.state.hold_after = None
    app.state.answered = Counter()
    app.state.held = 0  # requests waiting at the hold
    app.state.in_flight = app.state.most_in_flight = 0  # slow-<ms> requests waiting at once, and the most seen
    app.state.peers = set()  # the client (address, port) pairs seen: how many connections were opened
    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_in_thread(app, port: int | None = None) -> Iterator[str]:
    """Run an ASGI app with uvicorn on 127.0.0.1 in a background thread; yields its base URL (…/v1)."""
    import uvicorn

    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test upstream did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=5)


@contextmanager
def serve_in_process() -> Iterator[str]:
    """The upstream in a process of its own (so it takes no CPU from the caller's event loop); yields its base
    URL (…/v1) once it answers, and stops it afterwards."""
    import subprocess
    import sys

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "gemfuse.testing.upstream", "--port", str(port)])
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_until_up(f"{base_url}/models", server)
        yield base_url
    finally:
        server.terminate()
        server.wait(timeout=10)


def wait_until_up(url: str, proc=None, timeout: float = 60.0) -> None:
    """Poll `url` until it answers 200; fail early if the server process `proc` exits."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            if proc is not None:
                proc.kill()
            raise RuntimeError(f"{url} did not come up within {timeout:g} s")
        time.sleep(0.1)


def main() -> None:
    """Serve the upstream in a process of its own: `python -m gemfuse.testing.upstream --port 8123`."""
    import uvicorn

    parser = argparse.ArgumentParser(description="a scriptable OpenAI-compatible test upstream")
    parser.add_argument("--port", type=int, default=8123)
    args = parser.parse_args()
    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, log_level="warning", lifespan="off")


if __name__ == "__main__":
    main()
