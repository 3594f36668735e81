"""Every setting of an eval, defined once: `gemfuse eval`'s options and the keywords of `gemfuse.evals.run()` /
`gemfuse.evaluate()` are generated from these fields, so they cannot drift."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ConfigError
from ..models.base import MaxTokens, Temperature
from ..models.certainty import Measure
from .scorers import default_scorer


class EvalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(default_factory=list, description="single models to score: a,b,runs/my-lora")
    pool: list[str] = Field(default_factory=list, description="the fusion pool: a,b")
    judge: str | None = Field(None, description="the fusion judge")
    systems: list[str] = Field(default_factory=lambda: ["members"],
                               description="members,vote,best-of,merge,debate,self, fusion/<preset> or model names")
    n: int | None = Field(None, ge=1, description="the first N items (built-in sets: how many to make; 60)")
    seed: int = Field(0, description="fixes the built-in sets, the dev/test split and every call's seed")
    dev_fraction: float = Field(0.25, ge=0.0, le=0.9,
                                description="items that choose the best member (without a split column)")
    max_tokens: MaxTokens = Field(96, description="members' answer length")
    judge_max_tokens: MaxTokens = Field(64, description="the judge's reply length")
    temperature: Temperature = Field(0.0, description="members' sampling temperature")
    swap_check: bool = Field(False, description="best-of: ask the judge in two orders")
    scorer: Literal["auto", "exact", "contains", "numeric", "choice", "regex", "rubric", "tool-call", "no-call",
                    "json-schema", "json-fields"] = Field(
        "auto", description="how a reply is scored; auto: by the answers' type (calls and JSON by the item's shape)")
    tolerance: float = Field(1e-6, ge=0.0, description="numeric: relative tolerance")
    pattern: str | None = Field(None, description="regex: read the answer from this group")
    evaluator: str | None = Field(None, description="rubric: the grading model (not a judge)")
    rubric: str | None = Field(None, description="rubric: what a better answer does")
    concurrency: int = Field(32, ge=1, description="items in flight (each model keeps its own limit)")
    certainty: Measure = Field("mean", description="confidence and cascade: how sure a member was: mean | "
                                                   "lowest-window | self-certainty")
    threshold: float | None = Field(None, description="cascade: accept a tier this sure; unset: calibrated on the dev "
                                                      "items (the measure's default without any)")
    target_accuracy: float | None = Field(None, gt=0, le=1, description="cascade: the threshold reaching this "
                                                                        "accuracy on dev at the least cost")
    target_cost: float | None = Field(None, gt=0, description="cascade: the threshold most accurate on dev within "
                                                              "this cost per item (USD)")
    write_preset: str | None = Field(None, description="cascade: save the calibrated cascade over --pool as this "
                                                       "preset of the config")

    @model_validator(mode="after")
    def _calibration_needs_a_goal(self) -> EvalSettings:
        if self.write_preset and not (self.pool and (self.target_accuracy or self.target_cost)):
            raise ValueError("write_preset: needs a pool and a goal: target_accuracy or target_cost")
        return self

    @field_validator("models", "pool", "systems", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):  # "a,b" from the command line or a config
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    def scorer_id(self, kind: str) -> dict[str, Any]:
        """What decides a score (and so a scored item's cache key)."""
        name = default_scorer(kind) if self.scorer == "auto" else self.scorer
        return {"scorer": name, "tolerance": self.tolerance, "pattern": self.pattern, "evaluator": self.evaluator,
                "rubric": self.rubric}


def eval_settings(base: EvalSettings | None = None, *, named: Callable[[str], str] = str,
                  **changes: Any) -> EvalSettings:
    """`base` (or the defaults) with `changes`, checked; a wrong one is named by `named(setting)` (the command
    line passes its flag: `--max-tokens`)."""
    values = {**(base.model_dump() if base else {}), **changes}
    try:
        return EvalSettings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{named('.'.join(str(p) for p in e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"eval: {problems}") from None
