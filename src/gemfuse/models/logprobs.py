"""Token log-probabilities for the in-process backends: a stable log-normaliser for raw logits, and the
tokens that make up the text an answer shows."""

from __future__ import annotations

from typing import Any

from .base import TokenLogprob


def log_normaliser(logits: Any) -> float:
    """log(sum(exp(logits))), computed stably: a token's log-probability is its logit less this."""
    import numpy as np  # the in-process backends bring it; the core install has none

    top = float(logits.max())
    return top + float(np.log(np.exp(logits - top).sum(dtype=np.float64)))  # each term <= 1: float32 holds it


def answer_tokens(tokens: list[TokenLogprob], text: str) -> list[TokenLogprob]:
    """The tokens that make up `text` (an end-of-turn token or a withheld stop string is not part of it)."""
    kept, covered = [], 0
    for token in tokens:
        if covered >= len(text) or covered + len(token.token.strip()) > len(text):
            break
        kept.append(token)
        covered += len(token.token)
    return kept
