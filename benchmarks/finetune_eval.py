"""How long an eval of a fine-tune against its base takes, against the floor of asking the same two models
directly through llama-cpp-python.

A LoRA of the built-in Gemma 3 270M on made-up capitals (trained here, a few steps: this measures speed, not
learning), 40 questions, both models greedy, 96 tokens at most, the fine-tune's chat template on both:

- `gemfuse eval` as a user runs it (`finetune_runtime = "auto"`: on a CPU the fine-tune runs merged into a GGUF
  on llama.cpp, its base beside it at the same precision); cold (the merged GGUFs made on first use) once, then
  warm (GGUFs cached, no answer cache) alternating with the floor over rounds;
- the floor: the same two GGUFs loaded once in llama-cpp-python, every item asked in turn through a chat handler
  from the same template (the thinnest path: no server, no cache, no scoring);
- `finetune_runtime = "transformers"` (the adapter on transformers, as before) on the first 8 items, scaled.

    python benchmarks/finetune_eval.py [--items 40] [--rounds 3] [--steps 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def train_run(folder: Path, steps: int) -> Path:
    from gemfuse.testing.tasks import facts_task
    from gemfuse.tune import load_tune_config, train

    task = facts_task(folder / "data")
    config = load_tune_config(None, [], base={"model": "gemma-3-270m-hf", "out": str(folder / "run"),
                                              "data": {"train": str(task.train), "max_length": 64},
                                              "train": {"max_steps": steps, "batch_size": 8, "lr": 2e-3},
                                              "run": {"progress": False}})
    return train(config).run


def eval_file(folder: Path, items: int) -> Path:
    from gemfuse.testing.tasks import FACTS, HELD_PHRASINGS, TRAIN_PHRASINGS

    rows = [{"prompt": p.format(c=country), "answer": city} for country, city in FACTS
            for p in [*TRAIN_PHRASINGS, *HELD_PHRASINGS]]
    path = folder / "eval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:items]))
    return path


def timed_eval(data: Path, run: Path, runtime: str, folder: Path, items: int | None = None) -> float:
    from gemfuse import evaluate

    config = folder / f"config-{runtime}.toml"
    config.write_text(f'finetune_runtime = "{runtime}"\n')
    started = time.perf_counter()
    evaluate(str(data), models=[str(run)], config=config, cache="off", max_tokens=96, n=items, dev_fraction=0.0,
             concurrency=4)
    return time.perf_counter() - started


def floor(data: Path, run: Path) -> float:
    """The two GGUFs the eval uses, asked directly: load once, then every item to each model in turn."""
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from gemfuse.finetune_gguf import base_gguf, merged_gguf
    from gemfuse.registry import Registry

    template = Registry.load().spec(str(run)).chat_template
    prompts = [json.loads(line)["prompt"] for line in data.read_text().splitlines()]
    models = []
    for path in (merged_gguf(str(run)), base_gguf(str(run))):
        llm = Llama(model_path=str(path), n_ctx=4096, n_threads=os.cpu_count(), verbose=False)
        token = lambda i, llm=llm: llm.detokenize([i], special=True).decode("utf-8", "replace")  # noqa: E731
        llm.chat_handler = Jinja2ChatFormatter(template, eos_token=token(llm.token_eos()),
                                               bos_token=token(llm.token_bos()),
                                               stop_token_ids=[llm.token_eos()]).to_chat_handler()
        models.append(llm)
    started = time.perf_counter()
    for prompt in prompts:
        for llm in models:
            llm.create_chat_completion([{"role": "user", "content": prompt}], max_tokens=96, temperature=0)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        os.environ["GEMFUSE_CONFIG"] = str(folder / "none.toml")  # built-ins only
        run = train_run(folder, args.steps)
        data = eval_file(folder, args.items)
        cold = timed_eval(data, run, "auto", folder)
        warm, floors = [], []
        for _ in range(args.rounds):
            floors.append(floor(data, run))
            warm.append(timed_eval(data, run, "auto", folder))
        sample = 8
        slow = timed_eval(data, run, "transformers", folder, items=sample) * args.items / sample
    ratios = [w / f for w, f in zip(warm, floors, strict=True)]
    print(f"fine-tune vs base eval, {args.items} items x 2 models, 96 tokens at most, {args.rounds} rounds (median)")
    print(f"{'':44} {'wall s':>8} {'/ floor':>8}")
    median_floor = statistics.median(floors)
    print(f"{'floor: llama-cpp-python direct, same GGUFs':44} {median_floor:8.1f} {1:8.2f}")
    print(f"{'gemfuse eval, llama.cpp (auto), warm':44} {statistics.median(warm):8.1f} {statistics.median(ratios):8.2f}"
          f"   spread {min(ratios):.2f}-{max(ratios):.2f}")
    print(f"{'gemfuse eval, llama.cpp (auto), first use':44} {cold:8.1f} {cold / median_floor:8.2f}"
          "   (includes merging and converting both GGUFs once)")
    print(f"{'gemfuse eval, transformers + adapter':44} {slow:8.1f} {slow / median_floor:8.2f}"
          f"   (first {sample} items, scaled)")


if __name__ == "__main__":
    main()
