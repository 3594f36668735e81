"""Config -> Model. Backends are found by name: our own, then plugins from the `gemfuse.backends` entry points.

A plugin ships a `Model` subclass with a `Spec` (a `ModelSpec` subclass) and registers it:

    [project.entry-points."gemfuse.backends"]
    mybackend = "my_package.backend:MyModel"
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
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


@functools.cache  # entry points are fixed for a process; scanning them costs ~0.1 ms per installed package
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
        self._slots: dict[str, asyncio.Semaphore] = {}

    @classmethod
    def load(cls, path=None) -> Registry:
        from ..config import load_config

        return cls(load_config(path))

    def names(self, presets: bool = False) -> list[str]:
        """Model names, and with `presets` the fusion presets as `fusion/<name>`."""
        from ..fusion.preset import FUSION_PREFIX

        return list(self.config.specs) + ([FUSION_PREFIX + p for p in self.config.presets] if presets else [])

    def spec(self, name: str) -> ModelSpec:
        if name not in self.config.specs:
            from .finetuned import run_spec

            found = run_spec(name)  # a fine-tune's run folder is a model by its path
            if found is not None:
                self.config.specs[name] = found
                return found
            from ..config import unknown_model_message

            raise UnknownModelError(unknown_model_message(name, self.names(presets=True)))
        return self.config.specs[name]

    def preset(self, name: str):
        from ..config import unknown_model_message
        from ..fusion.preset import FUSION_PREFIX

        key = name.removeprefix(FUSION_PREFIX)
        if key not in self.config.presets:
            raise UnknownModelError(f"unknown fusion preset {key!r}; known presets: "
                                    f"{', '.join(sorted(self.config.presets)) or 'none'}"
                                    if name.startswith(FUSION_PREFIX) or not self.config.specs
                                    else unknown_model_message(name, self.names(presets=True)))
        return self.config.presets[key]

    def check_preset(self, preset) -> None:
        """Refuse an ad-hoc preset with unknown models or a fusion inside it."""
        from ..config import preset_problem

        problem = preset_problem(None, preset, self.config.specs, self.config.presets)
        if problem:
            raise ConfigError(f"fusion: {problem}")

    def get(self, name: str) -> Model:
        """A model by name; `fusion/<preset>` gives the preset as a model."""
        if name not in self._models:
            from ..fusion.preset import FUSION_PREFIX

            if name.startswith(FUSION_PREFIX):
                from ..fusion.model import FusionModel

                self._models[name] = FusionModel(name, self.preset(name), self)
            else:
                spec = self.spec(name)
                self._models[name] = backend_class(spec.backend)(name, spec)
        return self._models[name]

    def slot(self, name: str):
        """The model's concurrency slot (spec.concurrency calls at once); unlimited when unset."""
        limit = self.spec(name).concurrency
        if limit is None:
            return contextlib.nullcontext()
        if name not in self._slots:
            self._slots[name] = asyncio.Semaphore(limit)
        return self._slots[name]

    async def aclose(self) -> None:
        for model in self._models.values():
            await model.aclose()
        self._models.clear()
