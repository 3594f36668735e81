"""How sure a model was of its answer, three ways, from the distribution each answer token was drawn from:

- `mean`: the mean log-probability of the answer's own tokens (0 is sure). The baseline of the papers below.
- `lowest-window`: DeepConf's lowest group confidence (Fu et al. 2025, arXiv 2508.15260). A token's confidence is
  the negative mean log-probability of the k likeliest tokens at that step (a peaked distribution scores high);
  a group is the mean over a sliding window of tokens; the answer scores its least confident group, so one
  unsure stretch (the name in "The capital of X is Y.") is not averaged away by the sure words around it.
- `self-certainty`: the mean over tokens of the KL divergence of the token's distribution from uniform (Kang et
  al. 2025, arXiv 2502.18581): how far each step is from "any token will do".

Every measure is higher for a surer answer. The in-process backends compute each step's figures from the full
distribution (exact). An OpenAI-compatible endpoint returns only the chosen token and the k likeliest: token
confidence is then exact when it returned k alternatives, and self-certainty is approximated with the rest of
the probability spread evenly over the tokens it did not name (then about -log of that rest: a lower bound),
and the answer says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from .base import TokenLogprob

Measure = Literal["mean", "lowest-window", "self-certainty"]
MEASURES: tuple[Measure, ...] = ("mean", "lowest-window", "self-certainty")
TOP_K = 20  # DeepConf's k; also the most alternatives an OpenAI endpoint returns
WINDOW = 8  # tokens per group: answers here are sentences, not DeepConf's reasoning traces (2048)
SMALLEST_REST = 1e-12  # the unnamed probability is never taken as exactly 0 (it would make KL infinite)

DESCRIPTIONS = {
    "mean": "the mean log-probability of the answer's own tokens",
    "lowest-window": f"DeepConf's lowest group confidence: the least confident window of tokens, a token's confidence "
                     f"being the negative mean log-probability of its {TOP_K} likeliest alternatives",
    "self-certainty": "self-certainty: the mean KL divergence of each token's distribution from uniform",
}


def step_figures(logits: Any, normaliser: float, top: int = TOP_K) -> tuple[float, float]:
    """(token confidence, KL from uniform) of one step from its full logits (a numpy vector) and their
    log-sum-exp."""
    import numpy as np

    k = min(top, logits.shape[-1])
    likeliest = largest(logits, k)
    confidence = normaliser - float(likeliest.mean(dtype=np.float64))
    kl_uniform = normaliser - float(logits.mean(dtype=np.float64)) - math.log(logits.shape[-1])
    return confidence, kl_uniform


def largest(values: Any, k: int) -> Any:
    """The k largest of a numpy vector. A full partition of a 262k vocabulary costs a millisecond a token; the
    few values near the top are found first by a mask (widened until it holds k), then partitioned."""
    import numpy as np

    top = values.max()
    for width in (4.0, 16.0, 64.0):
        near = values[values >= top - width]
        if near.shape[0] >= k:
            return np.partition(near, -k)[-k:]
    return np.partition(values, -k)[-k:]


def steps_figures(logits: Any, top: int = TOP_K) -> tuple[list[float], list[float]]:
    """`step_figures` for every row of a torch tensor of log-probabilities (steps x vocabulary), at once."""
    import torch

    k = min(top, logits.shape[-1])
    confidence = -torch.topk(logits, k, dim=-1).values.double().mean(dim=-1)
    kl_uniform = -logits.double().mean(dim=-1) - math.log(logits.shape[-1])
    return confidence.tolist(), kl_uniform.tolist()


def from_alternatives(token: TokenLogprob) -> TokenLogprob:
    """The token with its figures read from the alternatives an endpoint returned (marked approximate), when
    it has none of its own."""
    if token.confidence is not None or not token.top:
        return token
    named = [lp for _, lp in token.top]
    rest = max(1.0 - sum(math.exp(lp) for lp in named), SMALLEST_REST)
    token.confidence = -sum(named) / len(named)
    token.self_certainty = -math.log(rest)
    token.approximate = True
    return token


def certainty(tokens: Sequence[TokenLogprob] | None, measure: Measure = "mean",
              window: int = WINDOW) -> float | None:
    """The answer's certainty by `measure`; None when the tokens do not carry what it needs."""
    if not tokens:
        return None
    if measure == "mean":
        return sum(t.logprob for t in tokens) / len(tokens)
    tokens = [from_alternatives(t) for t in tokens]
    picked = [t.self_certainty if measure == "self-certainty" else t.confidence for t in tokens]
    values = [v for v in picked if v is not None]
    if len(values) < len(picked):
        return None
    if measure == "self-certainty":
        return sum(values) / len(values)
    width = max(1, min(window, len(values)))
    sums = [sum(values[:width])]
    for end in range(width, len(values)):
        sums.append(sums[-1] + values[end] - values[end - width])
    return min(sums) / width


def certainties(tokens: Sequence[TokenLogprob] | None, window: int = WINDOW) -> dict[str, float]:
    """Every measure the tokens allow."""
    found = {m: certainty(tokens, m, window) for m in MEASURES}
    return {m: v for m, v in found.items() if v is not None}


def approximate(tokens: Sequence[TokenLogprob] | None, measure: Measure) -> bool:
    """Whether `measure` of these tokens was read from the endpoint's alternatives rather than the distribution."""
    return measure != "mean" and bool(tokens) and any(from_alternatives(t).approximate for t in tokens or ())
