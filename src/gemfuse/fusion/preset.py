"""A fusion preset: the pool, the judge, the mode, quorum and limits. Named presets live in the config:

    [presets.council]
    pool = ["gpt-mini", { model = "my-gemma", temperature = 0.7 }, "smollm2-135m"]
    judge = "gpt-mini"
    backup_judge = "my-gemma"
    mode = "merge"                 # vote | best-of | merge | debate | self | confidence | cascade
    min_answers = 2                # quorum
    grace_ms = 1500                # after the quorum, wait this long for stragglers, then cut them
    deadline_ms = 30000            # hard limit for the fan-out
    max_cost = 0.05                # USD; no further rounds once spent
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..models.base import MaxTokens, Temperature, TopP
from ..models.certainty import WINDOW, Measure

Mode = Literal["vote", "best-of", "merge", "debate", "self", "confidence", "cascade"]
MODE_NAMES: tuple[str, ...] = get_args(Mode)  # the one list (the eval's systems read it)
FUSION_PREFIX = "fusion/"
# a cascade's threshold when neither set nor calibrated: mean log-probability -0.3 (a mean token probability of
# 0.74); the others about where the built-in Gemma's answer to a fact it knows sits ("The capital of France is
# Paris.": 6.2 and 13.2, where a made-up country's capital gets 4.8 and 10.8)
DEFAULT_THRESHOLDS: dict[str, float] = {"mean": -0.3, "lowest-window": 6.0, "self-certainty": 13.0}


class Member(BaseModel):
    """One pool member: a model name and its own options."""

    model_config = ConfigDict(extra="forbid")
    model: str
    temperature: Temperature | None = Field(None, description="members' sampling temperature")
    top_p: TopP | None = None
    max_tokens: MaxTokens | None = None
    seed: int | None = None
    timeout_ms: int | None = Field(None, gt=0, description="this member's own time limit")


class FusionPreset(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pool: list[str | Member] = Field(min_length=1)
    judge: str | None = Field(None, description="the model that picks or merges (best-of, merge, debate, self)")
    backup_judge: str | None = Field(None, description="the judge to ask when the judge gives no verdict")
    mode: Mode = Field("merge", description=f"{' | '.join(MODE_NAMES)}; unset: merge with a judge, vote without")
    description: str = ""
    min_answers: int = Field(1, ge=1, description="fewer successful members than this is an error")
    grace_ms: int | None = Field(None, ge=0, description="after the quorum, how long to wait for the rest")
    deadline_ms: int | None = Field(None, gt=0, description="hard limit for each fan-out")
    member_timeout_ms: int | None = Field(None, gt=0, description="default time limit per member call")
    max_tokens: MaxTokens = Field(512, description="members' answer length")
    temperature: Temperature | None = Field(None, description="members' sampling temperature")
    judge_max_tokens: MaxTokens = Field(512, description="the judge's answer length")
    judge_timeout_ms: int | None = Field(None, gt=0, description="time limit per judge call")
    max_cost: float | None = Field(None, ge=0, description="USD; stops further rounds once spent")
    rounds: int = Field(2, ge=0, le=10, description="debate: revision rounds")
    debate_final: Literal["vote", "best-of", "merge"] = Field("vote", description="debate: how the last answers are fused")
    samples: int = Field(3, ge=1, le=32, description="self: how many samples of the one model")
    self_final: Literal["best-of", "merge"] = Field("best-of", description="self: how the samples are fused")
    swap_check: bool = Field(False, description="best-of: ask again with the order rotated, accept only agreement")
    tie_break: Literal["pool-order", "judge"] = Field(
        "pool-order", description="vote: a tie goes to the judge, or to the pool's first (marked degraded)")
    extractor: str = Field("auto", description="vote's answer extractor: auto, number, letter, text or a registered one")
    logprobs: bool = Field(False, description="ask members for their tokens' log-probabilities (confidence, cascade "
                                              "and a confidence-weighted vote always do)")
    vote_weight: Literal["count", "confidence"] = Field(
        "count", description="vote: one vote per member, or each weighted by its certainty (mean token probability)")
    certainty: Measure = Field("mean", description="how sure a member was (confidence, cascade, weighted vote): mean "
                                                   "| lowest-window | self-certainty")
    certainty_window: int = Field(WINDOW, ge=1, le=4096, description="lowest-window: tokens per window")
    threshold: float | None = Field(None, description="cascade: a tier's answer is accepted when its certainty is at "
                                                      "least this; unset: calibrated on an eval's dev items, else "
                                                      "the measure's default (mean -0.3)")
    tier_samples: int = Field(1, ge=1, le=8, description="cascade: answers per tier; more than one: accepted when "
                                                         "they all agree")
    cascade_final: Literal["vote", "best-of", "merge", "confidence"] = Field(
        "vote", description="cascade: when no tier is sure, how every answer gathered is fused")
    seed: int | None = Field(None, description="shuffle seed for the judge's view; random (and recorded) if unset")

    @model_validator(mode="before")
    @classmethod
    def _default_mode(cls, values: Any) -> Any:
        """The one rule for a fusion given no mode (a config's preset, `ask --pool`, the server's pool): a judge
        merges the answers, and without one the members vote."""
        if isinstance(values, dict) and values.get("mode") is None:
            values = {**values, "mode": "merge" if values.get("judge") else "vote"}
        return values

    @model_validator(mode="after")
    def _consistent(self) -> FusionPreset:
        needs_judge = self.mode in ("best-of", "merge") or (self.mode == "debate" and self.debate_final != "vote") \
            or self.mode == "self" or (self.mode == "vote" and self.tie_break == "judge") \
            or (self.mode == "cascade" and self.cascade_final in ("best-of", "merge"))
        if needs_judge and not self.judge:
            raise ValueError("tie_break = 'judge' needs a judge model" if self.mode == "vote"
                             else f"cascade_final = {self.cascade_final!r} needs a judge model" if self.mode == "cascade"
                             else f"mode {self.mode!r} needs a judge model")
        if self.mode == "self" and len(self.pool) != 1:
            raise ValueError("mode 'self' samples one model: give exactly one pool entry and set samples")
        from .extract import EXTRACTORS

        if self.extractor not in EXTRACTORS:
            raise ValueError(f"unknown extractor {self.extractor!r}; known: {', '.join(EXTRACTORS)} "
                             "(gemfuse.fusion.extract.register_extractor adds one)")
        if self.mode != "self" and self.min_answers > len(self.pool):
            raise ValueError(f"min_answers ({self.min_answers}) is larger than the pool ({len(self.pool)})")
        return self

    def cascade_threshold(self) -> float:
        return self.threshold if self.threshold is not None else DEFAULT_THRESHOLDS[self.certainty]

    def members(self) -> list[Member]:
        return [Member(model=m) if isinstance(m, str) else m for m in self.pool]

    def model_names(self) -> list[str]:
        names = [m.model for m in self.members()]
        return names + [n for n in (self.judge, self.backup_judge) if n]


def builtin_presets() -> dict[str, FusionPreset]:
    return {"default": FusionPreset(
        # best-of, not merge: a 135M judge picks well enough but adds made-up facts when it rewrites
        pool=["smollm2-135m", "gemma-3-270m"], judge="smollm2-135m", mode="best-of", max_tokens=96,
        judge_max_tokens=64, temperature=0, description="the two built-in local models, judged by SmolLM2")}
