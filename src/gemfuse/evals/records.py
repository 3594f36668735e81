"""One system's result on one eval item: what it replied, its score, what it cost and, for a fusion, what the
members and the judge did. Kept in the eval cache and in records.jsonl as its dict; read back with the
defaults filling fields an older cache did not have."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..shapes import TierRecord
from ..tool_calls import ToolCall, canonical_calls


@dataclass
class JudgeRecord:
    choice: int  # 1-based position in `shown`
    shown: list[str]  # member ids in the order the judge saw them
    swap_disagreed: bool  # the swap check's pass chose another member (or none)


@dataclass
class VerdictRecord:
    choice: int | None  # 1-based, None: the reply held no explicit verdict
    shown: int  # how many candidates the judge saw
    read_as: str | None  # "json", "explicit" or None


@dataclass
class ItemResult:
    system: str
    item: str
    split: str
    error: str | None = None
    text: str = ""
    tool_calls: list[dict[str, Any]] | None = None  # the calls it answered with (OpenAI's shape)
    scorer: str | None = None  # how it was scored (per item under `auto`: tool-call, json-fields, ...)
    correct: bool = False
    value: float = 0.0
    extracted: str | None = None
    eval_cost: float = 0.0  # what the rubric's evaluator calls cost
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    unpriced: list[str] = field(default_factory=list)
    latency_s: float | None = None
    calls: int = 0
    degraded: str | None = None
    chosen: str | None = None
    certainty: float | None = None  # a member's mean token log-probability, when asked for (cascade, confidence)
    certainties: dict[str, float] = field(default_factory=dict)  # and every measure (models/certainty.py)
    # fusions only
    candidates: dict[str, bool] = field(default_factory=dict)  # member -> was its own answer right
    judge: JudgeRecord | None = None
    verdicts: list[VerdictRecord] = field(default_factory=list)
    tie: bool = False
    tiers: list[TierRecord] = field(default_factory=list)  # a cascade: each tier asked (fusion.trace.Tier)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def answered(self) -> bool:
        return not self.error and bool(self.text or self.tool_calls)

    @property
    def calls_key(self) -> str | None:
        """Its calls as a vote counts them (canonical, as a set), or None for an answer in words."""
        if not self.tool_calls:
            return None
        return "calls: " + " ".join(canonical_calls([ToolCall.from_openai(c) for c in self.tool_calls]))

    def certainty_by(self, measure: str) -> float | None:
        """How sure the member was by `measure`; None for no answer (a record from before the measures holds the
        mean only)."""
        if not self.answered:
            return None
        if measure in self.certainties:
            return self.certainties[measure]
        return self.certainty if measure == "mean" else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ItemResult:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("judge"):
            values["judge"] = JudgeRecord(**values["judge"])
        values["verdicts"] = [VerdictRecord(**v) for v in values.get("verdicts") or []]
        return cls(**values)
