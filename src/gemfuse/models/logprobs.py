"""Token log-probabilities for the in-process backends: a stable log-normaliser for raw logits, the tokens that
make up the text an answer shows, and transformers' generate() logits read as tokens with their figures."""

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


def answer_logprobs(output, prompt_tokens: int, tokenizer, top: int, text: str, row: int = 0) -> list[TokenLogprob]:
    """Each generated token's log-softmax from generate()'s raw logits (`row` of a batch), the step's certainty
    figures, the alternatives when asked, trimmed to the text the answer shows (no end-of-turn token)."""
    import torch

    from .certainty import steps_figures

    def piece(token: int) -> str:
        return tokenizer.decode([token], skip_special_tokens=True)

    if not output.logits:
        return []
    steps = torch.log_softmax(torch.stack([step[row] for step in output.logits]).float(), dim=-1)
    confidence, kl_uniform = steps_figures(steps)
    tokens = []
    for step, logits in enumerate(steps):
        token = int(output.sequences[row, prompt_tokens + step])
        alternatives = []
        if top:
            values, ids = torch.topk(logits, top)
            alternatives = [(piece(int(i)), float(v)) for v, i in zip(values, ids, strict=True)]
        tokens.append(TokenLogprob(piece(token), float(logits[token]), alternatives, confidence=confidence[step],
                                   self_certainty=kl_uniform[step]))
    return answer_tokens(tokens, text)
