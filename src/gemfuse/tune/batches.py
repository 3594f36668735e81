"""The data plan: which rows make micro-batch number k, as a pure function of (seed, epoch), so a resumed run
and every rank of a multi-process run agree on it without talking.

Rows are length-grouped (little padding, still shuffled); text rows may instead go end to end, without padding:
each batch's rows as one sequence (`padding_free`, the same rows and gradient), or packed into full sequences.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from ..data.collate import IGNORE, Collator, concatenated, length_grouped_batches, pack
from ..data.schema import Example
from ..errors import ConfigError

# Text rows are encoded once when they fit in this many bytes (three int64 tensors a row): the loop then never
# needs the tokenizer, which setup releases (Gemma's 262k-piece one holds ~0.25 GiB). Larger datasets are
# tokenised a batch at a time instead.
ENCODED_BUDGET = 128 * 2**20


def encode_rows(examples: Sequence[Example], collator: Collator, tokens: int) -> list[dict] | None:
    """Every row encoded alone, or None when the rows have media or would not fit ENCODED_BUDGET."""
    if not collator.text_only or tokens * 3 * 8 > ENCODED_BUDGET:
        return None
    return [collator.encode(e) for e in examples]


def row_lengths(examples: Sequence[Example], collator: Collator) -> list[int]:
    """Token counts for grouping: the rendered text plus each media item's token cost."""
    target = collator.target
    texts = [collator.render(e) for e in examples]
    ids = target.tokenizer(texts, add_special_tokens=False).input_ids if texts else []
    lengths = []
    for example, row in zip(examples, ids, strict=True):
        media = [m for t in example.turns for m in t.media]
        extra = sum(target.image_cost if m.kind == "image" else target.audio_cost(10.0) for m in media)
        lengths.append(len(row) + extra)
    return lengths


class Plan:
    """Step k's rows are one group of `batch_size * grad_accum * world` rows (packs, when packing), cut into
    one slice per rank and `grad_accum` micro-batches per slice. How a step is split never changes which rows
    it holds, so 4 micro-batches of 1, one batch of 4, and 2 ranks x 2 compute the same gradient."""

    def __init__(self, examples: Sequence[Example], collator: Collator, batch_size: int, grad_accum: int = 1,
                 seed: int = 0, packing: bool = False, rank: int = 0, world: int = 1, padding_free: bool = False):
        self.examples = list(examples)
        self.collator = collator
        self.batch_size, self.grad_accum = batch_size, grad_accum
        self.seed = seed
        self.rank, self.world = rank, world
        self.per_step = batch_size * grad_accum * world
        self.packs: list | None = None
        self.encoded: list[dict] | None = None
        self.lengths: list[int] = []
        self.padding_free = padding_free
        if padding_free and any(t.media for e in self.examples for t in e.turns):
            raise ConfigError("data.padding_free lays text rows end to end; this data has images or audio: leave it off")
        if packing:
            rows = [collator([e]) for e in self.examples]
            rows = [{"input_ids": r["input_ids"][0].tolist(), "labels": r["labels"][0].tolist()} for r in rows]
            self.packs = pack(rows, collator.max_length or max(len(r["input_ids"]) for r in rows))
            items = len(self.packs)
        else:
            self.lengths = row_lengths(self.examples, collator)
            self.encoded = encode_rows(self.examples, collator, sum(self.lengths))
            items = len(self.examples)
        self.steps_per_epoch = -(-items // self.per_step)
        self._orders: dict[int, list[list[int]]] = {}

    def order(self, epoch: int) -> list[list[int]]:
        """The epoch's groups of item indexes, one group per step."""
        if epoch not in self._orders:
            self._orders.clear()
            seed = self.seed * 1_000_003 + epoch
            if self.packs is not None:
                order = list(range(len(self.packs)))
                random.Random(seed).shuffle(order)
                self._orders[epoch] = [order[i:i + self.per_step] for i in range(0, len(order), self.per_step)]
            else:
                self._orders[epoch] = length_grouped_batches(self.lengths, self.per_step, seed=seed)
        return self._orders[epoch]

    def step_batches(self, step: int) -> list[dict | None]:
        """This rank's `grad_accum` micro-batches of step `step` (None where its slice is empty)."""
        epoch, index = divmod(step, self.steps_per_epoch)
        group = self.order(epoch)[index]
        share = self.batch_size * self.grad_accum
        mine = group[self.rank * share:(self.rank + 1) * share]
        micro = [mine[i * self.batch_size:(i + 1) * self.batch_size] for i in range(self.grad_accum)]
        if self.packs is not None:
            return [dict(self.packs[m[0]]) if m else None for m in micro]
        if self.encoded is not None:
            join = concatenated if self.padding_free else self.collator.pad
            return [join([self.encoded[i] for i in m]) if m else None for m in micro]
        if self.padding_free:
            return [concatenated([self.collator.encode(self.examples[i]) for i in m]) if m else None for m in micro]
        return [self.collator([self.examples[i] for i in m]) if m else None for m in micro]

    @property
    def needs_tokenizer(self) -> bool:
        return self.packs is None and self.encoded is None


def supervised_count(batch: dict | None) -> int:
    if batch is None:
        return 0
    return int((batch["labels"][:, 1:] != IGNORE).sum())
