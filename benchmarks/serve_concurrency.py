"""Many users at once: completion tokens/s and latency (p50, p95) at concurrency 1, 4, 8 and 16, each user
asking for 64 tokens of a different prompt, in one run, each side in its own process (alternated per concurrency):

- `gemfuse serve` (HTTP, keep-alive, one connection per user) over one built-in llama.cpp model;
- the floor: the same engine (llama.cpp's server engine, xllamacpp) driven in-process with the same slots and
  no server in front; what our server adds is the gap between the two;
- before: llama-cpp-python driving the same GGUF one request at a time (how every GGUF model ran before the
  engine batched), in-process;
- a transformers model through `gemfuse serve`, its requests decoded as one padded batch, beside the same model
  with one slot (one request at a time, as before).

Gemma 3 270M is the base model: its template's stop sequences end most answers within a dozen tokens, so every
side here runs it without them (64 tokens each, as for the others).

    python benchmarks/serve_concurrency.py [--levels 1,4,8,16] [--requests 16] [--tokens 64] [--no-hf]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from gemfuse.devices import cpu_threads
from gemfuse.files import GEMMA3_270M, SMOLLM2, resolve_path
from gemfuse.models.builtin import BUILTIN_SLOTS, builtin_specs
from gemfuse.testing.upstream import free_port, wait_until_up

TOPICS = ("cats rivers bread stars snow trains music glass bees clocks maps salt wind paper bridges tea "
          "owls coral ink silk").split()


def prompts(n: int) -> list[str]:
    return [f"Tell me about {TOPICS[i % len(TOPICS)]}, in detail." for i in range(n)]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def drive(call: Callable[[str], int], texts: list[str], concurrency: int) -> dict:
    """`concurrency` users, each taking the next prompt when its answer is done; tokens/s over the wall time."""
    latencies: list[float] = []
    tokens = [0]
    lock = threading.Lock()
    queue = list(texts)

    def user():
        while True:
            with lock:
                if not queue:
                    return
                text = queue.pop()
            start = time.perf_counter()
            produced = call(text)
            with lock:
                latencies.append(time.perf_counter() - start)
                tokens[0] += produced

    start = time.perf_counter()
    users = [threading.Thread(target=user) for _ in range(concurrency)]
    for thread in users:
        thread.start()
    for thread in users:
        thread.join()
    wall = time.perf_counter() - start
    return {"tok_s": tokens[0] / wall, "p50": pct(latencies, 0.5), "p95": pct(latencies, 0.95), "tokens": tokens[0]}


def http_call(port: int, model: str, tokens: int) -> Callable[[str], int]:
    local = threading.local()

    def call(text: str) -> int:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
        body = {"model": model, "max_tokens": tokens, "temperature": 0,
                "messages": [{"role": "user", "content": text}]}
        response = local.client.post("/v1/chat/completions", json=body)
        response.raise_for_status()
        return int(response.json()["usage"]["completion_tokens"])

    return call


def engine_call(path: str, spec, tokens: int, slots: int) -> tuple[Callable[[str], int], object]:
    """The floor: llama.cpp's server engine in-process with the built-in's settings, asked exactly what gemfuse
    asks it (the same request body), with nothing in front."""
    import xllamacpp

    from gemfuse.messages import Message
    from gemfuse.models.base import GenerateOptions
    from gemfuse.models.llamacpp import engine_params, request_body

    server = xllamacpp.Server(engine_params(spec.model_copy(update={"concurrency": slots}), Path(path)))

    def call(text: str) -> int:
        body = request_body([Message.user(text)], GenerateOptions(max_tokens=tokens, temperature=0), spec)
        body.pop("stream"), body.pop("stream_options")
        return int(server.handle_chat_completions(body)["usage"]["completion_tokens"])

    return call, server


def serial_call(path: str, spec, tokens: int) -> Callable[[str], int]:
    """Before: llama-cpp-python, one request at a time (a lock, as the single worker thread was)."""
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llama = Llama(model_path=path, n_ctx=spec.n_ctx, n_threads=cpu_threads(), verbose=False)
    if spec.chat_template:
        token = lambda i: llama.detokenize([i], special=True).decode("utf-8", "replace")  # noqa: E731
        llama.chat_handler = Jinja2ChatFormatter(spec.chat_template, eos_token=token(llama.token_eos()),
                                                 bos_token=token(llama.token_bos()),
                                                 stop_token_ids=[llama.token_eos()]).to_chat_handler()
    lock = threading.Lock()
    extra = {"stop": spec.stop} if spec.stop else {}

    def call(text: str) -> int:
        with lock:
            llama.reset()
            reply = llama.create_chat_completion([{"role": "user", "content": text}], max_tokens=tokens,
                                                 temperature=0, repeat_penalty=spec.repeat_penalty or 1.0, **extra)
        return int(reply["usage"]["completion_tokens"])

    return call


def bench_specs() -> dict:
    """The built-ins, Gemma without its stop sequences, and the transformers SmolLM2 also with one slot."""
    specs = builtin_specs()
    specs["gemma-3-270m"] = specs["gemma-3-270m"].model_copy(update={"stop": []})
    specs["smollm2-135m-hf-one"] = specs["smollm2-135m-hf"].model_copy(update={"concurrency": 1})
    return specs


def child_server(port: int, names: list[str]) -> None:
    """`gemfuse serve` over only the named models (each side owns its process: two llama.cpp engines in one
    process slow each other's decoding, see docs/models.md)."""
    import uvicorn

    from gemfuse.registry import Registry
    from gemfuse.serve.app import create_app

    registry = Registry.load()
    specs = bench_specs()
    registry.config.specs.clear()
    registry.config.specs.update({name: specs[name] for name in names})
    registry.config.presets.clear()
    registry.config.server.max_queue = 64
    uvicorn.run(create_app(registry), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def child_engine(side: str, name: str, tokens: int, requests: int) -> None:
    """A side driven in-process in its own process: reads a concurrency per line, writes its figures as JSON."""
    gguf = {"smollm2-135m": SMOLLM2, "gemma-3-270m": GEMMA3_270M}[name]
    spec, path = bench_specs()[name], str(resolve_path(gguf))
    call = (engine_call(path, spec, tokens, BUILTIN_SLOTS)[0] if side == "floor" else serial_call(path, spec, tokens))
    texts = prompts(requests)
    call(texts[0])
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps(drive(call, texts, int(line))), flush=True)


class Child:
    """A side in its own process, driven one concurrency at a time."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def __call__(self, level: int) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{level}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def served(names: list[str]):
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--child-server", str(port), *names],
                            env={**os.environ, "GEMFUSE_API_KEY": ""}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_until_up(f"http://127.0.0.1:{port}/health", proc)
    return port, proc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--levels", default="1,4,8,16")
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--no-hf", action="store_true", help="leave out the transformers model")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    texts = prompts(args.requests)
    results: dict[str, dict[str, dict[int, dict]]] = {}
    models = [("smollm2-135m",), ("gemma-3-270m",)] + ([] if args.no_hf else [("smollm2-135m-hf",
                                                                                "smollm2-135m-hf-one")])
    for names in models:
        port, server = served(list(names))
        children: list[Child] = []
        try:
            sides: dict[str, Callable[[int], dict]] = {}
            for name, side in zip(names, ("gemfuse serve", "before: one slot"), strict=False):
                call = http_call(port, name, args.tokens)
                call(texts[0])  # loaded and warm
                sides[side] = lambda level, call=call: drive(call, texts, level)
            if names[0] in ("smollm2-135m", "gemma-3-270m"):
                for side, kind in (("engine in-process (floor)", "floor"),
                                   ("before: llama-cpp-python, one at a time", "before")):
                    children.append(Child("--child-engine", kind, names[0], str(args.tokens), str(args.requests)))
                    sides[side] = children[-1]
            table = results.setdefault(names[0], {})
            for level in levels:
                for side, run in sides.items():  # alternated per level, so drift hits every side alike
                    table.setdefault(side, {})[level] = run(level)
        finally:
            for child in children:
                child.close()
            server.terminate()
            server.wait(timeout=60)
    report(results, levels)


def report(results: dict, levels: list[int]) -> None:
    for model, sides in results.items():
        print(f"\n{model}")
        print(f"  {'side':42} " + " ".join(f"{'c=' + str(c):>26}" for c in levels))
        for side, rows in sides.items():
            cells = [f"{rows[c]['tok_s']:6.1f} tok/s p50 {rows[c]['p50']:5.2f} p95 {rows[c]['p95']:5.2f}"
                     for c in levels]
            print(f"  {side:42} " + " ".join(f"{cell:>26}" for cell in cells))
        ours = sides["gemfuse serve"]
        top = max(levels)
        print(f"  gemfuse serve: c={top} gives {ours[top]['tok_s'] / ours[levels[0]]['tok_s']:.2f}x c={levels[0]}'s tok/s")
        if "before: one slot" in sides:
            before = sides["before: one slot"]
            print("  against one slot: tok/s " + ", ".join(f"c={c} {ours[c]['tok_s'] / before[c]['tok_s']:.2f}x"
                                                            for c in levels)
                  + f"; p95 at c={top} {ours[top]['p95']:.2f} s against {before[top]['p95']:.2f} s")
        if "engine in-process (floor)" in sides:
            floor = sides["engine in-process (floor)"]
            before = sides["before: llama-cpp-python, one at a time"]
            ratios = ", ".join(f"c={c} {ours[c]['tok_s'] / floor[c]['tok_s']:.2f}x" for c in levels)
            print(f"  gemfuse serve against the floor (tok/s): {ratios}")
            print(f"  p95 at c={top}: {ours[top]['p95']:.2f} s against before's {before[top]['p95']:.2f} s "
                  f"({ours[top]['p95'] / before[top]['p95']:.2f}x); tok/s {ours[top]['tok_s'] / before[top]['tok_s']:.2f}x "
                  "before's")
    print("\n" + json.dumps({m: {s: {str(c): {k: round(v, 3) for k, v in r.items()} for c, r in rows.items()}
                                 for s, rows in sides.items()} for m, sides in results.items()}))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child-server":
        child_server(int(sys.argv[2]), sys.argv[3:])
    elif len(sys.argv) > 2 and sys.argv[1] == "--child-engine":
        child_engine(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
