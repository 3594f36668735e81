"""`gemfuse serve --workers N`: fusion requests per second at a fixed concurrency, 1 worker against 2, run
alternately over several rounds; medians and spread printed.

Three remote members (the test upstream, its own process, 20 ms each) fused by vote, behind the server. The
load comes from a hand-written HTTP/1.1 keep-alive client (raw asyncio streams, one connection per
concurrent client) so the client is not the bottleneck. On this 2-core machine the upstream, the workers and
the client share two cores: read the ratio, not the absolute figures.

    python benchmarks/serve_workers.py [--concurrency 128] [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gemfuse.testing.upstream import free_port, serve_in_process, wait_until_up


async def one_client(port: int, body: bytes, stop_at: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    try:
        while time.perf_counter() < stop_at:
            writer.write(request)
            await writer.drain()
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            counts[0 if b" 200 " in status else 1] += 1
    finally:
        writer.close()


async def load(port: int, concurrency: int, seconds: float) -> tuple[float, int]:
    body = json.dumps({"model": "fusion/remote", "messages": [{"role": "user", "content": "2+2?"}]}).encode()
    counts = [0, 0]
    started = time.perf_counter()
    await asyncio.gather(*(one_client(port, body, started + seconds, counts) for _ in range(concurrency)))
    return counts[0] / (time.perf_counter() - started), counts[1]


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (the workers), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def run_server(config: Path, workers: int, concurrency: int, seconds: float) -> tuple[float, int, float]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gemfuse.cli", "serve", "--port", str(port), "--workers",
                             str(workers), "--config", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/health", proc)
        asyncio.run(load(port, 8, 1.0))  # warm every worker's connections
        before = tree_cpu_seconds(proc.pid)
        rate, errors = asyncio.run(load(port, concurrency, seconds))
        cpu_per_fusion = (tree_cpu_seconds(proc.pid) - before) / max(1, rate * seconds)
        return rate, errors, cpu_per_fusion
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ["UPSTREAM_KEY"] = "sk-bench"
    with serve_in_process() as base_url, tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "remote.toml"
        config.write_text("".join(f'[models.r{i}]\nbackend = "openai"\nbase_url = "{base_url}"\nmodel = "slow-20"\n'
                                  f'api_key_env = "UPSTREAM_KEY"\n\n' for i in range(3))
                          + '[presets.remote]\npool = ["r0", "r1", "r2"]\nmode = "vote"\n')
        rates: dict[int, list[float]] = {1: [], 2: []}
        cpu: dict[int, list[float]] = {1: [], 2: []}
        failed = 0
        for _ in range(args.rounds):
            for workers in (1, 2):
                rate, errors, per_fusion = run_server(config, workers, args.concurrency, args.seconds)
                rates[workers].append(rate)
                cpu[workers].append(per_fusion)
                failed += errors
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    print(f"fusion requests/s at concurrency {args.concurrency}, {args.rounds} rounds, {os.cpu_count()} cores "
          f"(3 remote members at 20 ms, vote); non-200 answers: {failed}")
    for workers, values in rates.items():
        print(f"  {workers} worker{'s' if workers > 1 else ' '}: median {statistics.median(values):7.1f}  "
              f"(spread {min(values):.1f}-{max(values):.1f}); server CPU per fusion "
              f"{statistics.median(cpu[workers]) * 1000:.2f} ms")
    print(f"  2 workers / 1 worker: {two / one:.2f}x; one core's worth of server CPU serves about "
          f"{1 / statistics.median(cpu[1]):.0f} fusions/s")


if __name__ == "__main__":
    main()
