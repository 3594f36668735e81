"""Token log-probabilities for the in-process backends, read from the logits each step is sampled from.

Both llama.cpp and transformers call a logits processor with the raw logits of the next token, before any
sampling setting touches them (temperature, top-p, penalties); the token that step chose is known at the next
call (it is then the last input token), or at the end. So the recorder holds one step's logits at a time (one
vocabulary-sized copy, never the whole answer's), and turns each into the chosen token's log-softmax, the step's
figures for the certainty measures (models/certainty.py) and, when asked, the likeliest alternatives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import TokenLogprob
from .certainty import step_figures


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


class LogprobRecorder:
    def __init__(self, top: int, piece: Callable[[int], str]):
        self.top = top
        self.piece = piece  # token id -> its text
        self.pending: Any = None  # the waiting step's logits (a numpy array)
        self.tokens: list[TokenLogprob] = []

    def step(self, previous: int | None, logits: Any) -> None:
        """A step's logits; `previous` is the token the step before chose (None at the first step)."""
        import numpy as np

        if self.pending is not None and previous is not None:
            self.close(previous)
        self.pending = np.array(logits, dtype=np.float32, copy=True)

    def close(self, token: int) -> None:
        """The pending step chose `token`."""
        import numpy as np

        logits, self.pending = self.pending, None
        if logits is None:
            return
        normaliser = log_normaliser(logits)
        confidence, kl_uniform = step_figures(logits, normaliser)
        alternatives: list[tuple[str, float]] = []
        if self.top:
            best = np.argpartition(logits, -self.top)[-self.top:]
            best = best[np.argsort(-logits[best])]
            alternatives = [(self.piece(int(i)), float(logits[i]) - normaliser) for i in best]
        self.tokens.append(TokenLogprob(self.piece(token), float(logits[token]) - normaliser, alternatives,
                                        confidence=confidence, self_certainty=kl_uniform))

    def answer(self, text: str) -> list[TokenLogprob]:
        return answer_tokens(self.tokens, text)
