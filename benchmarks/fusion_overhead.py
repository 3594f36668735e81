"""What fusion orchestration costs on top of the models themselves, against a naive asyncio.gather, in one run.

Members and judge are OpenAI-compatible endpoints on 127.0.0.1 (a separate process) with seeded log-normal
delays. For every fusion: T / (slowest member + judge) and the absolute overhead T - (slowest member + judge),
where member and judge latencies are measured around each model call. The baseline does the same work with
`asyncio.gather` over the members, then one judge call. Then a quorum run with one straggler.

    python benchmarks/fusion_overhead.py [--fusions 200] [--members 4] [--median-ms 40] [--judge-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from gemfuse.config import Config, ConfigFile
from gemfuse.fusion import afuse
from gemfuse.messages import Message
from gemfuse.models.base import GenerateOptions
from gemfuse.models.openai import OpenAISpec
from gemfuse.registry import Registry
from gemfuse.testing.upstream import serve_in_process

QUESTION = [Message.user("What is 2+2?")]


def registry_for(base_url: str, members: int, median_ms: int, judge_ms: int, straggler_ms: int | None = None) -> Registry:
    specs = {f"m{i}": OpenAISpec(base_url=base_url, model=f"lognormal-{median_ms}-{i}", max_retries=0)
             for i in range(members)}
    if straggler_ms:
        specs[f"m{members - 1}"] = OpenAISpec(base_url=base_url, model=f"slow-{straggler_ms}", max_retries=0)
    specs["judge"] = OpenAISpec(base_url=base_url, model=f"judge-{judge_ms}", max_retries=0)
    return Registry(Config(None, ConfigFile(), specs))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def ours(registry: Registry, pool: list[str], **settings) -> tuple[float, float]:
    start = time.perf_counter()
    result = await afuse(QUESTION, pool=pool, judge="judge", mode="best-of", registry=registry, max_tokens=16,
                         seed=1, **settings)
    total = time.perf_counter() - start
    members = max(c.latency_s for c in result.trace.calls if c.role == "member" and c.ok)
    judge = sum(c.latency_s for c in result.trace.calls if c.role == "judge")
    return total, members + judge


async def naive(registry: Registry, pool: list[str]) -> tuple[float, float]:
    options = GenerateOptions(max_tokens=16)

    async def timed(name, messages):
        start = time.perf_counter()
        completion = await registry.get(name).generate(messages, options)
        return completion, time.perf_counter() - start

    start = time.perf_counter()
    answers = await asyncio.gather(*(timed(name, QUESTION) for name in pool))
    listing = "\n\n".join(f"Answer {i}:\n{c.text}" for i, (c, _) in enumerate(answers, 1))
    _, judge = await timed("judge", [Message.user(f"Pick the best.\n\n{listing}")])
    return time.perf_counter() - start, max(t for _, t in answers) + judge


async def run_many(fn, registry, pool, fusions: int, concurrency: int, **kwargs) -> list[tuple[float, float]]:
    gate = asyncio.Semaphore(concurrency)

    async def one():
        async with gate:
            return await fn(registry, pool, **kwargs)

    return await asyncio.gather(*(one() for _ in range(fusions)))


def report(label: str, samples: list[tuple[float, float]]) -> None:
    ratios = [total / critical for total, critical in samples]
    overhead_ms = [(total - critical) * 1000 for total, critical in samples]
    print(f"  {label:26s} ratio p50 {percentile(ratios, 0.5):.4f}  p95 {percentile(ratios, 0.95):.4f} | "
          f"overhead p50 {percentile(overhead_ms, 0.5):6.2f} ms  p95 {percentile(overhead_ms, 0.95):6.2f} ms")


async def main_async(args, base_url: str) -> None:
    registry = registry_for(base_url, args.members, args.median_ms, args.judge_ms)
    pool = [f"m{i}" for i in range(args.members)]
    await run_many(ours, registry, pool, 8, 8)  # warm the connection pools
    await run_many(naive, registry, pool, 8, 8)
    for concurrency in (1, 64):
        fusions = args.fusions if concurrency > 1 else max(20, args.fusions // 4)
        print(f"concurrency {concurrency}, {fusions} fusions, {args.members} members "
              f"(log-normal, median {args.median_ms} ms) + judge ({args.judge_ms} ms), best-of:")
        report("gemfuse fusion", await run_many(ours, registry, pool, fusions, concurrency))
        report("naive gather baseline", await run_many(naive, registry, pool, fusions, concurrency))
    await registry.aclose()

    straggler_ms = 1500
    registry = registry_for(base_url, args.members, args.median_ms, args.judge_ms, straggler_ms=straggler_ms)
    start = time.perf_counter()
    samples = await run_many(ours, registry, pool, 16, 16, min_answers=args.members - 1, grace_ms=50)
    per_fusion = [total for total, _ in samples]
    print(f"quorum: min_answers {args.members - 1}, grace 50 ms, one member at {straggler_ms} ms: fused latency "
          f"p50 {statistics.median(per_fusion) * 1000:.0f} ms, max {max(per_fusion) * 1000:.0f} ms "
          f"(straggler {straggler_ms} ms; {time.perf_counter() - start:.2f} s for 16 fusions)")
    await registry.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fusions", type=int, default=200)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--median-ms", type=int, default=40)
    parser.add_argument("--judge-ms", type=int, default=20)
    args = parser.parse_args()
    with serve_in_process() as base_url:
        asyncio.run(main_async(args, base_url))


if __name__ == "__main__":
    main()
