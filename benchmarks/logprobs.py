"""What log-probabilities and the certainty measures cost on llama.cpp: decode time of the built-in models
without them, with the chosen tokens' log-probabilities only (the `mean` measure), with every measure's figures
(`lowest-window` and `self-certainty`: the step's top 20 and its mean over the vocabulary), and with 5
alternatives per token; greedy, the same answer each time, alternating rounds, medians.

    python benchmarks/logprobs.py [--tokens 96] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics

import gemfuse.models.logprobs as recorder
from gemfuse.messages import Message
from gemfuse.models.base import GenerateOptions
from gemfuse.registry import Registry

PROMPT = "Count from 1 to 200, separated by commas."
# The built-in models without their stop sequences, so that every run decodes about `--tokens` tokens.
MODELS = {"gemma-3-270m (262k vocabulary)": "gemma-3-270m", "smollm2-135m (49k vocabulary)": "smollm2-135m"}


@contextlib.contextmanager
def mean_only():
    """The recorder without the figures the other measures need: what the mean alone costs."""
    kept = recorder.step_figures
    recorder.step_figures = lambda logits, normaliser, top=20: (None, None)
    try:
        yield
    finally:
        recorder.step_figures = kept


async def measure(name: str, builtin: str, tokens: int, rounds: int) -> None:
    registry = Registry.load()
    registry.add_spec(name, registry.spec(builtin).model_copy(update={"stop": []}))
    model = registry.get(name)
    variants = {"prompt only": GenerateOptions(max_tokens=1, temperature=0),
                "plain": GenerateOptions(max_tokens=tokens, temperature=0),
                "mean only": GenerateOptions(max_tokens=tokens, temperature=0, logprobs=True),
                "every measure": GenerateOptions(max_tokens=tokens, temperature=0, logprobs=True),
                "every measure + top 5": GenerateOptions(max_tokens=tokens, temperature=0, logprobs=True,
                                                         top_logprobs=5)}
    await model.generate([Message.user(PROMPT)], variants["plain"])  # load and warm
    seconds: dict[str, list[float]] = {k: [] for k in variants}
    produced: dict[str, int] = {}
    try:
        for _ in range(rounds):
            for label, options in variants.items():
                with mean_only() if label == "mean only" else contextlib.nullcontext():
                    completion = await model.generate([Message.user(PROMPT)], options)
                seconds[label].append(completion.latency_s)
                produced[label] = completion.usage.completion_tokens
    finally:
        await registry.aclose()
    prompt = statistics.median(seconds.pop("prompt only"))
    decode = statistics.median(seconds["plain"]) - prompt
    tokens_made = produced["plain"]
    print(f"{name}: {tokens_made} tokens (the same answer each time), prompt {prompt:.3f} s, medians of {rounds}")
    for label, values in seconds.items():
        spent = statistics.median(values) - prompt
        print(f"  {label:22s} decode {spent:6.3f} s  {tokens_made / spent:6.1f} tok/s  "
              f"{100 * (spent / decode - 1):+5.1f}% of decode time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for name, builtin in MODELS.items():
        asyncio.run(measure(name, builtin, args.tokens, args.rounds))


if __name__ == "__main__":
    main()
