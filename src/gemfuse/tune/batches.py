"""The data plan: which rows make micro-batch number k, as a pure function of (seed, epoch), so a resumed run
and every rank of a multi-process run agree on it without talking.

Rows are length-grouped (little padding, still shuffled); text rows may instead go end to end, without padding:
each batch's rows as one sequence (`padding_free`, the same rows and gradient), or packed into full sequences.
Padded text rows that begin alike (a system prompt, tool definitions) may share that beginning (`shared_prefix`).
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

# A shared beginning shorter than this is not worth its own forward pass.
SHARED_PREFIX_MIN = 32
PREFIX = "prefix_"  # a shared-prefix batch's keys for the beginning every row has (loss.forward reads them)


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
        self.share_prefixes = False  # set by the run once it knows the layout fits (setup.shares_prefixes)

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
            join = concatenated if self.padding_free else self.join
            return [join([self.encoded[i] for i in m]) if m else None for m in micro]
        if self.padding_free:
            return [concatenated([self.collator.encode(self.examples[i]) for i in m]) if m else None for m in micro]
        return [self.collate([self.examples[i] for i in m]) if m else None for m in micro]

    def collate(self, examples: Sequence[Example]) -> dict:
        """Rows not encoded ahead (media, a processor that is more than a tokenizer, a large dataset) as one batch;
        text rows that share their beginning each encoded, then joined."""
        if self.share_prefixes and len(examples) > 1 and not any(t.media for e in examples for t in e.turns):
            return self.join([self.collator.encode(e) for e in examples])
        return self.collator(examples)

    def join(self, rows: Sequence[dict]) -> dict:
        """Encoded rows as one padded batch, their shared beginning run once where the run allows it."""
        shared = shared_prefix(rows, self.collator.filler) if self.share_prefixes else None
        return shared if shared is not None else self.collator.pad(rows)

    @property
    def needs_tokenizer(self) -> bool:
        return self.packs is None and self.encoded is None


def supervised_count(batch: dict | None) -> int:
    if batch is None:
        return 0
    return int((batch["labels"][:, 1:] != IGNORE).sum())


def shared_prefix(rows: Sequence[dict], filler: int, minimum: int = SHARED_PREFIX_MIN) -> dict | None:
    """Encoded rows (one row each, unpadded) as a batch whose common beginning runs once: `prefix_*` hold the
    first P tokens, the same in every row and none of them supervised, nor the token after them; `input_ids`
    and the other per-token inputs hold each row's remaining tokens, right-padded; `attention_mask` covers
    prefix and rest. The loss and gradients are the padded batch's (loss.forward). None when the rows share
    fewer than `minimum` such tokens."""
    import torch

    if len(rows) < 2:
        return None
    keys = [k for k in rows[0] if k not in ("labels", "attention_mask")]
    first = rows[0]
    length = min(len(r["input_ids"]) for r in rows)
    for row in rows:
        supervised = (row["labels"] != IGNORE).nonzero()
        length = min(length, int(supervised[0]) - 1 if len(supervised) else len(row["labels"]) - 1)
        for key in keys:
            differs = (row[key][:length] != first[key][:length]).nonzero()
            length = int(differs[0]) if len(differs) else length
    if length < minimum:
        return None
    batch = {PREFIX + key: first[key][None, :length].clone() for key in keys}
    width = max(len(r["input_ids"]) for r in rows) - length
    fill = {"input_ids": filler, "labels": IGNORE}
    for key in [*keys, "labels"]:
        batch[key] = torch.full((len(rows), width), fill.get(key, 0), dtype=first[key].dtype)
    batch["attention_mask"] = torch.zeros((len(rows), length + width), dtype=torch.long)
    for i, row in enumerate(rows):
        rest = len(row["input_ids"]) - length
        for key in [*keys, "labels"]:
            batch[key][i, :rest] = row[key][length:]
        batch["attention_mask"][i, :length + rest] = 1
    return batch
