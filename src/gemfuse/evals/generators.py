"""Built-in eval sets: seeded generators of arithmetic and multi-step word problems with exact answers.

Made here, so they carry no licence question and no model can have seen them in training. Each comes as free
answer (`builtin:arithmetic`, `builtin:word`, `builtin:math` = both, alternating) or as multiple choice
(`builtin:arithmetic-choice`, ...): four options, the distractors the usual slips (off by one, by ten, a wrong
operation).
"""

from __future__ import annotations

import random
from collections.abc import Callable

NUMBER_INSTRUCTION = "Reply with the final number only."
CHOICE_INSTRUCTION = "Reply with the letter of the correct option only."
LETTERS = "ABCD"


def arithmetic(rng: random.Random) -> tuple[str, int, int]:
    """(question, answer, the result of a typical slip)."""
    a, b, c = rng.randint(2, 49), rng.randint(2, 29), rng.randint(2, 9)
    shape = rng.randrange(5)
    if shape == 0:
        return f"What is {a} + {b}?", a + b, a - b
    if shape == 1:
        a, b = max(a, b), min(a, b)
        return f"What is {a} - {b}?", a - b, a + b
    if shape == 2:
        return f"What is {b} * {c}?", b * c, b + c
    if shape == 3:
        return f"What is ({a} + {b}) * {c}?", (a + b) * c, a + b * c
    return f"What is {a} + {b} - {c}?", a + b - c, a + b + c


NAMES = ("Mia", "Omar", "Lena", "Ravi", "Sofia", "Tom", "Aiko", "Nadia", "Jonas", "Priya")
THINGS = ("apples", "stickers", "marbles", "pencils", "cards", "shells", "stamps", "coins")


def word_problem(rng: random.Random) -> tuple[str, int, int]:
    """A two- or three-step story problem: (question, answer, the result of a typical slip)."""
    name, other = rng.sample(NAMES, 2)
    thing = rng.choice(THINGS)
    shape = rng.randrange(4)
    if shape == 0:
        start, packs, each, given = rng.randint(5, 30), rng.randint(2, 6), rng.randint(3, 9), rng.randint(1, 9)
        return (f"{name} has {start} {thing}. {name} buys {packs} packs with {each} {thing} in each pack and then "
                f"gives {given} {thing} to {other}. How many {thing} does {name} have now?",
                start + packs * each - given, start + packs + each - given)
    if shape == 1:
        boxes, each, lost = rng.randint(3, 9), rng.randint(4, 12), rng.randint(1, 10)
        return (f"There are {boxes} boxes with {each} {thing} in each box. {lost} {thing} are lost. "
                f"How many {thing} are left?", boxes * each - lost, boxes * each + lost)
    if shape == 2:
        people, each = rng.randint(2, 6), rng.randint(2, 9)
        extra = rng.randint(1, 9)
        total = people * each + extra
        return (f"{name} has {total} {thing} and shares them equally among {people} friends, giving each friend "
                f"as many as possible. How many {thing} are left over?", extra, each)
    start, days, per_day = rng.randint(10, 60), rng.randint(2, 7), rng.randint(2, 8)
    start += (start + days * per_day) % 2  # an even total, so half of it is whole
    total = start + days * per_day
    return (f"{name} has {start} {thing}. Every day for {days} days, {name} gets {per_day} more {thing}. "
            f"Then {other} takes half of them. How many {thing} does {name} have left?", total // 2, total)


def _distractors(rng: random.Random, answer: int, slip: int) -> list[int]:
    options = {answer}
    for candidate in (slip, answer + 1, answer - 1, answer + 10, answer - 10, answer * 2, answer + 2):
        if len(options) == 4:
            break
        if candidate >= 0:
            options.add(candidate)
    options.discard(answer)
    chosen = [answer, *rng.sample(sorted(options), 3)]
    rng.shuffle(chosen)
    return chosen


GENERATORS: dict[str, Callable[[random.Random], tuple[str, int, int]]] = {
    "arithmetic": arithmetic, "word": word_problem}
BUILTIN_SETS = ("arithmetic", "word", "math", "arithmetic-choice", "word-choice", "math-choice")


def generate(name: str, n: int, seed: int = 0) -> list[dict]:
    """`n` rows of the built-in set `name` as dataset rows: id, prompt, answer (and choices)."""
    if name not in BUILTIN_SETS:
        raise ValueError(f"unknown built-in eval set {name!r}; known: {', '.join('builtin:' + s for s in BUILTIN_SETS)}")
    base, _, choice = name.partition("-")
    rows = []
    for i in range(n):
        kind = ("arithmetic", "word")[i % 2] if base == "math" else base
        rng = random.Random(f"{seed}:{kind}:{i}")  # one stream per item: item i is the same whatever n is
        question, answer, slip = GENERATORS[kind](rng)
        row = {"id": f"{kind}-{seed}-{i}", "tags": [kind]}
        if choice:
            options = _distractors(rng, answer, slip)
            row.update(prompt=question, choices=[str(o) for o in options],
                       answer=LETTERS[options.index(answer)], instruction=CHOICE_INSTRUCTION)
        else:
            row.update(prompt=f"{question} {NUMBER_INSTRUCTION}", answer=str(answer))
        rows.append(row)
    return rows
