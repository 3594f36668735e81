"""JSON schemas enforced with llguidance: each step, the tokens that cannot continue a valid answer get no
probability. On transformers through a logits processor; llama.cpp's engine runs llguidance itself.

A schema compiles once (cached by its text); the wrapped tokenizer once per tokenizer and vocabulary size (about a
second for Gemma's 262k tokens). In a batch each row has its own matcher, or none (an unconstrained row).
"""

from __future__ import annotations

import functools
import json
from typing import Any

from ..errors import BadRequestError
from ..json_schema import GUIDANCE

_TOKENIZERS: dict[tuple[int, int], Any] = {}


@functools.lru_cache(maxsize=256)
def compiled(schema_text: str) -> str:
    """The llguidance grammar of a schema; keywords it cannot enforce are skipped (json_schema.py said which)."""
    import llguidance

    grammar = llguidance.LLMatcher.grammar_from_json_schema(json.loads(schema_text), defaults=GUIDANCE)
    error = llguidance.LLMatcher.validate_grammar(grammar)
    if error:
        raise BadRequestError(f"response_format.json_schema: cannot be compiled into a grammar ({error})")
    return grammar


def engine_grammar(schema: dict[str, Any]) -> str:
    """The grammar llama.cpp's sampler takes for a schema (its llguidance build, the same decoding as above)."""
    return "%llguidance {}\nstart: %json " + json.dumps({**schema, "x-guidance": GUIDANCE})


def _wrapped(tokenizer, vocab: int, eos: list[int]):
    key = (id(tokenizer), vocab)
    if key not in _TOKENIZERS:
        import llguidance.hf

        _TOKENIZERS[key] = llguidance.hf.from_tokenizer(tokenizer, n_vocab=vocab, eos_token=eos or None)
    return _TOKENIZERS[key]


class GrammarProcessor:
    """A transformers logits processor: row i's next token obeys `schemas[i]` (None: free)."""

    def __init__(self, tokenizer, schemas: list[dict | None], eos: list[int]):
        self.tokenizer, self.eos = tokenizer, eos
        self.grammars = [compiled(json.dumps(s, sort_keys=True)) if s is not None else None for s in schemas]
        self.matchers: list[Any] | None = None
        self.mask: Any = None

    def _start(self, vocab: int) -> None:
        import llguidance
        import llguidance.torch

        wrapped = _wrapped(self.tokenizer, vocab, self.eos)
        self.matchers = [llguidance.LLMatcher(wrapped, g) if g is not None else None for g in self.grammars]
        self.mask = llguidance.torch.allocate_token_bitmask(len(self.grammars), wrapped.vocab_size)

    def __call__(self, input_ids, scores):
        from llguidance.torch import apply_token_bitmask_inplace, fill_next_token_bitmask

        if self.matchers is None:
            self._start(int(scores.shape[-1]))
        else:  # the token each row took last step
            for row, matcher in enumerate(self.matchers or ()):
                if matcher is not None and not matcher.is_stopped():
                    matcher.consume_token(int(input_ids[row, -1]))
        for row, matcher in enumerate(self.matchers or ()):
            if matcher is None or matcher.is_error():
                continue  # free, or broken (said by errors())
            fill_next_token_bitmask(matcher, self.mask, row)
            apply_token_bitmask_inplace(scores[row], self.mask[row])
        return scores

    def errors(self) -> list[str]:
        return [m.get_error() for m in self.matchers or () if m is not None and m.is_error()]
