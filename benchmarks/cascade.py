"""What a cascade saves: a scripted pool whose members are right on a known share of the items and surer when they
are right (as real models are, imperfectly: some wrong answers come out sure), scored by the eval harness. The
full fusion (a vote of all three) against the cascade at several thresholds: accuracy with its interval, cost
and median latency per item. The figure: the cheapest cascade whose accuracy lies within the fusion's interval,
its cost and latency as shares of the fusion's (target: at most 40% of each).

    python benchmarks/cascade.py [--items 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import tempfile
from pathlib import Path

from gemfuse.evals import arun
from gemfuse.fusion.preset import FusionPreset
from gemfuse.models.spec import Price
from gemfuse.testing.scripted import ScriptedModel, scripted_registry

# name: (share of items it gets right, USD per million tokens, seconds per answer)
TIERS = {"small": (0.70, 0.1, 0.03), "medium": (0.82, 1.0, 0.08), "large": (0.92, 10.0, 0.2)}
THRESHOLDS = (-0.1, -0.3, -0.5, -0.8, -1.2)
SURE_WHEN_WRONG = 0.15  # the share of wrong answers a model is nevertheless sure of


def draw(*parts: object) -> float:
    """A fixed pseudo-random number in [0, 1) for these parts."""
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:12], 16) / 16**12


def model(name: str, right_share: float, seed: int) -> tuple[ScriptedModel, ScriptedModel]:
    def item(messages) -> int:
        return int(messages[-1].text.split()[2].rstrip("?"))

    def right(messages) -> bool:
        return draw(seed, name, item(messages)) < right_share

    def answer(messages) -> str:
        return str(item(messages) * 3) if right(messages) else str(item(messages) * 3 + 1 + int(5 * draw(name, item(messages))))

    def certainty(messages) -> float:
        spread = draw(seed, name, "certainty", item(messages))
        sure = right(messages) or draw(seed, name, "sure", item(messages)) < SURE_WHEN_WRONG
        return -0.05 - 0.25 * spread if sure else -0.6 - 1.4 * spread

    return answer, certainty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    models = {}
    for name, (share, price, delay) in TIERS.items():
        answer, certainty = model(name, share, args.seed)
        models[name] = ScriptedModel(answer, certainty=certainty, delay_s=delay, price=Price(input=price, output=price))
    pool = list(TIERS)
    presets = {f"cascade{t:g}": FusionPreset(pool=pool, mode="cascade", threshold=t, max_tokens=16, temperature=0)
               for t in THRESHOLDS}
    presets["full"] = FusionPreset(pool=pool, mode="vote", max_tokens=16, temperature=0)
    registry = scripted_registry(models, presets)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "items.jsonl"
        data.write_text("".join(json.dumps({"prompt": f"What is {i}? Triple it.", "answer": str(i * 3)}) + "\n"
                                for i in range(args.items)))
        report = asyncio.run(arun(data, registry=registry, cache="off", systems=["members", *(
            "fusion/" + p for p in presets)], models=pool, dev_fraction=0.0, concurrency=64, max_tokens=16))
    rows = {s["name"]: s for s in report.data["systems"]}
    full = rows["fusion/full"]
    low, high = full["interval"]
    print(f"{args.items} items; members right on {', '.join(f'{n} {s:.0%}' for n, (s, _, _) in TIERS.items())}; "
          f"{SURE_WHEN_WRONG:.0%} of wrong answers sure")
    print(f"{'system':18s} {'accuracy':>8s} {'interval':>13s} {'cost/item':>11s} {'p50 s':>7s}")
    for name, stats in rows.items():
        cost = stats["cost"] / stats["n"]
        print(f"{name:18s} {stats['accuracy']:8.1%} {stats['interval'][0]:6.1%}-{stats['interval'][1]:5.1%} "
              f"{cost:11.2e} {stats['latency_p50_s']:7.3f}")
    matching = [rows[f"fusion/cascade{t:g}"] for t in THRESHOLDS if low <= rows[f"fusion/cascade{t:g}"]["accuracy"]]
    if not matching:
        print("no cascade threshold reached the full fusion's interval")
        return
    best = min(matching, key=lambda s: s["cost"])
    print(f"cheapest cascade within the fusion's interval ({low:.1%}-{high:.1%}): {best['name']}, accuracy "
          f"{best['accuracy']:.1%} against {full['accuracy']:.1%}; cost {best['cost'] / full['cost']:.0%} of the "
          f"fusion's, p50 latency {best['latency_p50_s'] / full['latency_p50_s']:.0%} (target: at most 40% each)")


if __name__ == "__main__":
    main()
