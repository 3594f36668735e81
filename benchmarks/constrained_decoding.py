"""What a JSON schema or a tool set costs a local model, measured against the same model without one, in one run:

- decode speed: completion tokens/s answering under a schema (a string of at least 2,000 characters, so answers
  run to max_tokens as free text does) against free text, on llama.cpp (SmolLM2 GGUF) and transformers (its -hf
  twin);
- the prompt: time to first token with 20 tools in the prompt (tool_choice auto, a text answer streams) against
  none, and a forced call's whole latency with 20 tools against 1;
- the grammar: llguidance's compile time for a schema the first time and once cached (transformers);
- under load: tokens/s of 16 requests at concurrency 8 with a schema against without (llama.cpp batching).

    python benchmarks/constrained_decoding.py [--tokens 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from gemfuse.messages import Message
from gemfuse.models import grammar
from gemfuse.models.base import GenerateOptions, collect
from gemfuse.registry import Registry

# minLength keeps every constrained answer going to max_tokens, as free text does: equal lengths, equal prompt share
STORY = {"type": "object", "properties": {"story": {"type": "string", "minLength": 2000}}, "required": ["story"],
         "additionalProperties": False}
TOPICS = "cats rivers bread stars snow trains music glass bees clocks maps salt wind paper bridges tea".split()


def tool(i: int) -> dict:
    return {"type": "function", "function": {
        "name": f"tool_{i}", "description": f"Look up fact number {i} about a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]},
                                                        "detail": {"type": "string", "enum": ["short", "long"]}},
                       "required": ["city", "detail"], "additionalProperties": False}}}


def ask(topic: str) -> list[Message]:
    return [Message.user(f"Write a long story about {topic}.")]


async def rate(model, options: GenerateOptions, topics: list[str]) -> float:
    """Completion tokens/s over sequential requests."""
    tokens, seconds = 0, 0.0
    for topic in topics:
        done = await model.generate(ask(topic), options)
        tokens += done.usage.completion_tokens
        seconds += done.latency_s
    return tokens / seconds


async def first_token(model, options: GenerateOptions, rounds: int) -> float:
    """Median seconds to the first streamed piece (or the answer, when nothing streams before it)."""
    times = []
    for i in range(rounds):
        started = time.perf_counter()
        async for _ in model.stream([Message.user(f"Say something about {TOPICS[i]}.")], options):
            break
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def concurrent_rate(model, options: GenerateOptions, requests: int, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(topic: str) -> int:
        async with gate:
            return (await collect(model.name, model.stream(ask(topic), options))).usage.completion_tokens

    started = time.perf_counter()
    counts = await asyncio.gather(*(one(TOPICS[i % len(TOPICS)]) for i in range(requests)))
    return sum(counts) / (time.perf_counter() - started)


async def main(tokens: int, rounds: int) -> None:
    registry = Registry.load()
    topics = TOPICS[:rounds]
    free = GenerateOptions(max_tokens=tokens, temperature=0)
    shaped = free.model_copy(update={"json_schema": STORY})
    print(f"{tokens} tokens a request, {rounds} requests a side, sides alternated\n")
    try:
        for name in ("smollm2-135m", "smollm2-135m-hf"):
            model = registry.get(name)
            await model.generate(ask("warm-up"), shaped)
            plain, constrained = [], []
            for _ in range(2):
                plain.append(await rate(model, free, topics))
                constrained.append(await rate(model, shaped, topics))
            a, b = max(plain), max(constrained)
            print(f"{name:16} free {a:6.1f} tok/s, schema {b:6.1f} tok/s: {b / a:.2f}x (goal >= 0.90x)")
        model = registry.get("smollm2-135m")
        many = [tool(i) for i in range(20)]
        none = await first_token(model, free, rounds)
        twenty = await first_token(model, GenerateOptions(max_tokens=tokens, temperature=0, tools=many,
                                                          tool_choice="auto"), rounds)
        cached = await first_token(model, GenerateOptions(max_tokens=tokens, temperature=0.7, tools=many,
                                                          tool_choice="auto"), rounds)
        print(f"\nsmollm2-135m     first token: no tools {none:.3f} s, 20 tools (auto) {twenty:.3f} s: "
              f"{twenty / none:.2f}x; sampled (the tools' prefix from the prompt cache) {cached:.3f} s: "
              f"{cached / none:.2f}x")
        single = GenerateOptions(max_tokens=tokens, temperature=0, tools=many[:1], tool_choice="required")
        forced = GenerateOptions(max_tokens=tokens, temperature=0, tools=many, tool_choice="required")
        one_s = statistics.median([(await model.generate(ask(t), single)).latency_s for t in topics])
        all_s = statistics.median([(await model.generate(ask(t), forced)).latency_s for t in topics])
        print(f"smollm2-135m     a forced call: 1 tool {one_s:.3f} s, 20 tools {all_s:.3f} s: {all_s / one_s:.2f}x")
        grammar.compiled.cache_clear()
        text = json.dumps({"anyOf": [t["function"]["parameters"] for t in many]})
        started = time.perf_counter()
        grammar.compiled(text)
        cold = time.perf_counter() - started
        started = time.perf_counter()
        grammar.compiled(text)
        warm = time.perf_counter() - started
        print(f"\nllguidance compile of a 20-tool schema: first {cold * 1000:.2f} ms, cached {warm * 1000:.4f} ms")
        plain_8 = await concurrent_rate(model, free, 16, 8)
        shaped_8 = await concurrent_rate(model, shaped, 16, 8)
        print(f"\nsmollm2-135m     16 requests at concurrency 8: free {plain_8:.1f} tok/s, schema {shaped_8:.1f} "
              f"tok/s: {shaped_8 / plain_8:.2f}x")
    finally:
        await registry.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.tokens, arguments.rounds))
