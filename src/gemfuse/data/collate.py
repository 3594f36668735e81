"""Batches for training: rendered with the model's own chat template, run through its processor (pixel values,
audio features, token types), dynamically padded, with labels on assistant tokens only — every assistant turn,
its closing end-of-turn token included, never a prompt, media or padding token."""

from __future__ import annotations

import random
from collections.abc import Sequence

from ..errors import MessageError
from ..families.gemma4 import RESULT_END, RESULT_START
from .schema import Example, Media
from .target import Target
from .validate import rendered

IGNORE = -100


def _decode_image(media: Media):
    from ..messages import ImagePart, sniff_image

    data = media.read()
    return ImagePart(data=data, mime_type=sniff_image(data) or "image/png").to_pil()


def _decode_audio(media: Media, rate: int):
    from ..messages import AudioPart, sniff_audio

    data = media.read()
    return AudioPart(data=data, format=sniff_audio(data) or "wav").to_waveform(rate)


def find(sequence: list[int], pattern: list[int], start: int = 0) -> int:
    n = len(pattern)
    first = pattern[0]
    for i in range(start, len(sequence) - n + 1):
        if sequence[i] == first and sequence[i:i + n] == pattern:
            return i
    return -1


class Collator:
    """`collator(examples) -> dict of tensors` for one family, found from the target; no family branches."""

    def __init__(self, target: Target, max_length: int | None = None):
        self.target = target
        self.max_length = max_length
        tokenizer = target.tokenizer
        prefix, end = target.markers
        self.prefix_ids = tokenizer(prefix, add_special_tokens=False).input_ids
        self.end_id = tokenizer(end, add_special_tokens=False).input_ids[0]
        media_tokens = ("image_token", "boi_token", "eoi_token", "audio_token", "boa_token", "eoa_token")
        self.media_ids = {tokenizer.convert_tokens_to_ids(getattr(tokenizer, name)) for name in media_tokens
                          if getattr(tokenizer, name, None)}
        vocabulary = tokenizer.get_vocab() if target.takes_tools else {}
        # a template may write a tool's result inside the model's turn (Gemma 4): never trained on
        self.result_marks = (vocabulary.get(RESULT_START), vocabulary.get(RESULT_END))
        # what `pad` needs to batch encoded rows as the tokenizer would, without it
        self.text_only = target.processor is tokenizer
        self.padding_side = tokenizer.padding_side
        self.filler = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.pad_token_id

    def render(self, example: Example) -> str:
        return rendered(self.target, example)

    def labels_for(self, ids: list[int], mask: list[int]) -> list[int]:
        labels = [IGNORE] * len(ids)
        position = 0
        while True:
            start = find(ids, self.prefix_ids, position)
            if start < 0:
                break
            begin = start + len(self.prefix_ids)
            end = begin
            while end < len(ids) and ids[end] != self.end_id and mask[end]:
                end += 1
            stop = end + 1 if end < len(ids) and ids[end] == self.end_id else end  # learn to close the turn
            in_result = False
            for i in range(begin, stop):
                in_result = (in_result or ids[i] == self.result_marks[0]) and ids[i - 1] != self.result_marks[1]
                if ids[i] not in self.media_ids and mask[i] and not in_result:
                    labels[i] = ids[i]
            position = stop
        return labels

    def __call__(self, examples: Sequence[Example]) -> dict:
        import torch

        texts = [self.render(e) for e in examples]
        images = [[_decode_image(m) for t in e.turns for m in t.media if m.kind == "image"] for e in examples]
        audio = [_decode_audio(m, self.target.sampling_rate) for e in examples for t in e.turns for m in t.media
                 if m.kind == "audio"]
        kwargs = dict(text=texts, padding=True, return_tensors="pt", add_special_tokens=False)
        if any(images):
            kwargs["images"] = images
        if audio:
            kwargs["audio"] = audio
        if self.target.processor is self.target.tokenizer:
            batch = self.target.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        else:
            batch = self.target.processor(**kwargs)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        if self.max_length and ids.shape[1] > self.max_length:
            for row, example in enumerate(examples):
                tail = ids[row, self.max_length:][mask[row, self.max_length:].bool()].tolist()
                if any(t in self.media_ids for t in tail):
                    raise MessageError(f"{example.file}:{example.line}: truncating to {self.max_length} tokens would "
                                       "cut media; raise data.max_length or shorten the conversation")
            batch = {k: (v[:, :self.max_length] if k in ("input_ids", "attention_mask", "token_type_ids",
                                                         "mm_token_type_ids") else v) for k, v in batch.items()}
            ids, mask = batch["input_ids"], batch["attention_mask"]
        batch = dict(batch)
        batch["labels"] = torch.tensor([self.labels_for(r, m) for r, m in zip(ids.tolist(), mask.tolist(), strict=True)])
        batch["input_ids"] = self.fill_padding(ids, mask)
        return batch

    def encode(self, example: Example) -> dict:
        """One text row as it is collated alone (tensors of one row, no padding), for `pad`."""
        return {key: value[0] for key, value in self([example]).items()}

    def pad(self, rows: Sequence[dict]) -> dict:
        """Encoded rows as one batch, padded on the tokenizer's side as `__call__` pads them (masked, unlabelled,
        filled with a real token), without the tokenizer. Each row was cut to max_length on its own."""
        import torch

        width = max(len(r["input_ids"]) for r in rows)
        fill = {"input_ids": self.filler, "labels": IGNORE}
        batch = {}
        for key, first in rows[0].items():
            out = torch.full((len(rows), width), fill.get(key, 0), dtype=first.dtype)
            for i, row in enumerate(rows):
                n = len(row[key])
                (out[i, width - n:] if self.padding_side == "left" else out[i, :n]).copy_(row[key])
            batch[key] = out
        return batch

    def fill_padding(self, ids, mask):
        """Padding positions get a real token instead of the pad token. They are masked and unlabelled, so no
        real position sees them; but the pad token's embedding is zero, and Gemma 3n takes the square root of
        each position's mean square (its AltUp magnitude), whose gradient at zero is NaN: any padded batch
        gave NaN gradients (and, once stepped, NaN weights)."""
        filler = self.target.tokenizer.bos_token_id
        if filler is None or bool(mask.all()):
            return ids
        return ids.masked_fill(mask == 0, filler)


def length_grouped_batches(lengths: Sequence[int], batch_size: int, seed: int = 0, mega: int = 50) -> list[list[int]]:
    """Shuffle, then sort by length inside windows of `mega` batches: little padding, still random order."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * mega
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: -lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def concatenated(rows: Sequence[dict]) -> dict:
    """Tokenised text-only rows (input_ids, labels; lists or tensors) end to end as one sequence, no padding.
    Each row keeps its own positions: `position_ids` restart at every row and no attention mask is given, so
    transformers builds the block-diagonal causal mask from them (sliding windows counted within each row), and
    nothing leaks between rows. A row's first token is never predicted from the row before it."""
    import torch

    def ints(values) -> list[int]:
        return values.tolist() if hasattr(values, "tolist") else list(values)

    joined = {key: torch.tensor([[t for r in rows for t in ints(r[key])]]) for key in rows[0]
              if key not in ("labels", "attention_mask")}  # input_ids, and token types where the processor gives them
    joined["labels"] = torch.tensor([[label for r in rows for label in [IGNORE, *ints(r["labels"])[1:]]]])
    joined["position_ids"] = torch.tensor([[p for r in rows for p in range(len(r["input_ids"]))]])
    return joined


def pack(rows: Sequence[dict], max_length: int) -> list[dict]:
    """Pack tokenised text-only rows (input_ids, labels) into sequences of at most `max_length`, each as
    `concatenated` lays them out (rows never see each other)."""
    current: list[list[dict]] = []
    for row in sorted(rows, key=lambda r: -len(r["input_ids"])):
        if len(row["input_ids"]) > max_length:
            raise MessageError(f"a row of {len(row['input_ids'])} tokens does not fit data.max_length {max_length}")
        for bucket in current:
            if sum(len(r["input_ids"]) for r in bucket) + len(row["input_ids"]) <= max_length:
                bucket.append(row)
                break
        else:
            current.append([row])
    return [concatenated(bucket) for bucket in current]
