"""The short way in: a model by name, and a fusion with the default registry (the config file, or `config`)."""

from __future__ import annotations

from collections.abc import Sequence

from ._sync import run_sync
from .fusion.api import FusionResult
from .fusion.api import afuse as afuse_with
from .messages import Message
from .models.base import Model
from .registry import Registry


def get_model(name: str, config=None) -> Model:
    """A configured model by name (built-ins need no config)."""
    return Registry.load(config).get(name)


async def afuse(messages: str | Message | Sequence[Message], *, registry: Registry | None = None, config=None,
                **settings) -> FusionResult:
    """Fuse `messages` with `pool=` / `preset=` and any fusion setting (see gemfuse.fusion.afuse). Without a
    registry, one is made from the config and closed afterwards."""
    if registry is not None:
        return await afuse_with(messages, registry=registry, **settings)
    own = Registry.load(config)
    try:
        return await afuse_with(messages, registry=own, **settings)
    finally:
        await own.aclose()


def fuse(messages: str | Message | Sequence[Message], **settings) -> FusionResult:
    """Synchronous `afuse`, for scripts and notebooks."""
    return run_sync(afuse(messages, **settings))
