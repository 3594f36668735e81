"""Backends by name: our own, then plugins from the `gemfuse.backends` entry points.

A plugin ships a `Model` subclass with a `Spec` (a `ModelSpec` subclass) and registers it:

    [project.entry-points."gemfuse.backends"]
    mybackend = "my_package.backend:MyModel"
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata

from ..errors import ConfigError
from .base import Model
from .spec import ModelSpec

BUILTIN_BACKENDS = {
    "openai": "gemfuse.models.openai:OpenAIModel",
    "llamacpp": "gemfuse.models.llamacpp:LlamaCppModel",
    "transformers": "gemfuse.models.transformers:TransformersModel",
    "vllm": "gemfuse.models.vllm:VLLMModel",
    "embedding": "gemfuse.models.embedding:EmbeddingModel",
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
