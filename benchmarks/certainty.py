"""Which certainty measure tells right from wrong on real models: two LoRA specialists of the built-in Gemma 3
270M, each taught half of a set of made-up capitals (as tests/test_specialists.py), asked every capital in six
phrasings neither saw; half the items are dev. For each measure (mean, lowest-window, self-certainty): its AUROC
on the specialists' dev answers with the interval, and on test the `confidence` fusion and the cascade
calibrated on dev by that measure, against each specialist alone. The members' answers are asked once (the
eval cache) and re-read by each measure.

    python benchmarks/certainty.py [--steps 20] [--out /tmp/certainty]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

PHRASINGS = ["What city serves as the capital of {c}?", "Do you know the capital of {c}?",
             "Which city is {c}'s capital?", "What is {c}'s capital city?", "Where is the capital of {c}?",
             "The capital of {c} is which city?"]


def specialist(folder: Path, name: str, facts, steps: int) -> str:
    from gemfuse.testing.tasks import TRAIN_PHRASINGS
    from gemfuse.tune import load_tune_config, train

    rows = [{"messages": [{"role": "user", "content": p.format(c=country)},
                          {"role": "assistant", "content": f"The capital of {country} is {city}."}]}
            for country, city in facts for p in TRAIN_PHRASINGS]
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = folder / name
    if not (run / "manifest.json").is_file():
        train(load_tune_config(None, [], base={
            "model": "gemma-3-270m-hf", "out": str(run), "data": {"train": str(data)},
            "train": {"max_steps": steps, "batch_size": 5, "lr": 3e-3, "warmup_steps": 4},
            "run": {"progress": False}}))
    return str(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default=None, help="keep the specialists and the cache here (default: a temp dir)")
    args = parser.parse_args()
    folder = Path(args.out or tempfile.mkdtemp(prefix="certainty-"))
    folder.mkdir(parents=True, exist_ok=True)

    from gemfuse._sync import run_sync
    from gemfuse.registry import Registry
    from gemfuse.testing.tasks import FACTS

    first = specialist(folder, "first", FACTS[:3], args.steps)
    second = specialist(folder, "second", FACTS[3:], args.steps)
    config = folder / "gemfuse.toml"
    config.write_text(f'[models.first]\nrun = "{first}"\n\n[models.second]\nrun = "{second}"\n')
    held = folder / "held.jsonl"
    held.write_text("".join(json.dumps({"prompt": p.format(c=country), "answer": city}) + "\n"
                            for country, city in FACTS for p in PHRASINGS))

    from gemfuse.evals import run

    registry = Registry.load(config)
    rows = []
    try:
        for measure in ("mean", "lowest-window", "self-certainty"):
            report = run(held, registry=registry, models=["first", "second"], pool=["first", "second"],
                         systems=["members", "confidence", "cascade"], scorer="contains", max_tokens=16,
                         dev_fraction=0.5, certainty=measure, cache=folder / "cache.sqlite", seed=0)
            told = report.data["certainty"]["measures"][measure]
            accuracy = {s["name"]: s["accuracy"] for s in report.data["systems"]}
            rows.append((measure, told, accuracy, report.system("cascade")))
    finally:
        run_sync(registry.aclose())
    print(f"{len(FACTS) * len(PHRASINGS)} items ({report.data['dev']} dev, {report.data['test']} test); specialists "
          f"alone on test: first {accuracy['first']:.0%}, second {accuracy['second']:.0%}")
    print(f"{'measure':16s} {'AUROC on dev (95% CI)':26s} {'first':>6s} {'second':>7s}   {'confidence':>10s}   "
          f"{'cascade (threshold, escalated on dev)':s}")
    for measure, told, accuracy, cascade in rows:
        low, high = told["interval"]
        members = told["members"]
        calibration = cascade.get("calibration") or {}
        dev = calibration.get("dev") or {}

        def cell(value):
            return "  -  " if value is None else f"{value:.2f}"

        print(f"{measure:16s} {cell(told['auroc'])} ({cell(low)}-{cell(high)}){'':10s} {cell(members['first']):>6s} "
              f"{cell(members['second']):>7s}   {accuracy['confidence']:>10.0%}   {accuracy['cascade']:.0%} "
              f"({cascade['threshold']:.3g}, {dev.get('escalated', float('nan')):.0%})")


if __name__ == "__main__":
    main()
