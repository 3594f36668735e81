"""Repeated prompts: exact repeats by their key, near repeats by the Jaccard similarity of their character
4-grams. Candidates come from MinHash banding (so thousands of rows are compared in linear time), and every
candidate pair is confirmed by its exact Jaccard, so a reported repeat is always a real one."""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence

SHINGLE = 4
PERMUTATIONS = 64
BANDS = 16  # 4 rows a band: pairs at Jaccard 0.9 share a band with probability > 0.999
PRIME = (1 << 31) - 1  # products of two values below it fit in int64


def shingles(text: str) -> set[int]:
    padded = f" {text} "
    if len(padded) <= SHINGLE:
        return {zlib.crc32(padded.encode())}
    return {zlib.crc32(padded[i:i + SHINGLE].encode()) for i in range(len(padded) - SHINGLE + 1)}


def jaccard(a: set[int], b: set[int]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def repeats(keys: Sequence[str], texts: Sequence[str], threshold: float) -> dict[int, tuple[int, float]]:
    """For each row that repeats an earlier one: (the earlier row, similarity; 1.0 for an exact repeat).
    `keys` decide exact repeats (media included); `texts` near ones, from `threshold` up (1: exact only)."""
    found: dict[int, tuple[int, float]] = {}
    first: dict[str, int] = {}
    for index, key in enumerate(keys):
        if key in first:
            found[index] = (first[key], 1.0)
        else:
            first[key] = index
    if threshold >= 1:
        return found
    import numpy as np

    rng = random.Random(0)
    a = np.array([rng.randrange(1, PRIME) for _ in range(PERMUTATIONS)], dtype=np.int64)[:, None]
    b = np.array([rng.randrange(PRIME) for _ in range(PERMUTATIONS)], dtype=np.int64)[:, None]
    rows = PERMUTATIONS // BANDS
    sets: dict[int, set[int]] = {}
    buckets: dict[tuple[int, tuple[int, ...]], list[int]] = {}
    for index, text in enumerate(texts):
        if index in found:
            continue
        sets[index] = grams = shingles(text)
        values = np.fromiter((g % PRIME for g in grams), dtype=np.int64, count=len(grams))[None, :]
        signature = ((a * values + b) % PRIME).min(axis=1).tolist()
        best: tuple[int, float] | None = None
        for band in range(BANDS):
            bucket = buckets.setdefault((band, tuple(signature[band * rows:(band + 1) * rows])), [])
            for earlier in bucket:
                similarity = jaccard(grams, sets[earlier])
                if similarity >= threshold and (best is None or earlier < best[0]):
                    best = (earlier, similarity)
            bucket.append(index)
        if best is not None:
            found[index] = best
    return found
