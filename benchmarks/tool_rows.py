"""What tool calls cost in the loop, against the same work without them, in one run.

1. Training: supervised tokens/s of the built-in Gemma 3 270M on rows with tools and calls against text rows of
   the same tokens (each tool row rendered to plain turns: the tools as the system text, the call as the
   answer's text), each side in its own process (tune_throughput.py's gemfuse side), alternating. Goal: within 5%.
   A third side trains the tool rows with `data.shared_prefix` off (each row runs the tool definitions itself):
   what running a batch's shared beginning once gains.
2. Labelling: a tool-call distil label of N prompts through a voting pool of three loopback OpenAI-compatible
   upstreams (real HTTP, answering calls) against the eval harness asking the same fusion the same prompts.
   Goal: within 1.2x.

    python benchmarks/tool_rows.py [--steps 10] [--rounds 2] [--prompts 200] [--skip-training]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def tool_and_text_rows(folder: Path) -> tuple[Path, Path]:
    """Rows with tools and calls (the call task's held-out rows, which carry right calls), and the same turns as
    plain text rows."""
    from gemfuse.data.schema import read_jsonl
    from gemfuse.data.validate import conversation
    from gemfuse.testing.call_task import call_task

    task = call_task(folder / "task", per_phrasing=1, held_per_phrasing=8)
    text_rows = []
    for example in read_jsonl(task.held_out):
        turns = conversation(example)
        text_rows.append({"messages": [{"role": t["role"], "content": "".join(p["text"] for p in t["content"])}
                                       for t in turns]})
    text = folder / "text.jsonl"
    text.write_text("".join(json.dumps(r) + "\n" for r in text_rows))
    return task.held_out, text


def train_side(data: Path, steps: int, side: str = "gemfuse") -> dict:
    command = [sys.executable, str(HERE / "tune_throughput.py"), "--side", side, "--model", "gemma-3-270m-hf",
               "--data", str(data), "--steps", str(steps), "--batch", "4", "--max-length", "1024", "--warmup", "2",
               "--dtype", "auto"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"training failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def training(folder: Path, steps: int, rounds: int) -> None:
    tools, text = tool_and_text_rows(folder)
    from gemfuse.data.target import load_target
    from gemfuse.data.validate import validate

    target = load_target("gemma3")
    sizes = {name: sum(validate(path, target).tokens) for name, path in (("tools", tools), ("text", text))}
    found: dict[str, list[float]] = {"tools": [], "text": [], "tools-unshared": []}
    for _ in range(rounds):
        for name, path, side in (("text", text, "gemfuse"), ("tools", tools, "gemfuse"),
                                 ("tools-unshared", tools, "gemfuse-unshared")):
            found[name].append(train_side(path, steps, side)["tokens_per_s"])
            print(f"  {name}: {found[name][-1]:.1f} supervised tok/s", file=sys.stderr, flush=True)
    tools_rate, text_rate = statistics.median(found["tools"]), statistics.median(found["text"])
    print(f"training, Gemma 3 270M, batch 4, {steps} steps (2 warm-up), {rounds} rounds; tokens in the rows: "
          f"tools {sizes['tools']}, text {sizes['text']}")
    print(f"  supervised tok/s: text {text_rate:.1f} ({min(found['text']):.1f}-{max(found['text']):.1f}), tools "
          f"{tools_rate:.1f} ({min(found['tools']):.1f}-{max(found['tools']):.1f}); ratio tools/text "
          f"{tools_rate / text_rate:.3f}x (goal >= 0.95x)")
    unshared = statistics.median(found["tools-unshared"])
    print(f"  tools with each row running its tool definitions itself (data.shared_prefix off): {unshared:.1f} "
          f"({min(found['tools-unshared']):.1f}-{max(found['tools-unshared']):.1f}); ratio shared/unshared "
          f"{tools_rate / unshared:.2f}x")


def labelling(folder: Path, prompts: int) -> None:
    from gemfuse.distil.label import alabel
    from gemfuse.distil.settings import distil_settings
    from gemfuse.evals.harness import arun
    from gemfuse.registry import Registry
    from gemfuse.testing.call_task import call_task
    from gemfuse.testing.upstream import create_app, serve_in_thread

    task = call_task(folder / "label-task", per_phrasing=1, held_per_phrasing=60)  # every distinct prompt, ~190
    rows = task.held_out.read_text().splitlines()[:prompts]
    items = folder / "items.jsonl"
    items.write_text("\n".join(rows) + "\n")
    calls = ['{"room": "kitchen", "celsius": 21}', '{"celsius": 21.0, "room": "kitchen"}',
             '{"room": "office", "celsius": 18}']
    async def timed(side: str, registry: Registry, round_: int) -> float:
        began = time.perf_counter()
        try:
            if side == "label":
                await alabel(items, folder / f"label-{round_}", distil_settings(None, teacher="fusion/pool"),
                             registry=registry, cache="off")
            else:
                await arun(items, registry=registry, cache="off", systems=["fusion/pool"], dev_fraction=0)
            return time.perf_counter() - began
        finally:
            await registry.aclose()

    with serve_in_thread(create_app()) as base_url:
        config = folder / "config.toml"
        config.write_text("".join(f'[models.m{i}]\nbackend = "openai"\nbase_url = "{base_url}"\n'
                                  f"model = 'call:set_thermostat:{call}'\n" for i, call in enumerate(calls))
                          + '[presets.pool]\npool = ["m0", "m1", "m2"]\nmode = "vote"\n')
        seconds: dict[str, list[float]] = {"label": [], "eval": []}
        for round_ in range(3):
            for side in ("eval", "label"):
                seconds[side].append(asyncio.run(timed(side, Registry.load(config), round_)))
    label, evals = statistics.median(seconds["label"]), statistics.median(seconds["eval"])
    print(f"labelling {len(rows)} prompts with tools, a vote of 3 loopback upstreams, 3 rounds (medians):")
    print(f"  distil label {label:.2f} s ({len(rows) / label:.0f} prompts/s), eval harness {evals:.2f} s "
          f"({len(rows) / evals:.0f} prompts/s); ratio label/eval time {label / evals:.2f}x (goal <= 1.2x)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    labelling(folder, args.prompts)
    if not args.skip_training:
        training(folder, args.steps, args.rounds)


if __name__ == "__main__":
    main()
