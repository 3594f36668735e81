"""What a fusion costs on top of its models, against the floor, in one run.

Three members answer after 50 / 80 / 120 ms and a judge after 40 ms (the test upstream, in its own process,
over loopback). The floor is a hand-written HTTP/1.1 keep-alive client on raw asyncio streams (benchmark code
only): the members' requests at once, then the judge's request with their answers (vote needs no judge, so
its floor is the members alone). Contenders, alternated within each round: the floor, aiohttp + gather,
httpx + gather, and gemfuse's vote, best-of and merge. For each: p50 and p95 latency, client CPU per fusion
(this process's CPU time / fusions), the ratio of its p50 to the floor's in the same round, and the spread of
p50 across rounds. Then a quorum run: one member 1.5 s late, min_answers 2, grace 50 ms.

    python benchmarks/fusion_overhead.py [--rounds 3] [--fusions 128] [--no-httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from urllib.parse import urlsplit

from gemfuse.config import Config, ConfigFile
from gemfuse.fusion import afuse
from gemfuse.models.openai import OpenAISpec
from gemfuse.registry import Registry
from gemfuse.testing.upstream import serve_in_process

MEMBERS = ["slow-50", "slow-80", "slow-120"]
JUDGE = "judge-40"
QUESTION = "What is 2+2?"


def body(model: str, content: str) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 16,
                       "stream": False}).encode()


def judge_prompt(answers: list[str]) -> str:
    return "Pick the best answer.\n\n" + "\n\n".join(f"Answer {i}:\n{a}" for i, a in enumerate(answers, 1))


def answer_of(payload: bytes) -> str:
    return json.loads(payload)["choices"][0]["message"]["content"]


class RawPool:
    """The floor: keep-alive connections on raw asyncio streams, no HTTP library at all."""

    def __init__(self, base_url: str):
        parts = urlsplit(base_url)
        self.host, self.port, self.path = parts.hostname, parts.port, parts.path.rstrip("/") + "/chat/completions"
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, payload: bytes) -> bytes:
        if self.idle:
            reader, writer = self.idle.pop()
            try:
                return await self._exchange(reader, writer, payload)
            except (ConnectionError, asyncio.IncompleteReadError):  # the server closed it while idle
                writer.close()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return await self._exchange(reader, writer, payload)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> bytes:
        writer.write(f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        await writer.drain()
        if not await reader.readline():
            raise ConnectionResetError("closed")
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        data = await reader.readexactly(length)
        self.idle.append((reader, writer))
        return data

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def gathered(post, judge: bool) -> None:
    answers = await asyncio.gather(*(post(body(m, QUESTION)) for m in MEMBERS))
    if judge:
        await post(body(JUDGE, judge_prompt([answer_of(a) for a in answers])))


def contenders(base_url: str, with_httpx: bool) -> dict:
    import aiohttp
    import httpx

    raw = RawPool(base_url)
    state: dict = {}

    async def aiohttp_post(payload: bytes) -> bytes:
        if "aiohttp" not in state:
            state["aiohttp"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        async with state["aiohttp"].post(base_url + "/chat/completions", data=payload,
                                         headers={"Content-Type": "application/json"}) as response:
            return await response.read()

    async def httpx_post(payload: bytes) -> bytes:
        if "httpx" not in state:
            state["httpx"] = httpx.AsyncClient(limits=httpx.Limits(max_connections=256))
        response = await state["httpx"].post(base_url + "/chat/completions", content=payload,
                                             headers={"Content-Type": "application/json"})
        return response.content

    specs = {m: OpenAISpec(base_url=base_url, model=m, max_retries=0) for m in [*MEMBERS, JUDGE]}
    registry = Registry(Config(None, ConfigFile(), specs))

    def ours(mode: str):
        async def fuse():
            await afuse(QUESTION, pool=MEMBERS, judge=None if mode == "vote" else JUDGE, mode=mode,
                        registry=registry, max_tokens=16, judge_max_tokens=16, seed=1)
        return fuse

    table = {
        "floor (raw streams)": (lambda: gathered(raw.post, True), "judge"),
        "floor, members only": (lambda: gathered(raw.post, False), "members"),
        "aiohttp + gather": (lambda: gathered(aiohttp_post, True), "judge"),
        "gemfuse vote": (ours("vote"), "members"),
        "gemfuse best-of": (ours("best-of"), "judge"),
        "gemfuse merge": (ours("merge"), "judge"),
    }
    if with_httpx:
        table["httpx + gather"] = (lambda: gathered(httpx_post, True), "judge")

    async def close():
        raw.close()
        if "aiohttp" in state:
            await state["aiohttp"].close()
        if "httpx" in state:
            await state["httpx"].aclose()
        await registry.aclose()

    return {"table": table, "close": close, "registry": registry}


async def measure(fn, fusions: int, concurrency: int) -> tuple[list[float], float]:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def one():
        async with gate:
            start = time.perf_counter()
            await fn()
            latencies.append(time.perf_counter() - start)

    cpu = time.process_time()
    await asyncio.gather(*(one() for _ in range(fusions)))
    return latencies, (time.process_time() - cpu) / fusions


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def main_async(args, base_url: str) -> None:
    parts = contenders(base_url, not args.no_httpx)
    table = parts["table"]
    for fn, _ in table.values():  # open every contender's connections
        await measure(fn, 16, 16)
    for concurrency in (1, 64):
        fusions = args.fusions if concurrency > 1 else max(16, args.fusions // 4)
        rows: dict[str, dict[str, list[float]]] = {name: {"p50": [], "p95": [], "cpu": [], "ratio": []} for name in table}
        for _ in range(args.rounds):
            floors = {}
            for name, (fn, kind) in table.items():
                latencies, cpu = await measure(fn, fusions, concurrency)
                p50 = percentile(latencies, 0.5)
                if name.startswith("floor"):
                    floors[kind] = p50
                row = rows[name]
                row["p50"].append(p50)
                row["p95"].append(percentile(latencies, 0.95))
                row["cpu"].append(cpu)
                row["ratio"].append(p50 / floors[kind])
        print(f"\nconcurrency {concurrency}: {fusions} fusions x {args.rounds} rounds; members {MEMBERS}, judge "
              f"{JUDGE} (ideal: 120 ms members, 160 ms with the judge)")
        print(f"  {'contender':22s} {'p50 ms':>8s} {'p95 ms':>8s} {'CPU/fusion ms':>14s} {'p50 / floor':>12s} "
              f"{'p50 spread ms':>16s}")
        for name, row in rows.items():
            print(f"  {name:22s} {statistics.median(row['p50']) * 1000:8.1f} {statistics.median(row['p95']) * 1000:8.1f}"
                  f" {statistics.median(row['cpu']) * 1000:14.2f} {statistics.median(row['ratio']):12.3f}"
                  f" {min(row['p50']) * 1000:7.1f}-{max(row['p50']) * 1000:.1f}")
    registry = parts["registry"]
    registry.config.specs["late"] = OpenAISpec(base_url=base_url, model="slow-1500", max_retries=0)
    start = time.perf_counter()

    async def quorum():
        return await afuse(QUESTION, pool=[*MEMBERS[:2], "late"], mode="vote", registry=registry, max_tokens=16,
                           min_answers=2, grace_ms=50)

    results = await asyncio.gather(*(quorum() for _ in range(16)))
    totals = [r.trace.phases["total"] for r in results]
    print(f"\nquorum: min_answers 2, grace 50 ms, one member at 1500 ms: fused p50 {statistics.median(totals) * 1000:.0f}"
          f" ms, max {max(totals) * 1000:.0f} ms ({time.perf_counter() - start:.2f} s for 16 fusions)")
    await parts["close"]()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fusions", type=int, default=128)
    parser.add_argument("--no-httpx", action="store_true", help="leave out the httpx contender (slow at c=64)")
    args = parser.parse_args()
    with serve_in_process() as base_url:
        asyncio.run(main_async(args, base_url))


if __name__ == "__main__":
    main()
