"""What the HTTP server adds, in one run:

1. a fast scripted model (no delay): per-request latency through `gemfuse serve` (keep-alive HTTP/1.1 from
   http.client) against calling the same model in-process, and requests/s at concurrency 16;
2. the built-in SmolLM2 through our server against in-process;
3. decode tokens/s through our server against llama-cpp-python's own OpenAI server on the same GGUF.

    python benchmarks/serve_overhead.py [--requests 400] [--real 6]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import time

import httpx

from gemfuse.files import resolve_path
from gemfuse.messages import Message
from gemfuse.models.base import GenerateOptions
from gemfuse.models.builtin import SMOLLM2
from gemfuse.testing.upstream import free_port, wait_until_up

BODY = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


def child_server(port: int) -> None:
    """Our server over the built-in models plus an instant scripted model."""
    import uvicorn

    from gemfuse.models.builtin import builtin_specs
    from gemfuse.serve.app import create_app
    from gemfuse.testing.scripted import ScriptedModel, scripted_registry

    registry = scripted_registry({"fake": ScriptedModel("one two three four")})
    registry.config.specs.update(builtin_specs())
    uvicorn.run(create_app(registry), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start(command: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "GEMFUSE_API_KEY": ""})
    wait_until_up(f"http://127.0.0.1:{port}/v1/models", proc)
    return proc


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def http_latencies(port: int, body: dict, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port)
    payload = json.dumps(body)
    out = []
    for _ in range(n):
        start = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", payload, {"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        out.append(time.perf_counter() - start)
        assert response.status == 200, data
    conn.close()
    return out


def in_process_latencies(model, n: int, body: dict) -> list[float]:
    """The same request as `body`, straight to the model object."""
    options = GenerateOptions(max_tokens=body["max_tokens"], temperature=body.get("temperature"))
    messages = [Message.user(body["messages"][0]["content"])]

    async def run():
        out = []
        for _ in range(n):
            start = time.perf_counter()
            await model.generate(messages, options)
            out.append(time.perf_counter() - start)
        return out
    return asyncio.run(run())


async def requests_per_second(port: int, n: int, concurrency: int) -> float:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one():
            async with gate:
                (await client.post("/v1/chat/completions", json=BODY)).raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return n / (time.perf_counter() - start)


def stream_rate(port: int, model: str, prompt: str, max_tokens: int) -> float:
    """Decode tokens/s of one streamed answer (content chunks after the first, over their time)."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True}
    stamps = []
    with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith("data:") and '"content"' in line and '"content": ""' not in line \
                    and '"content":""' not in line:
                stamps.append(time.perf_counter())
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 2 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--real", type=int, default=6, help="requests to the real model")
    parser.add_argument("--rounds", type=int, default=7, help="alternating decode rounds per server")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_server(args.child)

    from gemfuse.registry import Registry
    from gemfuse.testing.scripted import ScriptedModel

    ours_port = free_port()
    ours = start([sys.executable, __file__, "--child", str(ours_port)], ours_port)
    try:
        http_latencies(ours_port, BODY, 50)  # warm up
        through = http_latencies(ours_port, BODY, args.requests)
        direct = in_process_latencies(ScriptedModel("one two three four"), args.requests, BODY)
        print(f"fake model, {args.requests} sequential requests:")
        print(f"  through server  p50 {pct(through, .5) * 1000:6.3f} ms  p95 {pct(through, .95) * 1000:6.3f} ms")
        print(f"  in-process      p50 {pct(direct, .5) * 1000:6.3f} ms  p95 {pct(direct, .95) * 1000:6.3f} ms")
        print(f"  server overhead p50 {(pct(through, .5) - pct(direct, .5)) * 1000:6.3f} ms per request")
        rps = asyncio.run(requests_per_second(ours_port, args.requests, 16))
        print(f"  throughput at concurrency 16: {rps:.0f} requests/s")

        real_body = {"model": "smollm2-135m", "messages": [{"role": "user", "content": "Say hello."}],
                     "max_tokens": 16, "temperature": 0}
        http_latencies(ours_port, real_body, 1)
        through = http_latencies(ours_port, real_body, args.real)
        registry = Registry.load()
        model = registry.get("smollm2-135m")
        in_process_latencies(model, 1, real_body)  # load and warm up, as the server was
        direct = in_process_latencies(model, args.real, real_body)
        print(f"smollm2-135m, 16 tokens, {args.real} requests: through server p50 {pct(through, .5) * 1000:.1f} ms, "
              f"in-process p50 {pct(direct, .5) * 1000:.1f} ms, ratio {pct(through, .5) / pct(direct, .5):.3f}")
        asyncio.run(registry.aclose())
    finally:
        ours.terminate()
        ours.wait(timeout=30)

    # decode speed: our server vs llama-cpp-python's server, same GGUF, same threads; both started once and
    # asked alternately, round after round, so a slow moment of the machine hits both
    prompt = "Write a short story about a dragon."
    servers = {}
    try:
        for label in ("gemfuse", "llama-cpp-python"):
            port = free_port()
            command = ([sys.executable, __file__, "--child", str(port)] if label == "gemfuse" else
                       [sys.executable, "-m", "llama_cpp.server", "--model", str(resolve_path(SMOLLM2)), "--port",
                        str(port), "--n_ctx", "2048", "--n_threads", str(os.cpu_count()), "--model_alias",
                        "smollm2-135m"])
            servers[label] = (start(command, port), port)
            stream_rate(port, "smollm2-135m", prompt, 16)  # load and warm
        rates: dict[str, list[float]] = {label: [] for label in servers}
        ratios = []
        for _ in range(args.rounds):
            for label, (_, port) in servers.items():
                rates[label].append(stream_rate(port, "smollm2-135m", prompt, 128))
            ratios.append(rates["gemfuse"][-1] / rates["llama-cpp-python"][-1])
    finally:
        for server, _ in servers.values():
            server.terminate()
            server.wait(timeout=30)
    print(f"decode tokens/s, streamed, {args.rounds} alternating rounds (median): gemfuse "
          f"{statistics.median(rates['gemfuse']):.1f}, llama-cpp-python server "
          f"{statistics.median(rates['llama-cpp-python']):.1f}; ratio median {statistics.median(ratios):.3f} "
          f"(spread {min(ratios):.3f}-{max(ratios):.3f})")

if __name__ == "__main__":
    main()
