"""What fusion, evaluation and the server are handed to find models and presets by name: a typed Protocol, so
they depend on this shape and not on where the models come from. `gemfuse.registry.Registry` is the one built
from the config; an eval wraps it with its cache (`gemfuse.evals.cache.CachingRegistry`)."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, runtime_checkable

from ..models.base import Model
from ..models.spec import ModelSpec
from .preset import FusionPreset


@runtime_checkable
class ModelRegistry(Protocol):
    def get(self, name: str) -> Model:
        """The model `name`; `fusion/<preset>` is a preset as a model."""
        ...

    def spec(self, name: str) -> ModelSpec:
        """The model's spec; an unknown name raises UnknownModelError listing the known ones."""
        ...

    def specs(self) -> Mapping[str, ModelSpec]:
        """Every configured model's spec, by name."""
        ...

    def add_spec(self, name: str, spec: ModelSpec) -> None:
        """Make `spec` known as `name` for this registry's lifetime (a fine-tune's base, a GGUF to score)."""
        ...

    def slot(self, name: str) -> AbstractAsyncContextManager[Any]:
        """Held while a call to `name` runs: the model's concurrency limit."""
        ...

    def preset(self, name: str) -> FusionPreset:
        ...

    def check_preset(self, preset: FusionPreset) -> None:
        """Refuse a preset that names unknown models or a fusion inside it."""
        ...

    async def aclose(self) -> None:
        ...
