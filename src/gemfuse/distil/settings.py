"""Every setting of a distillation, defined once: `gemfuse distil`'s options, the keywords of `gemfuse.distil`'s
functions and the fields of a distil TOML file are generated from these fields, so they cannot drift."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..config import describe_validation_error, field_names, read_toml
from ..errors import ConfigError
from ..models.base import MaxTokens, Temperature


class DistilSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # what is distilled into what
    teacher: str | None = Field(None, description="fusion/NAME (a preset) or a model name: who labels the prompts")
    student: str = Field("gemma-3-270m-hf", description="the transformers model fine-tuned on the teacher's answers")
    eval: str | None = Field(None, description="held-out eval set; a training prompt found in it is an error")
    name: str | None = Field(None, description="the student's model name in the config (default: distil-<out>)")
    add_to_config: bool = Field(True, description="register the student in the config, to ask, serve, fuse or export it")
    # labelling
    max_tokens: MaxTokens = Field(256, description="the teacher's answer length (a preset keeps its own)")
    temperature: Temperature = Field(0.0, description="the teacher's sampling temperature (a model teacher)")
    seed: int = Field(0, description="every call's seed, the validation split and the training order")
    concurrency: int = Field(32, ge=1, description="prompts in flight (each model keeps its own limit)")
    # filtering
    min_agree: int = Field(0, ge=0, description="keep a row only when at least this many members gave the same "
                                                "answer (under the vote's extractor); 0: off")
    swap_agreed: bool = Field(True, description="best-of with the swap check: drop rows whose two orders disagreed")
    drop_degraded: bool = Field(True, description="drop rows whose fusion was degraded (a member failed, a tie...)")
    verify: bool = Field(True, description="rows with a reference answer: keep only those the scorer finds right")
    scorer: Literal["auto", "exact", "contains", "numeric", "choice", "regex"] = Field(
        "auto", description="how an answer is checked against a reference, in the filter and the eval; auto: "
                            "numbers by value, else the filter looks for the reference's words and the eval by type")
    pattern: str | None = Field(None, description="regex scorer: read the answer from this group")
    min_chars: int = Field(1, ge=0, description="drop answers shorter than this")
    max_chars: int = Field(8000, ge=1, description="drop answers longer than this")
    dedupe: bool = Field(True, description="drop rows whose prompt repeats an earlier one")
    near_duplicate: float = Field(0.9, gt=0, le=1, description="prompts this similar (Jaccard of character "
                                                               "4-grams) count as repeats; 1: exact repeats only")
    val_fraction: float | None = Field(None, ge=0, lt=0.5, description="rows held out for validation loss "
                                                                       "(default: a tenth from 50 rows up)")
    # training: anything of the tune config, as section.key=value
    set: list[str] = Field(default_factory=list, description="tune config overrides: train.lr=1e-3,lora.r=8")

    @field_validator("set", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value


def distil_settings(base: DistilSettings | None = None, *, file: str | Path | None = None,
                    named: Callable[[str], str] = str, **changes: Any) -> DistilSettings:
    """Defaults < a distil TOML `file` < `base` < `changes`; a wrong setting is named by `named(setting)`."""
    values: dict[str, Any] = {}
    if file is not None:
        path = Path(file).expanduser()
        values = read_toml(path, f"distil settings {path} do not exist")
        try:
            DistilSettings.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error(exc, str(path), known=field_names(DistilSettings))) from None
    values.update(base.model_dump(exclude_unset=True) if base else {})
    values.update({k: v for k, v in changes.items() if v is not None})
    try:
        return DistilSettings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{named('.'.join(str(p) for p in e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"distil: {problems}") from None
