"""Config-side description of a model: what every backend shares, extended by each backend's own Spec."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Price(BaseModel):
    """US dollars per million tokens."""

    model_config = ConfigDict(extra="forbid")
    input: float = Field(ge=0)
    output: float = Field(ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000


class ModelSpec(BaseModel):
    """Fields every backend accepts. A backend subclasses this and adds its own (extra keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    backend: str
    description: str = ""
    price: Price | None = None
    concurrency: int | None = Field(None, ge=1, description="calls in flight at once (local models: 1)")
