"""Config -> Model. Backends are found by name: our own, then plugins from the `gemfuse.backends` entry points.

A plugin ships a `Model` subclass with a `Spec` (a `ModelSpec` subclass) and registers it:

    [project.entry-points."gemfuse.backends"]
    mybackend = "my_package.backend:MyModel"
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import TYPE_CHECKING

from ..errors import ConfigError, UnknownModelError
from .base import Model
from .spec import ModelSpec

if TYPE_CHECKING:
    from ..config import Config

BUILTIN_BACKENDS = {
    "openai": "gemfuse.models.openai:OpenAIModel",
    "llamacpp": "gemfuse.models.llamacpp:LlamaCppModel",
    "transformers": "gemfuse.models.transformers:TransformersModel",
}
ENTRY_POINT_GROUP = "gemfuse.backends"


def backend_table() -> dict[str, str]:
    table = dict(BUILTIN_BACKENDS)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        table.setdefault(entry.name, entry.value)
    return table


def backend_class(backend: str | None, where: str = "backend") -> type[Model]:
    table = backend_table()
    if backend not in table:
        raise ConfigError(f"{where}: unknown backend {backend!r}; known backends: {', '.join(sorted(table))}")
    module, _, attr = table[backend].partition(":")
    return getattr(importlib.import_module(module), attr)


def spec_class(backend: str | None, where: str = "backend") -> type[ModelSpec]:
    return backend_class(backend, where).Spec


class Registry:
    """Named models from a config; one instance per name, made on first use and shared."""

    def __init__(self, config: Config):
        self.config = config
        self._models: dict[str, Model] = {}

    @classmethod
    def load(cls, path=None) -> Registry:
        from ..config import load_config

        return cls(load_config(path))

    def names(self) -> list[str]:
        return list(self.config.specs)

    def spec(self, name: str) -> ModelSpec:
        if name not in self.config.specs:
            from ..config import unknown_model_message

            raise UnknownModelError(unknown_model_message(name, self.config.specs))
        return self.config.specs[name]

    def get(self, name: str) -> Model:
        if name not in self._models:
            spec = self.spec(name)
            self._models[name] = backend_class(spec.backend)(name, spec)
        return self._models[name]

    async def aclose(self) -> None:
        for model in self._models.values():
            await model.aclose()
        self._models.clear()
