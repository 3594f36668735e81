"""Distil's speed, in one run:

- labelling: `gemfuse.distil.label` over N prompts at concurrency 32, a fusion teacher of three loopback models
  (answers after 50, 80 and 120 ms, a test upstream in its own process), against the eval harness's own floor:
  `gemfuse.evaluate` scoring the same fusion on the same prompts at the same concurrency (target: within 10%);
- the warm re-run: the same labelling again on the same cache (target: at least 50x faster than cold);
- each stage's wall time on the end-to-end facts run (a scripted teacher that knows made-up facts, the built-in
  Gemma 3 270M as the student, 30 rows, its held-out phrasings as the eval).

Cold runs alternate between labelling and the eval, each on a fresh cache; medians over `--rounds`.

    python benchmarks/distil.py [--items 256] [--rounds 3] [--no-facts]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from gemfuse import distil, evaluate
from gemfuse.testing.upstream import serve_in_process

DELAYS_MS = {"m50": 50, "m80": 80, "m120": 120}


def write_inputs(folder: Path, base_url: str, items: int) -> tuple[Path, Path]:
    config = folder / "config.toml"
    config.write_text("".join(f'[models.{name}]\nbackend = "openai"\nbase_url = "{base_url}"\nmodel = "slow-{ms}"\n'
                              for name, ms in DELAYS_MS.items())
                      + '[presets.trio]\npool = ["m50", "m80", "m120"]\nmode = "vote"\nmax_tokens = 96\n')
    prompts = folder / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n"
                               for i in range(items)))
    return config, prompts


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def facts_stages(folder: Path) -> dict[str, float]:
    from gemfuse.testing.scripted import ScriptedModel, scripted_registry
    from gemfuse.testing.tasks import FACTS, facts_task

    task = facts_task(folder / "facts")
    capitals = dict(FACTS)
    prompts = folder / "facts-prompts.jsonl"
    prompts.write_text("".join(json.dumps({"messages": json.loads(line)["messages"][:1]}) + "\n"
                               for line in task.train.read_text().splitlines()))

    def knows(messages):
        country = next(c for c in capitals if c in messages[-1].text)
        return f"The capital of {country} is {capitals[country]}."

    registry = scripted_registry({"teacher": ScriptedModel(knows)}, with_builtins=True)
    try:
        report = distil.run(prompts, teacher="teacher", eval=str(task.held_out), out=folder / "facts-out",
                            registry=registry, cache=folder / "facts.sqlite", scorer="contains", max_tokens=32,
                            add_to_config=False, name="facts-student")
    finally:
        asyncio.run(registry.aclose())
    print(f"facts run: student {report['eval']['accuracy']['facts-student']:.0%}, "
          f"base {report['eval']['accuracy'][report['student']['base']]:.0%}, gain kept "
          f"{report['gain_kept']['value']:.0%} {report['gain_kept'].get('interval')}, "
          f"{report['training']['steps']} steps")
    return report["stage_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-facts", action="store_true", help="skip the end-to-end facts run (about 3 minutes)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, serve_in_process() as base_url:
        folder = Path(tmp)
        config, prompts = write_inputs(folder, base_url, args.items)
        labelling, harness, warm = [], [], []
        for round_number in range(args.rounds):
            cache = folder / f"label-{round_number}.sqlite"

            def label(cache=cache, round_number=round_number) -> None:
                distil.label(prompts, teacher="fusion/trio", out=folder / f"out-{round_number}", config=config,
                             cache=cache, concurrency=32)

            labelling.append(timed(label))
            warm.append(timed(label))
            harness.append(timed(lambda r=round_number: evaluate(
                str(prompts), config=config, systems=["fusion/trio"], dev_fraction=0.0, concurrency=32,
                cache=folder / f"eval-{r}.sqlite")))
        cold, floor, again = statistics.median(labelling), statistics.median(harness), statistics.median(warm)
        ideal = args.items * max(DELAYS_MS.values()) / 1000 / 32
        print(f"{args.items} prompts, a 3-model vote (50/80/120 ms), concurrency 32, medians of {args.rounds}:")
        print(f"  label cold   {cold:6.2f} s  {args.items / cold:7.1f} items/s")
        print(f"  eval harness {floor:6.2f} s  {args.items / floor:7.1f} items/s   label / harness = "
              f"{cold / floor:.2f}x (target <= 1.10x)")
        print(f"  ideal        {ideal:6.2f} s  (slowest member's delay x items / 32)")
        print(f"  label warm   {again:6.3f} s  cold / warm = {cold / again:.0f}x (target >= 50x)")
        if not args.no_facts:
            stages = facts_stages(folder)
            print("  facts run stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items()))


if __name__ == "__main__":
    main()
