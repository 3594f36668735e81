"""Small synthetic tasks a fine-tune must learn, written as gemfuse JSONL, with held-out rows and a scorer.

- `colour_task`: pictures of one colour (jittered shade, a random darker square on top); answer its name.
- `tone_task`: a tone in a low, middle or high pitch band (jittered frequency and loudness); answer the band.
- `facts_task`: made-up facts asked in several phrasings; held-out phrasings are never trained on.

With `blank=True` the media carry no signal (one grey picture, silence): the control that proves the pixels
or the sound, and not the text, are what a model learned from.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

COLOURS = {"red": (200, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 210)}
BANDS = {"low": (200, 350), "mid": (800, 1200), "high": (2500, 4000)}


@dataclass
class Task:
    train: Path
    held_out: Path
    choices: list[str]


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _row(question: str, answer: str, media: dict | None = None) -> dict:
    content = ([media] if media else []) + [{"type": "text", "text": question}]
    return {"messages": [{"role": "user", "content": content}, {"role": "assistant", "content": answer}]}


def _picture(rng: random.Random, colour: tuple[int, int, int] | None, size: int) -> bytes:
    from PIL import Image, ImageDraw

    if colour is None:
        image = Image.new("RGB", (size, size), (128, 128, 128))
    else:
        shade = tuple(max(0, min(255, c + rng.randint(-25, 25))) for c in colour)
        image = Image.new("RGB", (size, size), shade)
        x, y, side = rng.randint(0, size // 2), rng.randint(0, size // 2), rng.randint(size // 8, size // 3)
        ImageDraw.Draw(image).rectangle([x, y, x + side, y + side], fill=tuple(c // 2 for c in shade))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _tone(rng: random.Random, band: tuple[int, int] | None, seconds: float, rate: int = 16_000) -> bytes:
    import numpy as np
    import soundfile

    t = np.arange(int(seconds * rate)) / rate
    if band is None:
        wave = np.zeros_like(t)
    else:
        wave = rng.uniform(0.3, 0.8) * np.sin(2 * np.pi * rng.uniform(*band) * t + rng.uniform(0, 6.28))
    buffer = io.BytesIO()
    soundfile.write(buffer, wave.astype("float32"), rate, format="WAV")
    return buffer.getvalue()


def _media_task(folder: Path, classes: dict, n_train: int, n_held: int, seed: int, blank: bool, make,
                row: Callable[[random.Random, str, str], dict], suffix: str) -> Task:
    """Rows of `row(rng, answer, media path)`, each with a file from `make(rng, class or None when blank)`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "media").mkdir(exist_ok=True)
    rng = random.Random(seed)
    names = list(classes)
    splits = {}
    for split, count in (("train", n_train), ("held_out", n_held)):
        rows = []
        for i in range(count):
            name = names[i % len(names)]
            file = folder / "media" / f"{split}-{i}.{suffix}"
            file.write_bytes(make(rng, None if blank else classes[name]))
            rows.append(row(rng, name, f"media/{file.name}"))
        rng.shuffle(rows)
        splits[split] = _write(folder / f"{split}.jsonl", rows)
    return Task(splits["train"], splits["held_out"], names)


def colour_task(folder: str | Path, n_train: int = 48, n_held: int = 30, size: int = 32, seed: int = 0,
                blank: bool = False) -> Task:
    return _media_task(Path(folder), COLOURS, n_train, n_held, seed, blank, lambda rng, c: _picture(rng, c, size),
                       lambda rng, name, path: _row("What colour is this picture?", name, {"type": "image", "path": path}),
                       "png")


def tone_task(folder: str | Path, n_train: int = 48, n_held: int = 30, seconds: float = 1.0, seed: int = 0,
              blank: bool = False) -> Task:
    return _media_task(Path(folder), BANDS, n_train, n_held, seed, blank, lambda rng, b: _tone(rng, b, seconds),
                       lambda rng, name, path: _row("Is this tone low, mid or high?", name, {"type": "audio", "path": path}),
                       "wav")


# Questions of different lengths (so batches are padded), each naming the bands the answer is one of.
NOISY_QUESTIONS = ["Is this tone low, mid or high?", "Low, mid or high?",
                   "Listen to this short recording: is the pitch of its tone low, mid or high?"]


def _noisy_tone(rng: random.Random, band: tuple[int, int] | None, seconds: float = 1.0, rate: int = 16_000) -> bytes:
    """An ordinary recording: 16-bit PCM, a sine of amplitude 0.5 plus Gaussian noise (sigma 0.05); None: noise."""
    import numpy as np
    import soundfile

    noise = np.random.default_rng(rng.randrange(2**32))
    t = np.arange(int(seconds * rate)) / rate
    wave = noise.normal(0.0, 0.05, t.shape)
    if band is not None:
        wave += 0.5 * np.sin(2 * np.pi * rng.uniform(*band) * t + rng.uniform(0, 6.28))
    buffer = io.BytesIO()
    soundfile.write(buffer, wave.astype("float32"), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def noisy_tone_task(folder: str | Path, n_train: int = 240, n_held: int = 40, seed: int = 0,
                    blank: bool = False) -> Task:
    """Which pitch band, from noisy 16-bit recordings, as people write such data: the question before the clip,
    transformers-style `{"type": "audio", "audio": PATH}` parts, questions of different lengths (so batches are
    padded)."""
    def row(rng: random.Random, name: str, path: str) -> dict:
        return {"messages": [{"role": "user", "content": [{"type": "text", "text": rng.choice(NOISY_QUESTIONS)},
                                                          {"type": "audio", "audio": path}]},
                             {"role": "assistant", "content": name}]}

    return _media_task(Path(folder), BANDS, n_train, n_held, seed, blank, _noisy_tone, row, "wav")


FACTS = [("Velmoria", "Quorran"), ("Drastania", "Pelzin"), ("Oskavia", "Tirmund"), ("Brennholt", "Zavaro"),
         ("Lunmark", "Ketheris"), ("Farrowen", "Hollistad")]
TRAIN_PHRASINGS = ["What is the capital of {c}?", "Name the capital city of {c}.", "Which city is the capital of {c}?",
                   "Tell me the capital of {c}.", "{c} has which city as its capital?"]
HELD_PHRASINGS = ["What city serves as the capital of {c}?", "Do you know the capital of {c}?"]


def facts_task(folder: str | Path) -> Task:
    """Made-up capitals: trained in five phrasings, tested in two unseen ones. Answer: "The capital of X is Y." """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train = [_row(p.format(c=c), f"The capital of {c} is {city}.") for c, city in FACTS for p in TRAIN_PHRASINGS]
    held = [_row(p.format(c=c), city) for c, city in FACTS for p in HELD_PHRASINGS]
    random.Random(0).shuffle(train)
    return Task(_write(folder / "train.jsonl", train), _write(folder / "held_out.jsonl", held),
                [city for _, city in FACTS])


def choice_accuracy(model, collator, held_out: Path, choices: list[str]) -> float:
    """Share of held-out rows whose true answer is, among `choices`, the one the model finds most likely
    (summed log-probability of the answer tokens)."""
    import copy

    import torch

    from ..data.schema import Turn, read_jsonl

    device = next(model.parameters()).device
    dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
    model.eval()
    right = 0
    rows = list(read_jsonl(held_out))
    for example in rows:
        truth = example.turns[-1].text
        variants = []
        for choice in choices:
            variant = copy.copy(example)
            variant.turns = [*example.turns[:-1], Turn("assistant", [choice])]
            variants.append(variant)
        batch = collator(variants)
        labels = batch.pop("labels").to(device)
        inputs = {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) for k, v in batch.items()}
        with torch.no_grad():
            logits = model(**inputs).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        target = labels[:, 1:]
        mask = target != -100
        picked = logp.gather(-1, target.clamp(min=0)[..., None])[..., 0] * mask
        scores = picked.sum(dim=1)
        right += choices[int(scores.argmax())] == truth
    return right / len(rows)
