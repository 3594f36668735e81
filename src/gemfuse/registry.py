"""The composition root: a config's model specs become Model objects (backends by name, models/backends.py)
and its presets become fusion models (`fusion/<preset>`). It sits above both `models/` and `fusion/`; the
backends know nothing of fusion or the config file, and fusion, evaluation and the server see a registry only
through the ModelRegistry Protocol (fusion/registry.py)."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from pathlib import Path

from .capture import CaptureWriter, Scrubber
from .config import Config, load_config, preset_problem, unknown_model_message
from .errors import ConfigError, UnknownModelError
from .files import MADE_ON_FIRST_USE
from .finetune_gguf import base_gguf, merged_gguf
from .fusion.model import FusionModel
from .fusion.preset import FUSION_PREFIX, FusionPreset
from .models.backends import backend_class
from .models.base import Model
from .models.finetuned import run_spec
from .models.spec import ModelSpec

# A run folder on llama.cpp: the merged fine-tune and its base, made when a model first loads them (finetune_gguf.py).
MADE_ON_FIRST_USE.update({"finetune": merged_gguf, "finetune-base": base_gguf})


class Registry:
    """Named models from a config; one instance per name, made on first use and shared."""

    def __init__(self, config: Config, remote_only: bool = False):
        self.config = config
        self.remote_only = remote_only  # several server processes: in-process models are not served
        self._models: dict[str, Model] = {}
        self._retired: list[Model] = []  # models whose name was given to another spec, closed with the registry
        # per event loop: a semaphore is bound to the loop it first waited in, and each `run_sync` (a notebook's
        # second eval) runs a loop of its own
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Semaphore]] = \
            weakref.WeakKeyDictionary()

    @classmethod
    def load(cls, path=None, remote_only: bool = False) -> Registry:
        return cls(load_config(path), remote_only)

    def in_process(self, name: str) -> bool:
        return backend_class(self.spec(name).backend).in_process

    def names(self, presets: bool = False) -> list[str]:
        """Model names, and with `presets` the fusion presets as `fusion/<name>` (without the in-process
        ones, and the presets that use them, when remote only)."""
        models = [n for n in self.config.specs if not (self.remote_only and self.in_process(n))]
        if not presets:
            return models
        usable = [p for p, preset in self.config.presets.items()
                  if not self.remote_only or all(m in models for m in preset.model_names())]
        return models + [FUSION_PREFIX + p for p in usable]

    def spec(self, name: str) -> ModelSpec:
        if name not in self.config.specs:
            found = run_spec(name, self.config.file.finetune_runtime)  # a fine-tune's run folder is a model
            if found is not None:
                self.config.specs[name] = found
                return found
            raise UnknownModelError(unknown_model_message(name, self.names(presets=True)))
        return self.config.specs[name]

    def specs(self) -> dict[str, ModelSpec]:
        return dict(self.config.specs)

    def add_spec(self, name: str, spec: ModelSpec) -> None:
        """Name `spec`; the same spec again keeps its loaded model. A model the name held before is kept until
        `aclose`: dropped while loaded, an in-process engine freed by the collector broke the others running
        beside it (llama.cpp answers turned to garbage)."""
        if self.config.specs.get(name) == spec:
            return
        self.config.specs[name] = spec
        retired = self._models.pop(name, None)
        if retired is not None:
            self._retired.append(retired)

    def preset(self, name: str) -> FusionPreset:
        key = name.removeprefix(FUSION_PREFIX)
        if key not in self.config.presets:
            raise UnknownModelError(f"unknown fusion preset {key!r}; known presets: "
                                    f"{', '.join(sorted(self.config.presets)) or 'none'}"
                                    if name.startswith(FUSION_PREFIX) or not self.config.specs
                                    else unknown_model_message(name, self.names(presets=True)))
        return self.config.presets[key]

    def check_preset(self, preset) -> None:
        """Refuse an ad-hoc preset with unknown models or a fusion inside it."""
        problem = preset_problem(None, preset, self.config.specs, self.config.presets)
        if problem:
            raise ConfigError(f"fusion: {problem}")

    def get(self, name: str) -> Model:
        """A model by name; `fusion/<preset>` gives the preset as a model."""
        if name not in self._models:
            if name.startswith(FUSION_PREFIX):
                self._models[name] = FusionModel(name, self.preset(name), self)
            else:
                spec = self.spec(name)
                backend = backend_class(spec.backend)
                if self.remote_only and backend.in_process:
                    raise UnknownModelError(
                        f"{name} runs in-process, and this server runs several worker processes, which serve "
                        "remote models only; serve local models from a one-worker `gemfuse serve`")
                self._models[name] = backend(name, spec)
        return self._models[name]

    def secret_variables(self) -> list[str]:
        """The environment variables holding keys: the server's and every configured model's."""
        names = {self.config.server.api_key_env}
        names.update(env for spec in self.config.specs.values() if (env := getattr(spec, "api_key_env", None)))
        return sorted(names)

    def capture_writer(self, folder: str | Path | None = None) -> CaptureWriter | None:
        """Where answers are kept as training rows: `folder`, else the config's [server] capture_dir; None when
        neither is set. Its rows never hold the values of the key variables."""
        server = self.config.server
        folder = folder or server.capture_dir
        if not folder:
            return None
        return CaptureWriter(folder, max_mb=server.capture_max_mb, models=server.capture_models,
                             scrubber=Scrubber.from_env(self.secret_variables()))

    def slot(self, name: str) -> contextlib.AbstractAsyncContextManager:
        """The model's concurrency slot (spec.concurrency calls at once); unlimited when unset."""
        limit = self.spec(name).concurrency
        if limit is None:
            return contextlib.nullcontext()
        slots = self._slots.setdefault(asyncio.get_running_loop(), {})
        if name not in slots:
            slots[name] = asyncio.Semaphore(limit)
        return slots[name]

    async def aclose(self) -> None:
        for model in [*self._models.values(), *self._retired]:
            await model.aclose()
        self._models.clear()
        self._retired.clear()
