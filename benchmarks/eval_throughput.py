"""Eval throughput over loopback endpoints with fixed delays, in one run:

- the sequential loop most eval scripts use (each item, each model, one call after another);
- the floor: the same calls from a raw asyncio keep-alive HTTP/1.1 client at the same concurrency (benchmark
  code only), which shows what the upstream server itself adds over the ideal;
- `gemfuse.evaluate` at concurrency 32 on a fresh cache (cold), against the ideal: total model time / 32;
- the same eval again on the warm cache.

Three OpenAI-compatible models answer after 50, 80 and 120 ms (a test upstream in its own process).

    python benchmarks/eval_throughput.py [--items 64] [--concurrency 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from gemfuse import evaluate
from gemfuse.evals import load_eval_set
from gemfuse.models.base import GenerateOptions
from gemfuse.registry import Registry
from gemfuse.testing.upstream import serve_in_process

DELAYS_MS = {"m50": 50, "m80": 80, "m120": 120}


def write_config(folder: Path, base_url: str) -> Path:
    path = folder / "config.toml"
    path.write_text("".join(f'[models.{name}]\nbackend = "openai"\nbase_url = "{base_url}"\nmodel = "slow-{ms}"\n'
                            for name, ms in DELAYS_MS.items()))
    return path


async def sequential(config: Path, items) -> float:
    registry = Registry.load(config)
    options = GenerateOptions(max_tokens=96, temperature=0)
    try:
        start = time.perf_counter()
        for item in items:
            for name in DELAYS_MS:
                await registry.get(name).generate(item.messages, options)
        return time.perf_counter() - start
    finally:
        await registry.aclose()


async def raw_floor(port: int, items, concurrency: int) -> float:
    """Every call through bare asyncio streams on `concurrency` keep-alive connections: no client library."""
    import json

    bodies = [json.dumps({"model": f"slow-{ms}", "max_tokens": 96, "temperature": 0,
                          "messages": [m.to_openai() for m in item.messages]}).encode()
              for item in items for ms in DELAYS_MS.values()]
    queue: asyncio.Queue = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while not queue.empty():
            body = queue.get_nowait()
            writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length"))
            await reader.readexactly(length)
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


def timed_eval(config: Path, cache: Path, n: int, concurrency: int) -> float:
    start = time.perf_counter()
    evaluate("builtin:math", models=list(DELAYS_MS), n=n, config=config, cache=cache, dev_fraction=0,
             concurrency=concurrency)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with serve_in_process() as base_url:
        port = int(base_url.rsplit(":", 1)[1].split("/")[0])
        folder = Path(tempfile.mkdtemp(prefix="gemfuse-eval-bench-"))
        config = write_config(folder, base_url)
        os.environ["GEMFUSE_CONFIG"] = str(config)
        items = load_eval_set("builtin:math", args.items).items
        calls = args.items * len(DELAYS_MS)
        model_time = args.items * sum(DELAYS_MS.values()) / 1000
        ideal = model_time / min(args.concurrency, calls)
        floor_name, cold_name = f"raw asyncio client (c={args.concurrency}, floor)", f"gemfuse eval, cold (c={args.concurrency})"
        rows = {"sequential loop": [], floor_name: [], cold_name: [], "gemfuse eval, warm cache": []}
        for round_ in range(args.rounds):
            rows["sequential loop"].append(asyncio.run(sequential(config, items)))
            rows[floor_name].append(
                asyncio.run(raw_floor(port, items, args.concurrency)))
            cache = folder / f"cache-{round_}.sqlite"
            rows[cold_name].append(timed_eval(config, cache, args.items,
                                                                                 args.concurrency))
            rows["gemfuse eval, warm cache"].append(timed_eval(config, cache, args.items, args.concurrency))
        print(f"{args.items} items x {len(DELAYS_MS)} models = {calls} calls; model time {model_time:.2f} s; "
              f"ideal at c={args.concurrency}: {ideal:.3f} s; {args.rounds} rounds, median (min-max)")
        print(f"{'':34} {'seconds':>22} {'items/s':>9} {'vs ideal':>9}")
        for name, times in rows.items():
            median = statistics.median(times)
            print(f"{name:34} {median:9.3f} ({min(times):.3f}-{max(times):.3f}) {calls / median:9.1f} "
                  f"{median / ideal:8.2f}x")
        cold = statistics.median(rows[cold_name])
        warm = statistics.median(rows["gemfuse eval, warm cache"])
        sequential_s = statistics.median(rows["sequential loop"])
        floor = statistics.median(rows[floor_name])
        print(f"cold eval vs sequential loop: {sequential_s / cold:.1f}x faster; over the ideal: "
              f"{(cold / ideal - 1) * 100:+.1f}% (target within 10%); over the raw-client floor: "
              f"{(cold / floor - 1) * 100:+.1f}%")
        print(f"warm re-run vs cold: {cold / warm:.1f}x faster (target over 50x)")


if __name__ == "__main__":
    main()
