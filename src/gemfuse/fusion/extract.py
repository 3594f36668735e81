"""Turn a free-text answer into something votes can be counted on: a number, an option letter, a short text.

Extractors are plain functions `text -> str | None`; `EXTRACTORS` names the built-in ones and `vote` takes any
callable, so callers can plug their own.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Sequence

Extractor = Callable[[str], str | None]

_MARKER = re.compile(r"(?:final answer|answer)\s*(?:is|:)\s*(.+)", re.IGNORECASE | re.DOTALL)
_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?")
_LETTER = re.compile(r"(?:^|\banswer\s*(?:is|:)?\s*|\boption\s*|\()\(?([A-J])\)?(?:[.):]|\s|$)", re.IGNORECASE)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def _focus(text: str) -> str:
    """The part after 'answer:' / 'the answer is', when the text has one."""
    match = _MARKER.search(text)
    return match.group(1) if match else text


def number(text: str) -> str | None:
    """The last number, normalised: '1,000.50' -> '1000.5', '4.0' -> '4'."""
    found = _NUMBER.findall(_focus(text))
    if not found:
        return None
    raw = found[-1].replace(",", "")
    try:
        value = float(raw)
    except ValueError:
        return None
    return str(int(value)) if value.is_integer() else repr(value)


def letter(text: str) -> str | None:
    """An option letter: '(B)', 'B)', 'B.', 'answer: B', 'option b'."""
    match = _LETTER.search(_focus(text).strip())
    return match.group(1).upper() if match else None


def short_text(text: str) -> str | None:
    """The first line, lower case, without punctuation, articles and extra spaces."""
    focus = _focus(text).strip().splitlines()
    if not focus:
        return None
    line = focus[0].lower().translate(str.maketrans("", "", string.punctuation))
    line = " ".join(_ARTICLES.sub(" ", line).split())
    return line or None


def auto(text: str) -> str | None:
    """A strict option letter if there is one, else the last number, else the normalised first line."""
    focus = _focus(text).strip()
    # only unmistakable option forms: "B", "(B)", "B)", "B." alone or leading; never the word "I"
    if re.fullmatch(r"\(?[A-J]\)?[.)]?", focus) or re.match(r"(\([A-J]\)|[A-J][.)])(\s|$)", focus):
        return letter(focus)
    return number(text) or short_text(text)


EXTRACTORS: dict[str, Extractor] = {"auto": auto, "number": number, "letter": letter, "text": short_text}


def register_extractor(name: str, extractor: Extractor) -> None:
    """Make `extractor` available to presets as `extractor = "<name>"`."""
    EXTRACTORS[name] = extractor


def answer_key(text: str, extractor: str | Extractor = "auto") -> str:
    """What a vote counts an answer as: the extractor's reading, else the whole answer, trimmed, lower case."""
    read = EXTRACTORS.get(extractor, auto) if isinstance(extractor, str) else extractor
    return read(text) or text.strip().lower()


def plurality(keys: Sequence[str], weights: Sequence[float] | None = None) -> tuple[dict[str, float], list[str]]:
    """(each key's votes, the keys tied for the most, in the order they first appear): the one count of a vote,
    used by the vote itself, an eval's replay of a cascade and a captured row's agreement."""
    counts: dict[str, float] = {}
    for key, weight in zip(keys, weights if weights is not None else [1.0] * len(keys), strict=True):
        counts[key] = counts.get(key, 0) + weight
    if not counts:
        return counts, []
    best = max(counts.values())
    return counts, [k for k in dict.fromkeys(keys) if counts[k] == best]
